"""Item generators of the bundled task suite: one small seeded function per generated task.

Each generator takes a ``random.Random`` and returns one item's fields: the inputs its
templates show, a short ``answer`` and a ``rationale`` for chain-of-thought training (plus
``options`` where an item has its own answer choices). The word lists are written for this
project (no copied dataset). :mod:`instructkit.data.task_suite` draws distinct items from these
functions, labels them with cluster, split and format, and writes the suite file::

    item = GENERATORS["add_sub"](random.Random(0))   # {"expression": "23 + 45", "answer": ...}
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

__all__ = ["Item", "Generator", "GENERATORS", "LABELS"]

Item = dict[str, Any]
Generator = Callable[[random.Random], Item]

LABELS: dict[str, list[str]] = {  # fixed answer labels of the generated label tasks
    "review_sentiment": ["positive", "negative"],
    "emotion": ["joy", "anger", "fear", "sadness"],
    "intent": ["weather", "music", "alarm", "travel"],
    "object_category": ["animal", "fruit", "vehicle", "tool"],
    "passage_yes_no": ["yes", "no"],
    "category_check": ["yes", "no"],
    "even_odd": ["even", "odd"],
    "entailment": ["yes", "no"],
    "compatible": ["yes", "no"],
    "paraphrase": ["yes", "no"],
    "can_do": ["yes", "no"],
}

_NAMES = (
    "Ana Ben Carla Dev Elif Farid Grace Hugo Ines Jonas Kemal Lena Mateo Nora Omar Priya Quinn "
    "Rosa Sami Tara Umar Vera Wei Yara Zoe Tom Maria Kofi"
).split()
_CITIES = "Lima Oslo Cairo Quito Accra Dublin Porto Kyoto Perth Denver Vienna Prague".split()
_JOBS = "teacher nurse pilot baker farmer chef dentist lawyer painter plumber".split()
_PETS = "dog cat parrot rabbit hamster turtle goldfish".split()
_COLORS = "red blue green black white yellow silver".split()
_NOUNS = (
    "garden river window pencil mountain doctor kitchen bottle jacket candle forest island "
    "rocket ladder basket tunnel market pocket violin planet butter dragon hammer lemon "
    "monkey needle orange puzzle ribbon saddle tiger wagon yogurt zebra cookie desert "
    "engine finger guitar helmet jungle kettle lizard magnet napkin parrot quilt rabbit"
).split()


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


# --- sentiment ---------------------------------------------------------------------------------

_PRODUCTS = "phone laptop blender jacket backpack lamp kettle chair camera headset printer".split()
_GOOD = ["sturdy", "reliable", "comfortable", "fast", "beautiful", "quiet", "well made"]
_BAD = ["flimsy", "unreliable", "uncomfortable", "slow", "ugly", "noisy", "badly made"]
_REVIEW_FORMS = [
    "The {p} is {a} and {b}.",
    "I bought this {p} last month. It is {a} and {b}.",
    "My new {p} turned out {a} and {b}.",
    "This {p}? {A} and {b}, {end}.",
]


def review_sentiment(rng: random.Random) -> Item:
    answer = rng.choice(["positive", "negative"])
    a, b = rng.sample(_GOOD if answer == "positive" else _BAD, 2)
    end = "I would buy it again" if answer == "positive" else "I want my money back"
    p = rng.choice(_PRODUCTS)
    text = rng.choice(_REVIEW_FORMS).format(p=p, a=a, b=b, A=a.capitalize(), end=end)
    kind = "praise" if answer == "positive" else "complaints"
    why = f'The review calls the {p} "{a}" and "{b}", which are {kind}.'
    return {"text": text, "answer": answer, "rationale": why}


_EMOTION_CUES = {
    "joy": ["I am so happy that {e}!", "Hooray, {e}!", "What a delight: {e}."],
    "anger": ["I am furious that {e}.", "It makes me so angry that {e}!", "Unbelievable, {e}!"],
    "fear": ["I am scared that {e}.", "I am terrified because {e}.", "My hands shake: {e}."],
    "sadness": ["I feel so sad that {e}.", "It breaks my heart that {e}.", "I cried: {e}."],
}
_EMOTION_HINT = {
    "joy": "happiness",
    "anger": "anger",
    "fear": "fear",
    "sadness": "sorrow",
}
_EVENTS = [
    "my sister is moving away",
    "the exam is tomorrow",
    "the neighbors are having a party",
    "my old dog is at the vet",
    "the bus was cancelled",
    "we are going to the beach",
    "the storm is getting closer",
    "my phone is broken",
    "the letter finally arrived",
    "the house is so quiet now",
    "my team lost the final",
    "grandma is coming to visit",
]


def emotion(rng: random.Random) -> Item:
    answer = rng.choice(LABELS["emotion"])
    cue = rng.choice(_EMOTION_CUES[answer])
    text = cue.format(e=rng.choice(_EVENTS))
    frame = cue.split("{e}")[0].strip(" ,:") or cue.split("{e}")[1].strip(" ,:.!")
    why = f'The words "{frame}" express {_EMOTION_HINT[answer]}.'
    return {"text": text, "answer": answer, "rationale": why}


# --- topic -------------------------------------------------------------------------------------

_INTENTS = {
    "weather": ["Will it rain in {city} tomorrow?", "How warm is it in {city} on {day}?",
                "Do I need an umbrella in {city} on {day}?"],
    "music": ["Play some {genre} music.", "Put on my {genre} playlist.",
              "Shuffle {genre} songs for {day} evening."],
    "alarm": ["Wake me up at {time}.", "Set an alarm for {time} on {day}.",
              "Move my {time} alarm to later."],
    "travel": ["Book a flight to {city}.", "Find me a train to {city} on {day}.",
               "I need a hotel room in {city} for {day}."],
}  # fmt: skip
_GENRES = "jazz rock classical pop folk blues reggae".split()
_TIMES = ["6 am", "6:30 am", "7 am", "7:15 am", "8 am", "5:45 am", "9 pm"]
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


def intent(rng: random.Random) -> Item:
    answer = rng.choice(LABELS["intent"])
    form = rng.choice(_INTENTS[answer])
    slots = dict(
        city=rng.choice(_CITIES),
        day=rng.choice(_DAYS),
        genre=rng.choice(_GENRES),
        time=rng.choice(_TIMES),
    )
    text = form.format(**slots)
    return {"text": text, "answer": answer, "rationale": f"The user asks about {answer}."}


_CATEGORIES = {
    "animal": "horse tiger rabbit donkey eagle dolphin goat wolf frog camel parrot zebra",
    "fruit": "apple banana cherry mango pear plum peach grape lemon melon apricot kiwi",
    "vehicle": "bus truck bicycle tram taxi scooter tractor van motorcycle train ferry canoe",
    "tool": "hammer wrench screwdriver saw drill chisel shovel rake pliers axe trowel spanner",
}


def object_category(rng: random.Random) -> Item:
    answer = rng.choice(LABELS["object_category"])
    word = rng.choice(_CATEGORIES[answer].split())
    return {
        "word": word,
        "answer": answer,
        "rationale": f"{_a(word).capitalize()} is {_a(answer)}.",
    }


def category_check(rng: random.Random) -> Item:
    """Is the word in the asked category? yes/no, balanced."""
    asked = rng.choice(LABELS["object_category"])
    answer = rng.choice(["yes", "no"])
    truth = asked if answer == "yes" else rng.choice([c for c in _CATEGORIES if c != asked])
    word = rng.choice(_CATEGORIES[truth].split())
    why = f"{_a(word).capitalize()} is {_a(truth)}" + (
        "." if answer == "yes" else f", not {_a(asked)}."
    )
    return {"question": f"Is {_a(word)} {_a(asked)}?", "answer": answer, "rationale": why}


def _choices(rng: random.Random, right: str, wrong: list[str]) -> tuple[list[str], str]:
    """The right answer among the wrong ones, shuffled, and the lines "(A) ..." showing them."""
    options = [right, *wrong]
    rng.shuffle(options)
    return options, "\n".join(f"({letter}) {o}" for letter, o in zip("ABCD", options, strict=False))


# --- closed-book QA ----------------------------------------------------------------------------

_CONTINENTS = {
    "Africa": "Kenya Egypt Nigeria Ghana Morocco Ethiopia Senegal Uganda",
    "South America": "Peru Chile Brazil Argentina Colombia Uruguay Bolivia Paraguay",
    "Asia": "Japan China India Thailand Vietnam Nepal Mongolia Cambodia",
    "Europe": "France Spain Italy Poland Sweden Norway Greece Portugal Germany Ireland",
    "North America": "Mexico Canada Cuba Guatemala Honduras Jamaica",
}


def continent(rng: random.Random) -> Item:
    answer = rng.choice(sorted(_CONTINENTS))
    country = rng.choice(_CONTINENTS[answer].split())
    return {"country": country, "answer": answer, "rationale": f"{country} lies in {answer}."}


def continent_mc(rng: random.Random) -> Item:
    """On which continent is the country? Two or three choices of the item's own."""
    answer = rng.choice(sorted(_CONTINENTS))
    country = rng.choice(_CONTINENTS[answer].split())
    wrong = rng.sample([c for c in sorted(_CONTINENTS) if c != answer], rng.choice([1, 2]))
    options, choices = _choices(rng, answer, wrong)
    item = {"question": f"On which continent is {country}?", "choices": choices}
    return item | {
        "options": options,
        "answer": answer,
        "rationale": f"{country} lies in {answer}.",
    }


