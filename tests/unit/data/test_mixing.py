from collections import Counter

import pytest
from pydantic import ValidationError

from instructkit.data.mixing import (
    Mixture,
    MixtureConfig,
    Source,
    _draw,
    allocate,
    build_mixture,
    mixture_rates,
)
from instructkit.data.records import Conversation, Message
from instructkit.errors import ConfigError


def rates(sizes, caps=None, weights=None, **cfg):
    return mixture_rates(sizes, caps or {}, weights or {}, MixtureConfig(**cfg))


def src(name, n, **kw):
    return Source(name, [f"{name}{i}" for i in range(n)], **kw)


def drawn(mix: Mixture) -> dict[str, list]:
    out: dict[str, list] = {}
    for name, ex in mix.items:
        out.setdefault(name, []).append(ex)
    return out


# --- rates -----------------------------------------------------------------------------------


def test_proportional_with_cap():
    r = rates({"a": 100, "b": 10, "c": 1000}, caps={"c": 200})
    assert r == pytest.approx({"a": 100 / 310, "b": 10 / 310, "c": 200 / 310})


def test_cap_above_size_changes_nothing():
    assert rates({"a": 30, "b": 10}, caps={"a": 500}) == pytest.approx({"a": 0.75, "b": 0.25})


def test_temperature_two_takes_square_roots():
    r = rates({"a": 1, "b": 4, "c": 16}, strategy="temperature", temperature=2.0)
    assert r == pytest.approx({"a": 1 / 7, "b": 2 / 7, "c": 4 / 7})


def test_temperature_applies_after_cap():
    r = rates({"a": 100, "b": 900}, caps={"b": 400}, strategy="temperature", temperature=2.0)
    assert r == pytest.approx({"a": 10 / 30, "b": 20 / 30})


def test_temperature_one_is_proportional_and_large_is_uniform():
    sizes = {"a": 1, "b": 1000, "c": 50}
    t1 = rates(sizes, strategy="temperature", temperature=1.0)
    assert t1 == pytest.approx(rates(sizes))
    big = rates(sizes, strategy="temperature", temperature=1e6)
    assert big == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, abs=1e-4)


def test_small_temperature_on_large_sources_does_not_overflow():
    r = rates({"a": 10**6, "b": 10**5}, strategy="temperature", temperature=0.01)
    assert r["a"] == pytest.approx(1.0) and r["b"] < 1e-50


def test_weights_ignore_sizes_and_caps():
    r = rates({"a": 1000, "b": 1}, caps={"a": 5}, weights={"a": 1.0, "b": 3.0}, strategy="weights")
    assert r == pytest.approx({"a": 0.25, "b": 0.75})


def test_zero_weight_excludes_a_source():
    r = rates({"a": 10, "b": 10}, weights={"a": 0.0, "b": 2.0}, strategy="weights")
    assert r == {"a": 0.0, "b": 1.0}


def test_rates_sum_to_one():
    sizes = {"a": 7, "b": 13, "c": 101, "d": 3}
    for cfg in ({}, {"strategy": "temperature", "temperature": 3.0}):
        assert sum(rates(sizes, caps={"c": 20}, **cfg).values()) == pytest.approx(1.0)


# --- allocation ------------------------------------------------------------------------------


def test_allocate_ties_break_by_name():
    third = 1 / 3
    assert allocate({"b": third, "a": third, "c": third}, 10) == {"a": 4, "b": 3, "c": 3}


def test_allocate_largest_remainder():
    # exact 3.5 / 2.1 / 1.4 -> floors 3/2/1, the one left goes to the largest fraction (a)
    assert allocate({"a": 0.5, "b": 0.3, "c": 0.2}, 7) == {"a": 4, "b": 2, "c": 1}
    # exact 1.8 / 1.8 / 0.4 -> floors 1/1/0, two left go to a and b
    assert allocate({"a": 0.45, "b": 0.45, "c": 0.1}, 4) == {"a": 2, "b": 2, "c": 0}


def test_allocate_sums_exactly_and_stays_within_one_of_exact():
    rs = {"a": 0.1234, "b": 0.4321, "c": 0.0007, "d": 0.4438}
    for total in range(0, 300, 7):
        counts = allocate(rs, total)
        assert sum(counts.values()) == total
        assert all(abs(counts[n] - rs[n] * total) < 1 for n in rs)


