import pytest

from instructkit.data.records import Conversation, Message
from instructkit.data.templates import get_template
from instructkit.data.tokenize import IGNORE_INDEX, tokenize_conversation, trained_text
from instructkit.errors import DataFormatError


def conv(*turns, system=None, train=None):
    msgs = [Message("system", system)] if system else []
    for i, t in enumerate(turns):
        role = "user" if i % 2 == 0 else "assistant"
        msgs.append(Message(role, t, train=(train or {}).get(i)))
    return Conversation(msgs)


@pytest.fixture()
def chatml(tiny_tokenizer):
    return get_template("chatml", tiny_tokenizer)


def test_labels_only_on_responses_and_eot(tiny_tokenizer, chatml):
    c = conv("What is 2+2?", "4", system="Answer briefly.")
    ex = tokenize_conversation(c, chatml, tiny_tokenizer)
    assert len(ex.labels) == len(ex.input_ids)
    assert trained_text(ex, tiny_tokenizer) == "4<|im_end|>"
    labelled = [i for i, x in enumerate(ex.labels) if x != IGNORE_INDEX]
    # one contiguous run: the response tokens then <|im_end|>; the trailing "\n" is not trained
    assert labelled == list(range(labelled[0], labelled[-1] + 1))
    assert ex.input_ids[labelled[-1]] == tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert labelled[-1] == len(ex.input_ids) - 2
    assert all(ex.labels[i] == ex.input_ids[i] for i in labelled)


def test_segmentwise_ids_match_whole_text_tokenization(tiny_tokenizer, chatml):
    c = conv("Hello there, how are you?", "Fine, thanks. And you?", "Good.", "Great!")
    ex = tokenize_conversation(c, chatml, tiny_tokenizer)
    whole = tiny_tokenizer(chatml.render(c.to_chat(), False), add_special_tokens=False)
    assert ex.input_ids == whole["input_ids"]


def test_multi_turn_all_last_and_per_message(tiny_tokenizer, chatml):
    c = conv("a?", "first", "b?", "second", "c?", "third")

    def text(**kw):
        return trained_text(
            tokenize_conversation(c, chatml, tiny_tokenizer, **kw),  # noqa: E731
            tiny_tokenizer,
        )

    assert text() == "first<|im_end|>second<|im_end|>third<|im_end|>"
    assert text(train_on="last") == "third<|im_end|>"
    flagged = conv("a?", "first", "b?", "second", "c?", "third", train={3: False})
    ex = tokenize_conversation(flagged, chatml, tiny_tokenizer)
    assert trained_text(ex, tiny_tokenizer) == "first<|im_end|>third<|im_end|>"
    forced = conv("a?", "first", "b?", "second", train={1: True})
    ex = tokenize_conversation(forced, chatml, tiny_tokenizer, train_on="last")
    assert trained_text(ex, tiny_tokenizer) == "first<|im_end|>second<|im_end|>"


def test_truncation_keeps_system_and_latest_turns(tiny_tokenizer, chatml):
    c = conv(
        "old question " * 5, "old answer " * 5, "new question", "new answer", system="SYSTEM PROMPT"
    )
    full = tokenize_conversation(c, chatml, tiny_tokenizer)
    short = tokenize_conversation(c, chatml, tiny_tokenizer, max_seq_len=len(full.input_ids) - 1)
    text = tiny_tokenizer.decode(short.input_ids)
    assert short.dropped_turns == 1 and not short.truncated
    assert "SYSTEM PROMPT" in text and "new question" in text and "old" not in text
    assert trained_text(short, tiny_tokenizer) == "new answer<|im_end|>"


def test_long_last_response_is_cut_but_keeps_its_instruction(tiny_tokenizer, chatml):
    c = conv("question", "word " * 50)
    prompt_len = len(tiny_tokenizer(chatml.render(c.to_chat()[:1], True))["input_ids"])
    ex = tokenize_conversation(c, chatml, tiny_tokenizer, max_seq_len=prompt_len + 5)
    assert ex.truncated and len(ex.input_ids) == prompt_len + 5
    assert ex.n_trained == 5
    assert "question" in tiny_tokenizer.decode(ex.input_ids)


def test_prompt_longer_than_window_is_an_error(tiny_tokenizer, chatml):
    c = conv("very long question " * 20, "ok")
    with pytest.raises(DataFormatError, match="max_seq_len=10"):
        tokenize_conversation(c, chatml, tiny_tokenizer, max_seq_len=10)