_THING_COLORS = {
    "a ripe banana": "yellow", "fresh grass": "green", "snow": "white", "coal": "black",
    "a clear sky at noon": "blue", "a ripe tomato": "red", "a carrot": "orange", "milk": "white",
    "a lemon": "yellow", "a crow": "black", "a lime": "green", "a pumpkin": "orange",
    "milk chocolate": "brown", "an eggplant": "purple", "a polar bear": "white",
    "a ripe strawberry": "red", "a flamingo": "pink", "salt": "white", "tar": "black",
    "a lettuce leaf": "green", "a raven": "black", "a lavender flower": "purple",
    "a fire truck": "red", "dry soil": "brown", "a ripe cherry": "red", "a cucumber": "green",
}  # fmt: skip


def color(rng: random.Random) -> Item:
    thing = rng.choice(sorted(_THING_COLORS))
    answer = _THING_COLORS[thing]
    return {"thing": thing, "answer": answer, "rationale": f"The color of {thing} is {answer}."}


# --- reading comprehension ---------------------------------------------------------------------


def passage_fact(rng: random.Random) -> Item:
    (n1, n2), (c1, c2), (j1, j2) = (rng.sample(x, 2) for x in (_NAMES, _CITIES, _JOBS))
    context = f"{n1} lives in {c1} and works as a {j1}. {n2} lives in {c2} and works as a {j2}."
    name, city, job = rng.choice([(n1, c1, j1), (n2, c2, j2)])
    if rng.random() < 0.5:
        question, answer, fact = f"Where does {name} live?", city, f"{name} lives in {city}"
    else:
        question, answer, fact = f"What is {name}'s job?", job, f"{name} works as a {job}"
    why = f"The passage says that {fact}."
    return {"context": context, "question": question, "answer": answer, "rationale": why}