def test_allocate_normalizes_unnormalized_rates():
    assert allocate({"a": 2.0, "b": 6.0}, 8) == {"a": 2, "b": 6}


def test_allocate_rejects_bad_rates():
    with pytest.raises(ConfigError):
        allocate({"a": -0.5, "b": 1.5}, 4)
    with pytest.raises(ConfigError):
        allocate({"a": 0.0}, 4)
    with pytest.raises(ConfigError):
        allocate({"a": 1.0}, -1)


# --- build_mixture ---------------------------------------------------------------------------


def test_default_total_is_one_pass_over_capped_sft_data():
    mix = build_mixture([src("a", 100), src("b", 10), src("c", 1000, cap=200)], MixtureConfig())
    got = drawn(mix)
    assert {n: len(v) for n, v in got.items()} == {"a": 100, "b": 10, "c": 200}
    assert all(len(set(v)) == len(v) for v in got.values())  # no duplicates
    assert mix.report.total == len(mix.items) == 310


def test_text_ratio_realised_exactly_with_default_total():
    # sft: 60 + 35 = 95 -> text 95 * 0.05 / 0.95 = 5, split 30:10 -> 3.75/1.25 -> 4/1
    sources = [src("s1", 60), src("s2", 35), src("t1", 30, kind="text"), src("t2", 10, kind="text")]
    mix = build_mixture(sources, MixtureConfig(text_ratio=0.05))
    counts = {n: len(v) for n, v in drawn(mix).items()}
    assert counts == {"s1": 60, "s2": 35, "t1": 4, "t2": 1}
    assert mix.report.total == 100


def test_text_ratio_realised_exactly_with_explicit_total():
    sources = [src("s1", 50), src("s2", 150), src("t", 40, kind="text")]
    mix = build_mixture(sources, MixtureConfig(text_ratio=0.05, total=1000))
    counts = {n: len(v) for n, v in drawn(mix).items()}
    assert counts == {"s1": 238, "s2": 712, "t": 50}  # 950 * 1/4 = 237.5 -> tie to s1
    assert mix.report.per_source["t"]["kind"] == "text"


def test_upsampling_cycles_without_duplicates_within_a_pass():
    cfg = MixtureConfig(strategy="weights", total=14)
    mix = build_mixture([src("small", 3, weight=1.0), src("big", 100, weight=1.0)], cfg)
    got = drawn(mix)
    assert sorted(Counter(got["small"]).values()) == [2, 2, 3]  # 7 = two passes + 1
    assert len(set(got["big"])) == 7  # down-sampled: no repeats
    assert mix.report.per_source["small"]["epochs"] == pytest.approx(7 / 3)


def test_draw_is_a_sequence_of_shuffles():
    import random

    out = _draw(list(range(4)), 10, random.Random(0))
    assert sorted(out[:4]) == sorted(out[4:8]) == [0, 1, 2, 3]
    assert len(set(out[8:])) == 2


def test_deterministic_in_seed():
    sources = [src("a", 40), src("b", 7), src("t", 5, kind="text")]
    cfg = MixtureConfig(strategy="temperature", temperature=2.0, text_ratio=0.1, total=60, seed=3)
    one, two = build_mixture(sources, cfg), build_mixture(sources, cfg)
    assert one.items == two.items
    other = build_mixture(sources, cfg.model_copy(update={"seed": 4}))
    assert other.items != one.items
    assert sorted(Counter(n for n, _ in other.items).items()) == sorted(
        Counter(n for n, _ in one.items).items()
    )  # same counts, different order


def test_final_order_interleaves_sources():
    mix = build_mixture([src("a", 50), src("b", 50)], MixtureConfig(seed=0))
    names = [n for n, _ in mix.items]
    assert names != sorted(names)
    assert "b" in names[:50]


def test_adding_a_source_keeps_the_others_draws():
    cfg = MixtureConfig(seed=5)
    before = drawn(build_mixture([src("a", 50, cap=10), src("b", 20)], cfg))
    after = drawn(build_mixture([src("a", 50, cap=10), src("b", 20), src("c", 30)], cfg))
    assert sorted(before["a"]) == sorted(after["a"])  # the same 10 of a's 50 examples