def passage_mc(rng: random.Random) -> Item:
    """A passage_fact question answered by choosing among the item's own options."""
    fact = passage_fact(rng)
    pool = _CITIES if fact["answer"] in _CITIES else _JOBS
    in_text = [w for w in pool if w in fact["context"] and w != fact["answer"]]
    wrong = in_text + rng.sample([w for w in pool if w not in fact["context"]], 1)
    options, choices = _choices(rng, fact["answer"], wrong)
    shown = {"context": fact["context"], "question": fact["question"], "choices": choices}
    return shown | {"options": options, "answer": fact["answer"], "rationale": fact["rationale"]}


def passage_yes_no(rng: random.Random) -> Item:
    (n1, n2), (c1, c2), (p1, p2) = (rng.sample(x, 2) for x in (_NAMES, _COLORS, _PETS))
    context = f"{n1} has a {c1} car and a {p1}. {n2} has a {c2} car and a {p2}."
    name, car, pet = rng.choice([(n1, c1, p1), (n2, c2, p2)])
    if rng.random() < 0.5:
        asked = rng.choice([car, c1 if car == c2 else c2])
        question, fact = f"Is {name}'s car {asked}?", f"{name} has a {car} car"
        answer = "yes" if asked == car else "no"
    else:
        asked = rng.choice([pet, p1 if pet == p2 else p2])
        question, fact = f"Does {name} have {_a(asked)}?", f"{name} has {_a(pet)}"
        answer = "yes" if asked == pet else "no"
    why = f"The passage says that {fact}."
    return {"context": context, "question": question, "answer": answer, "rationale": why}


# --- words -------------------------------------------------------------------------------------

_PAST = {
    "walk": "walked", "jump": "jumped", "play": "played", "cook": "cooked", "clean": "cleaned",
    "paint": "painted", "open": "opened", "call": "called", "help": "helped", "watch": "watched",
    "visit": "visited", "climb": "climbed", "laugh": "laughed", "dance": "danced",
    "go": "went", "eat": "ate", "see": "saw", "take": "took", "write": "wrote", "run": "ran",
    "swim": "swam", "sing": "sang", "drink": "drank", "buy": "bought", "think": "thought",
    "bring": "brought", "teach": "taught", "catch": "caught", "sleep": "slept", "feel": "felt",
    "keep": "kept", "leave": "left", "meet": "met", "speak": "spoke", "drive": "drove",
    "ride": "rode", "fly": "flew", "grow": "grew", "know": "knew", "throw": "threw",
    "draw": "drew", "give": "gave", "begin": "began", "sit": "sat", "stand": "stood",
}  # fmt: skip


def past_tense(rng: random.Random) -> Item:
    verb = rng.choice(sorted(_PAST))
    answer = _PAST[verb]
    why = f'Today I {verb}; yesterday I {answer}. The past tense of "{verb}" is "{answer}".'
    return {"word": verb, "answer": answer, "rationale": why}


def first_letter(rng: random.Random) -> Item:
    word = rng.choice([w for w in _NOUNS if w[0] != "a"])  # "a" would normalize away
    why = f"The word {word} is spelled {'-'.join(word)}; it starts with {word[0]}."
    return {"word": word, "answer": word[0], "rationale": why}


def reverse_word(rng: random.Random) -> Item:
    word = rng.choice([w for w in _NOUNS if len(w) <= 6])
    answer = word[::-1]
    why = f"The letters of {word} are {'-'.join(word)}; backwards they are {'-'.join(answer)}."
    return {"word": word, "answer": answer, "rationale": why}


# --- arithmetic --------------------------------------------------------------------------------


def add_sub(rng: random.Random) -> Item:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    if rng.random() < 0.5:
        expression, value = f"{a} + {b}", a + b
    else:
        a, b = max(a, b), min(a, b)
        expression, value = f"{a} - {b}", a - b
    return {"expression": expression, "answer": str(value), "rationale": f"{expression} = {value}."}


def multiply(rng: random.Random) -> Item:
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    expression = f"{a} x {b}"
    return {"expression": expression, "answer": str(a * b), "rationale": f"{expression} = {a * b}."}


def even_odd(rng: random.Random) -> Item:
    n = rng.randint(1, 999)
    answer = "even" if n % 2 == 0 else "odd"
    why = f"{n} ends in the digit {n % 10}, and a number ending in {n % 10} is {answer}."
    return {"number": str(n), "answer": answer, "rationale": why}


# --- structured output -------------------------------------------------------------------------

_PERSON_FORMS = [
    "{n} is {age} years old and lives in {city}.",
    "Meet {n}, a {age}-year-old from {city}.",
    "{n}, age {age}, lives in {city}.",
    "{city} is home to {n}, who is {age}.",
]


def to_json(rng: random.Random) -> Item:
    n, age, city = rng.choice(_NAMES), rng.randint(18, 80), rng.choice(_CITIES)
    text = rng.choice(_PERSON_FORMS).format(n=n, age=age, city=city)
    answer = json.dumps({"name": n, "age": age, "city": city})
    why = f"The name is {n}, the age is {age} and the city is {city}."
    return {"text": text, "answer": answer, "rationale": why}


_GROCERIES = "eggs bread milk rice cheese butter apples onions tea coffee sugar flour honey".split()


def extract_list(rng: random.Random) -> Item:
    name, things = rng.choice(_NAMES), rng.sample(_GROCERIES, rng.randint(2, 4))
    listed = ", ".join(things[:-1]) + f" and {things[-1]}"
    text = f"At the market, {name} bought {listed}."
    why = f"The sentence names {len(things)} things that {name} bought, in this order."
    return {"text": text, "answer": ", ".join(things), "rationale": why}


def sort_words(rng: random.Random) -> Item:
    words = rng.sample(_NOUNS, rng.randint(3, 4))
    ordered = sorted(words)
    why = "Comparing first letters: " + ", ".join(f"{w} ({w[0]})" for w in ordered) + "."
    return {"words": ", ".join(words), "answer": ", ".join(ordered), "rationale": why}