def test_examples_pass_through_unchanged():
    conv = Conversation([Message("user", "hi"), Message("assistant", "hello")])
    mix = build_mixture([Source("chat", [conv]), src("other", 1)], MixtureConfig())
    assert [ex for n, ex in mix.items if n == "chat"][0] is conv


def test_report_matches_counts():
    sources = [src("a", 30), src("b", 5, cap=3), src("t", 8, kind="text")]
    cfg = MixtureConfig(strategy="temperature", temperature=2.0, text_ratio=0.2, total=37)
    mix = build_mixture(sources, cfg)
    rep = mix.report
    counts = Counter(n for n, _ in mix.items)
    assert rep.total == len(mix.items) == 37
    assert sum(s["rate_target"] for s in rep.per_source.values()) == pytest.approx(1.0)
    assert rep.per_source["t"]["rate_target"] == pytest.approx(0.2)
    for name, s in rep.per_source.items():
        assert s["drawn"] == counts[name]
        assert s["share_realised"] == pytest.approx(counts[name] / 37)
        assert s["epochs"] == pytest.approx(counts[name] / s["available"])
        assert abs(s["share_realised"] - s["rate_target"]) < 1 / 37
    assert rep.to_dict()["per_source"]["b"]["available"] == 5
    table = rep.format_table()
    assert table.splitlines()[0].split() == [
        "source",
        "kind",
        "available",
        "target",
        "drawn",
        "realised",
        "epochs",
    ]
    assert "total: 37" in table and table.count("\n") == 4


# --- errors ----------------------------------------------------------------------------------


def test_empty_source_is_named():
    with pytest.raises(ConfigError, match="'b' is empty"):
        build_mixture([src("a", 3), Source("b", [])], MixtureConfig())


def test_duplicate_names():
    with pytest.raises(ConfigError, match="'a' is used twice"):
        build_mixture([src("a", 3), src("a", 4)], MixtureConfig())


def test_text_ratio_without_text_source_and_text_source_without_ratio():
    with pytest.raises(ConfigError, match="no source has kind 'text'"):
        build_mixture([src("a", 3)], MixtureConfig(text_ratio=0.05))
    with pytest.raises(ConfigError, match="text_ratio is 0"):
        build_mixture([src("a", 3), src("t", 3, kind="text")], MixtureConfig())


def test_problems_are_reported_together():
    sources = [Source("a", []), src("a", 2, cap=0), src("t", 2, kind="text", weight=1.0)]
    with pytest.raises(ConfigError) as e:
        build_mixture(sources, MixtureConfig(text_ratio=0.1))
    msg = str(e.value)
    assert msg.startswith("4 mixture problem(s)")
    assert "used twice" in msg and "cap 0" in msg and "sets a weight" in msg and "empty" in msg
    assert e.value.fix


def test_no_sft_source():
    with pytest.raises(ConfigError, match="no source of kind 'sft'"):
        build_mixture([src("t", 3, kind="text")], MixtureConfig(text_ratio=0.5))


def test_missing_weights_are_named():
    with pytest.raises(ConfigError, match="'b' has no weight; source 'c' has no weight"):
        build_mixture(
            [src("a", 3, weight=1.0), src("b", 3), src("c", 3)], MixtureConfig(strategy="weights")
        )


def test_bad_weights():
    with pytest.raises(ConfigError, match="'b' has negative weight -1"):
        rates({"a": 3, "b": 3}, weights={"a": 1.0, "b": -1.0}, strategy="weights")
    with pytest.raises(ConfigError, match="all sft source weights are 0"):
        rates({"a": 3, "b": 3}, weights={"a": 0.0, "b": 0.0}, strategy="weights")
    with pytest.raises(ConfigError, match="strategy: weights"):
        rates({"a": 3, "b": 3}, weights={"a": 1.0})


def test_all_zero_sizes():
    with pytest.raises(ConfigError, match="nothing to sample"):
        rates({"a": 0, "b": 0})
    with pytest.raises(ConfigError, match="no sft source"):
        rates({})


@pytest.mark.parametrize(
    "values",
    [
        {"temperature": 0.0, "strategy": "temperature"},
        {"text_ratio": 1.0},
        {"text_ratio": -0.1},
        {"total": 0},
        {"strategy": "uniform"},
        {"weights": {"a": 1}},
        {"temperature": 2.0},  # without strategy: temperature
    ],
)
def test_config_validation(values):
    with pytest.raises(ValidationError):
        MixtureConfig(**values)