# --- formatting constraints --------------------------------------------------------------------


def repeat_word(rng: random.Random) -> Item:
    word, count = rng.choice(_NOUNS), rng.randint(2, 5)
    why = f"The word {word} is written {count} times, with commas between."
    return {
        "word": word,
        "count": str(count),
        "answer": ", ".join([word] * count),
        "rationale": why,
    }


_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
).split()
_TENS_WORDS = {30: "thirty", 40: "forty", 50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty"}


def number_to_words(rng: random.Random) -> Item:
    table = dict(enumerate(_NUMBER_WORDS)) | _TENS_WORDS
    n = rng.choice(sorted(table))
    return {"number": str(n), "answer": table[n], "rationale": f"{n} is written {table[n]}."}


_ORG = (
    "Green Royal National United Northern Central Global Modern Pacific Silver".split(),
    "River Energy Health Science Music Travel Motor Garden Ocean Data".split(),
    "Company Society Agency Group Institute Council Association Bank Club League".split(),
)


def acronym(rng: random.Random) -> Item:
    words = [rng.choice(part) for part in _ORG]
    answer = "".join(w[0] for w in words)
    why = "The first letters are " + ", ".join(f"{w[0]} ({w})" for w in words) + "."
    return {"name": " ".join(words), "answer": answer, "rationale": why}


# --- natural-language inference (held out) -----------------------------------------------------

_KINDS = {
    "animal": "dog cat horse goat rabbit".split(),
    "flower": "rose tulip daisy lily".split(),
    "instrument": "guitar piano violin drum".split(),
    "vehicle": "car bus truck van".split(),
}
_SCENES = {
    "animal": "is sleeping in the yard",
    "flower": "is growing by the fence",
    "instrument": "is standing in the corner",
    "vehicle": "is parked outside the house",
}
_CITY_COUNTRY = {
    "Paris": "France", "Lyon": "France", "Rome": "Italy", "Milan": "Italy", "Madrid": "Spain",
    "Seville": "Spain", "Berlin": "Germany", "Munich": "Germany", "Tokyo": "Japan",
    "Osaka": "Japan", "Cairo": "Egypt", "Toronto": "Canada",
}  # fmt: skip


def _kind_pair(rng: random.Random) -> tuple[str, str, str, str]:
    kind = rng.choice(sorted(_KINDS))
    thing = rng.choice(_KINDS[kind])
    premise = f"{_a(thing).capitalize()} {_SCENES[kind]}."
    if rng.random() < 0.5:
        hypothesis = f"{_a(kind).capitalize()} {_SCENES[kind]}."
        return premise, hypothesis, "yes", f"{_a(thing)} is {_a(kind)}"
    other = rng.choice([t for t in _KINDS[kind] if t != thing])
    hypothesis = f"{_a(other).capitalize()} {_SCENES[kind]}."
    return premise, hypothesis, "no", f"the first sentence is about {_a(thing)}, not {_a(other)}"


def _place_pair(rng: random.Random) -> tuple[str, str, str, str]:
    name, city = rng.choice(_NAMES), rng.choice(sorted(_CITY_COUNTRY))
    country = rng.choice(sorted(set(_CITY_COUNTRY.values())))
    answer = "yes" if _CITY_COUNTRY[city] == country else "no"
    fact = f"{city} is in {_CITY_COUNTRY[city]}"
    return f"{name} is in {city} today.", f"{name} is in {country} today.", answer, fact


def _count_pair(rng: random.Random) -> tuple[str, str, str, str]:
    name, things = rng.choice(_NAMES), rng.choice(["books", "coins", "stamps", "shells"])
    have, bound = rng.randint(2, 9), rng.randint(1, 9)
    answer = "yes" if have > bound else "no"
    fact = f"{have} is {'more' if have > bound else 'not more'} than {bound}"
    return f"{name} has {have} {things}.", f"{name} has more than {bound} {things}.", answer, fact


def entailment(rng: random.Random) -> Item:
    """Does the hypothesis follow from the premise? (kind-of, place-in-country, more-than)."""
    premise, hypothesis, answer, fact = rng.choice([_kind_pair, _place_pair, _count_pair])(rng)
    why = f"We know that {fact}."
    return {"premise": premise, "hypothesis": hypothesis, "answer": answer, "rationale": why}


_STATES = [
    ("sitting", "standing"), ("awake", "asleep"), ("at home", "at work"), ("inside", "outside"),
    ("hungry", "full"), ("singing", "silent"),
]  # fmt: skip


def compatible(rng: random.Random) -> Item:
    """Can both sentences be true at the same time? Opposite states of one person cannot."""
    n1, n2 = rng.sample(_NAMES, 2)
    g1, g2 = rng.sample(range(len(_STATES)), 2)
    case = rng.choice(["opposite", "other_state", "other_person"])
    s1 = rng.choice(_STATES[g1])
    if case == "opposite":
        who, s2, answer = n1, [s for s in _STATES[g1] if s != s1][0], "no"
    elif case == "other_state":
        who, s2, answer = n1, rng.choice(_STATES[g2]), "yes"
    else:
        who, s2, answer = n2, [s for s in _STATES[g1] if s != s1][0], "yes"
    first, second = f"{n1} is {s1}.", f"{who} is {s2}."
    why = (
        f"One person cannot be {s1} and {s2} at once."
        if answer == "no"
        else f"Being {s1} does not rule out the second sentence."
    )
    return {"first": first, "second": second, "answer": answer, "rationale": why}


_VERBS = "helped called visited thanked invited followed warned hugged pushed praised".split()


def paraphrase(rng: random.Random) -> Item:
    a, b = rng.sample(_NAMES, 2)
    verb = rng.choice(_VERBS)
    first = f"{a} {verb} {b}."
    if rng.random() < 0.5:
        second, answer = f"{b} was {verb} by {a}.", "yes"
        why = f"In both sentences {a} is the one who {verb} {b}."
    else:
        second, answer = f"{a} was {verb} by {b}.", "no"
        why = f"The first says {a} {verb} {b}; the second says {b} {verb} {a}."
    return {"first": first, "second": second, "answer": answer, "rationale": why}


# --- commonsense (held out) --------------------------------------------------------------------

_EVERYDAY = [
    ("Where do people usually keep milk cold?", "fridge", "oven"),
    ("What do you use to cut paper?", "scissors", "spoon"),
    ("Where does a fish live?", "water", "desert"),
    ("What do people wear on their feet?", "shoes", "hats"),
    ("What do you need to see in the dark?", "light", "sugar"),
    ("Where do people sleep at night?", "bed", "sink"),
    ("What falls from clouds when it rains?", "water", "sand"),
    ("What do you use to write on paper?", "pen", "fork"),
    ("Which season is usually the coldest?", "winter", "summer"),
    ("What do plants need to grow?", "sunlight", "plastic"),
    ("Where do you buy bread?", "bakery", "garage"),
    ("What do you drink when you are thirsty?", "water", "sand"),
    ("What keeps you dry in the rain?", "umbrella", "blanket"),
    ("Which animal gives us wool?", "sheep", "cat"),
    ("What do bees make?", "honey", "milk"),
    ("What do you use to open a locked door?", "key", "spoon"),
    ("Where do airplanes take off?", "airport", "library"),
    ("What do you wear when it is cold?", "coat", "sandals"),
    ("Which meal do people eat in the morning?", "breakfast", "dinner"),
    ("What melts when it gets warm?", "ice", "stone"),
    ("Where do children learn to read?", "school", "garage"),
    ("What do you use to call a friend far away?", "phone", "ladder"),
    ("What do cows eat?", "grass", "meat"),
    ("What do you use to dig a hole?", "shovel", "pillow"),
    ("Where do you put dirty clothes to clean them?", "washing machine", "fridge"),
    ("What do birds build to lay eggs in?", "nest", "tent"),
    ("Which is hotter, fire or ice?", "fire", "ice"),
    ("What do you use to brush your teeth?", "toothbrush", "comb"),
    ("Where do people go to see a doctor?", "hospital", "stadium"),
    ("What shines in the sky during the day?", "sun", "moon"),
    ("Which is heavier, an elephant or a mouse?", "elephant", "mouse"),
    ("Which is faster, a car or a snail?", "car", "snail"),
    ("Which is bigger, a house or a cup?", "house", "cup"),
    ("Which is longer, a year or a week?", "year", "week"),
    ("Where do you keep money safe?", "bank", "bin"),
    ("What do you put on a sandwich?", "cheese", "soap"),
    ("What do you use to eat soup?", "spoon", "knife"),
    ("What grows on trees?", "leaves", "rocks"),
    ("Where do ships stop to unload?", "harbor", "forest"),
    ("What do you wear on your head?", "hat", "glove"),
    ("What do you use to see faraway stars?", "telescope", "microwave"),
    ("Which animal barks?", "dog", "cow"),
]


def commonsense_mc(rng: random.Random) -> Item:
    question, right, wrong = rng.choice(_EVERYDAY)
    options = [right, wrong] if rng.random() < 0.5 else [wrong, right]
    choices = "\n".join(f"({letter}) {o}" for letter, o in zip("AB", options, strict=True))
    why = f"Everyday knowledge: the answer is {right}, not {wrong}."
    item = {"question": question, "choices": choices, "options": options, "answer": right}
    return item | {"rationale": why}


_ABLE = {
    "fly": ({"eagle", "sparrow", "owl", "parrot", "bee", "pigeon", "bat"},
            {"cow", "dog", "horse", "elephant", "sheep", "pig", "snail"}),
    "lay eggs": ({"chicken", "duck", "snake", "turtle", "crocodile", "ostrich"},
                 {"cow", "dog", "cat", "horse", "elephant", "sheep", "rabbit"}),
    "breathe underwater": ({"shark", "goldfish", "trout", "salmon"},
                           {"cow", "dog", "cat", "horse", "eagle", "chicken", "rabbit"}),
}  # fmt: skip


def can_do(rng: random.Random) -> Item:
    ability = rng.choice(sorted(_ABLE))
    answer = rng.choice(["yes", "no"])
    animal = rng.choice(sorted(_ABLE[ability][0 if answer == "yes" else 1]))
    verb = "can" if answer == "yes" else "cannot"
    why = f"{_a(animal).capitalize()} {verb} {ability}."
    return {"question": f"Can {_a(animal)} {ability}?", "answer": answer, "rationale": why}


# --- counting (held out) -----------------------------------------------------------------------

_SUBJECTS = ["Tom", "The old man", "My little sister", "A tired dog", "Our neighbor"]
_ACTIONS = ["sleeps", "reads a book", "eats an apple", "walks", "sings a long song"]
_EXTRAS = ["", " in the garden", " every morning", " after lunch", " near the big river"]


def count_words(rng: random.Random) -> Item:
    sentence = f"{rng.choice(_SUBJECTS)} {rng.choice(_ACTIONS)}{rng.choice(_EXTRAS)}."
    words = sentence.rstrip(".").split()
    why = "Counting the words: " + ", ".join(f"{w} ({i})" for i, w in enumerate(words, 1)) + "."
    return {"sentence": sentence, "answer": str(len(words)), "rationale": why}


_PACKED = "pen cup key book map coin lamp sock ball comb watch ring".split()


def count_items(rng: random.Random) -> Item:
    name, things = rng.choice(_NAMES), rng.sample(_PACKED, rng.randint(2, 7))
    listed = ", ".join(_a(t) for t in things[:-1]) + f" and {_a(things[-1])}"
    text = f"{name} packed {listed}."
    why = "Counting the things: " + ", ".join(f"{t} ({i})" for i, t in enumerate(things, 1)) + "."
    return {"text": text, "answer": str(len(things)), "rationale": why}


def count_occurrences(rng: random.Random) -> Item:
    pool = rng.sample(_COLORS, 3)
    sequence = [rng.choice(pool) for _ in range(rng.randint(5, 9))]
    target = rng.choice(sequence)
    hits = [i for i, w in enumerate(sequence, 1) if w == target]
    why = f"{target} is at positions {', '.join(map(str, hits))}."
    item = {"target": target, "sequence": ", ".join(sequence), "answer": str(len(hits))}
    return item | {"rationale": why}


GENERATORS: dict[str, Generator] = {
    f.__name__: f
    for f in (
        review_sentiment, emotion, intent, object_category, category_check, continent,
        continent_mc, color, passage_fact, passage_mc, passage_yes_no, past_tense, first_letter,
        reverse_word, add_sub, multiply, even_odd, to_json, extract_list, sort_words,
        repeat_word, number_to_words, acronym, entailment, compatible, paraphrase,
        commonsense_mc, can_do, count_words, count_items, count_occurrences,
    )
}  # fmt: skip
