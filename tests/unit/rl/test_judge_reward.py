"""The LLM-judge reward: 1-10 grades scaled to [0, 1], unparseable grades kept out (NaN) or
counted as 0 for policy optimizers, the both-orders round robin, and `data pairs` ranking with
it (pointwise and pairwise) end to end, resumable without asking the judge again."""

import json
import logging
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from instructkit.cli.main import cli
from instructkit.config import load_config
from instructkit.errors import ConfigError, DataFormatError
from instructkit.evaluate.runner import JudgeLMConfig
from instructkit.lm.scripted import ScriptedLM
from instructkit.rl.judge import JudgeReward, UnscoredAsZero, scaled_grade, tally_wins
from instructkit.rl.pairs import PairsConfig, run_pairs, sample_seed
from instructkit.rl.rewards import RewardSpec, build_policy_reward, build_reward
from instructkit.train.rewards import RewardFn, RewardItem

DOCS = Path(__file__).resolve().parents[3] / "docs"
JUDGE = {"kind": "judge", "judge": {"lm": "openai:judge"}}


def _answer(prompt: str) -> str:
    return re.search(r"\[The assistant's answer\]\n(.*)\n\[End of answer\]", prompt, re.S)[1]


def _pair(prompt: str) -> tuple[str, str]:
    a = re.search(r"\[Assistant A's answer\]\n(.*)\n\[End of assistant A's answer\]", prompt, re.S)
    b = re.search(r"\[Assistant B's answer\]\n(.*)\n\[End of assistant B's answer\]", prompt, re.S)
    return a[1], b[1]


def _user(request) -> str:
    return request.messages[-1][1]


def grader(grades: dict[str, str]) -> ScriptedLM:
    """A judge that writes grades[answer] after "Rating: " (raw text, so it may be unreadable)."""
    return ScriptedLM(lambda r: f"Fine.\nRating: {grades[_answer(_user(r))]}", name="grader")


def longer_wins() -> ScriptedLM:
    """A judge that prefers the longer answer, wherever it is shown."""

    def verdict(request):
        first, second = _pair(_user(request))
        return "[[A]]" if len(first) > len(second) else "[[B]]"

    return ScriptedLM(verdict, name="longer")


def _items(answers, row=None):
    return [RewardItem("Describe tea.", a, row or {}) for a in answers]


# --- pointwise ---------------------------------------------------------------------------------


def test_a_grade_is_scaled_to_zero_one_and_a_missing_grade_is_nan():
    assert [scaled_grade(g) for g in (1.0, 10.0, 5.5, 7.0)] == [0.0, 1.0, 0.5, pytest.approx(2 / 3)]
    assert math.isnan(scaled_grade(None))


def test_the_judge_reward_grades_a_batch_in_one_call_and_never_invents_a_score(caplog):
    lm = grader({"good": "[[10]]", "bad": "[[1]]", "odd": "[[12]]", "mute": "no idea"})
    reward = build_reward(RewardSpec.model_validate(JUDGE), judge_lm=lm)
    assert isinstance(reward, RewardFn) and reward.name == "judge:openai:judge"
    with caplog.at_level(logging.WARNING):
        scores = reward(_items(["good", "bad", "odd", "mute"], {"id": "r7"}))
    assert scores[:2] == [1.0, 0.0] and all(math.isnan(s) for s in scores[2:])
    assert len(lm.calls) == 4 and {r.temperature for r in lm.calls} == {0.0}
    assert "2 of 4 verdicts could not be parsed" in caplog.text


def test_the_reference_is_shown_to_the_judge_when_the_row_has_one():
    lm = grader({"4": "[[9]]", "5": "[[2]]"})
    spec = RewardSpec.model_validate({**JUDGE, "reference_field": "answer"})
    reward = build_reward(spec, judge_lm=lm)
    assert reward([RewardItem("2+2?", "4", {"answer": 4}), RewardItem("2+2?", "5", {})]) == [
        pytest.approx(8 / 9),
        pytest.approx(1 / 9),
    ]
    first, second = (_user(r) for r in lm.calls)
    assert "[Reference answer]\n4\n" in first and "[Reference answer]" not in second


def test_check_refuses_a_reference_that_is_not_text_naming_row_and_field():
    reward = build_reward(RewardSpec.model_validate({**JUDGE, "reference_field": "gold"}))
    reward.check({"prompt": "x"}, path="p.jsonl", row_no=1)  # no reference: graded without
    reward.check({"prompt": "x", "gold": "y"}, path="p.jsonl", row_no=2)
    with pytest.raises(DataFormatError) as info:
        reward.check({"prompt": "x", "gold": {"a": 1}}, path="p.jsonl", row_no=3)
    assert (info.value.path, info.value.row, info.value.field) == ("p.jsonl", 3, "gold")


def test_a_judge_without_an_lm_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"reward\.judge\.lm"):
        build_reward(RewardSpec(kind="judge"))


def test_the_judge_lm_is_built_on_first_use_only(monkeypatch):
    import instructkit.lm

    built = []
    monkeypatch.setattr(instructkit.lm, "build_lm", lambda spec, **kw: built.append(spec))
    reward = build_reward(RewardSpec.model_validate(JUDGE))
    reward.check({"prompt": "x"})
    assert reward([]) == [] and not built


def test_policy_optimizers_get_zero_for_an_unparseable_grade_with_a_warning(caplog):
    lm = grader({"good": "[[10]]", "mute": "no idea"})
    reward = build_policy_reward(RewardSpec.model_validate(JUDGE), judge_lm=lm)
    assert isinstance(reward, UnscoredAsZero)
    with caplog.at_level(logging.WARNING):
        scores = reward(_items(["good", "mute"], {"id": "q3"}) + _items(["mute"]))
    assert scores == [1.0, 0.0, 0.0] and reward.unscored == 2
    assert "2 of 3 responses got no score (ids: q3, #2); counted as 0.0" in caplog.text
    assert build_policy_reward(RewardSpec(kind="exact")).name == "exact:answer"  # not wrapped


# --- pairwise ----------------------------------------------------------------------------------


def test_wins_are_tallied_from_the_combined_outcomes():
    pairs = [(0, 1), (0, 2), (1, 2)]
    assert tally_wins(3, pairs, [1, -1, None]) == [1.0, 0.0, 1.0]
    assert tally_wins(3, pairs, [0, 0, 0]) == [0.0, 0.0, 0.0]


def test_a_judge_that_always_prefers_the_first_position_gives_all_ties():
    lm = ScriptedLM(lambda r: "[[A]]")
    reward = JudgeReward(JudgeLMConfig(lm="scripted"), lm=lm)
    t = reward.round_robin([_items(["a", "bb", "ccc"]), _items(["x", "yy"])])
    assert t.wins == [[0.0, 0.0, 0.0], [0.0, 0.0]]
    assert (t.comparisons, t.inconsistent, t.unparseable) == (4, 4, 0)
    assert len(lm.calls) == 8  # each pair in both orders


def test_a_judge_preferring_the_longer_answer_ranks_by_length_in_both_orders():
    lm = longer_wins()
    reward = JudgeReward(JudgeLMConfig(lm="scripted"), lm=lm)
    t = reward.round_robin([_items(["bb", "a", "dddd", "ccc"])])
    assert t.wins == [[1.0, 0.0, 3.0, 2.0]] and (t.comparisons, t.inconsistent) == (6, 0)
    shown = [_pair(_user(r)) for r in lm.calls]
    assert ("bb", "a") in shown and ("a", "bb") in shown


# --- data pairs with the judge -----------------------------------------------------------------

ANSWERS = {
    1: ["tea.", "tea is hot.", "tea is a warm drink.", "tea."],  # 3 distinct
    2: ["no.", "nope.", "no.", "nope."],  # 2 distinct
    3: ["same.", "same.", "same.", "same."],  # identical
}
ROWS = [{"id": "a", "prompt": "Describe tea."}, {"prompt": "Say no."}, {"prompt": "Say same."}]


def _sampler():
    by_seed = {sample_seed(0, row, j): (row, j) for row in ANSWERS for j in range(4)}
    return ScriptedLM(lambda r: ANSWERS[by_seed[r.seed][0]][by_seed[r.seed][1]], name="sampler")


def _cfg(tmp_path, **kw):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    reward = {**JUDGE, "judge": {"lm": "openai:judge", "batch_size": 2}}
    return PairsConfig(prompts=str(prompts), out=str(tmp_path / "pairs.jsonl"), reward=reward, **kw)


def _lines(path):
    return [json.loads(line) for line in Path(path).read_text("utf-8").splitlines()]


def test_pairwise_pairs_rank_by_wins_and_a_rerun_asks_the_judge_nothing(tmp_path):
    cfg = _cfg(tmp_path, judge_mode="pairwise")
    judge = longer_wins()
    result = run_pairs(cfg, lm=_sampler(), judge_lm=judge, progress=False)
    assert len(judge.calls) == 2 * (3 + 1)  # 3 pairs of row 1, 1 of row 2, both orders
    first, second = _lines(result.out)
    assert (first["chosen"], first["rejected"], first["id"]) == (
        "tea is a warm drink.",
        "tea.",
        "a",
    )
    assert (first["chosen_reward"], first["rejected_reward"]) == (2.0, 0.0)
    assert (second["chosen"], second["rejected"]) == ("nope.", "no.")
    assert result.judge_counts == {"comparisons": 4, "inconsistent": 0, "unparseable": 0}
    assert "judge comparisons 4 (position-inconsistent 0, unparseable 0)" in result.summary()
    assert (tmp_path / "pairs.judge.jsonl").exists()
    again = longer_wins()
    rerun = run_pairs(cfg, lm=_sampler(), judge_lm=again, progress=False)
    assert not again.calls and _lines(rerun.out) == [first, second]


def test_a_position_biased_judge_gives_no_pairs_and_the_summary_says_why(tmp_path):
    cfg = _cfg(tmp_path, judge_mode="pairwise")
    result = run_pairs(cfg, lm=_sampler(), judge_lm=ScriptedLM(lambda r: "[[B]]"), progress=False)
    assert result.n_pairs == 0 and result.counts == {"tie": 2, "identical": 1}
    assert "position-inconsistent 4" in result.summary()


def test_a_killed_judge_run_resumes_asking_only_the_comparisons_not_journaled(tmp_path):
    cfg = _cfg(tmp_path, judge_mode="pairwise")  # judge batch_size 2: 4 batches of 2 requests
    judge = longer_wins()
    answer = judge._answer

    def dies_in_the_third_batch(request):
        if len(judge.calls) > 4:
            raise ConnectionError("judge went away")
        return answer(request)

    judge._answer = dies_in_the_third_batch
    with pytest.raises(ConnectionError):
        run_pairs(cfg, lm=_sampler(), judge_lm=judge, progress=False)
    assert not (tmp_path / "pairs.jsonl").exists()
    again = longer_wins()
    result = run_pairs(cfg, lm=_sampler(), judge_lm=again, progress=False)
    assert len(again.calls) == 4 and result.n_pairs == 2


def test_pointwise_pairs_leave_unparseable_grades_out(tmp_path):
    grades = {"tea.": "[[2]]", "tea is hot.": "[[6]]", "tea is a warm drink.": "unsure",
              "no.": "[[5]]", "nope.": "cannot say"}  # fmt: skip
    judge = grader(grades)
    result = run_pairs(_cfg(tmp_path), lm=_sampler(), judge_lm=judge, progress=False)
    assert len(judge.calls) == 5  # one grade per distinct response, in one reward call
    [pair] = _lines(result.out)
    assert (pair["chosen"], pair["rejected"]) == ("tea is hot.", "tea.")
    assert (pair["chosen_reward"], pair["rejected_reward"]) == (pytest.approx(5 / 9), 1 / 9)
    assert result.counts == {"unscored": 1, "identical": 1}
    assert result.judge_counts == {"graded": 5, "unscored": 2}
    assert "unscored 1 (unparseable grades 2)" in result.summary()
    reasons = [r["reason"] for r in _lines(result.rejects_path)]
    assert reasons[0] == "unscored: the reward scored 1 of 2 responses"


def test_pairwise_needs_the_judge_reward(tmp_path):
    cfg = _cfg(tmp_path, judge_mode="pairwise").model_copy(update={"reward": RewardSpec()})
    with pytest.raises(ConfigError, match="judge_mode 'pairwise'"):
        run_pairs(cfg, lm=_sampler(), progress=False)


def test_cli_pairs_with_the_judge(tmp_path, monkeypatch):
    import instructkit.lm

    built = []

    def fake_build_lm(spec, **kw):
        built.append((spec, kw.get("base_url")))
        return _sampler() if spec == "openai:m" else longer_wins()

    monkeypatch.setattr(instructkit.lm, "build_lm", fake_build_lm)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    args = ["data", "pairs", str(prompts), "-o", str(tmp_path / "p.jsonl"), "--lm", "openai:m"]
    args += ["--reward", "judge", "--judge-lm", "openai:big", "--judge-base-url", "http://j"]
    r = CliRunner().invoke(cli, [*args, "--judge-mode", "pairwise", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "3 prompts -> 2 pairs" in r.output and "position-inconsistent 0" in r.output
    assert built == [("openai:m", None), ("openai:big", "http://j")]


def test_cli_judge_without_its_lm_is_one_line(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps(ROWS[0]) + "\n", encoding="utf-8")
    args = ["data", "pairs", str(prompts), "-o", str(tmp_path / "p.jsonl"), "--reward", "judge"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "reward.judge.lm" in r.output


def test_train_configs_accept_a_judge_reward_block():
    from instructkit.rl.grpo_job import GRPOJobConfig
    from instructkit.rl.workflows import PPOJobConfig

    block = ["reward.kind=judge", "reward.judge.lm=openai:j", "reward.judge.scoring=probabilities"]
    for model in (GRPOJobConfig, PPOJobConfig):
        cfg = load_config(model, None, block)
        assert cfg.reward.judge is not None and cfg.reward.judge.scoring == "probabilities"
        assert isinstance(build_policy_reward(cfg.reward), UnscoredAsZero)
    with pytest.raises(ConfigError, match=r"reward\.judge\.lm"):
        load_config(PPOJobConfig, None, ["reward.kind=judge", "reward.judge.timeout=5"])


def test_docs_list_every_judge_reward_key():
    text = (DOCS / "reward.md").read_text("utf-8")
    keys = [*RewardSpec.model_fields, *JudgeLMConfig.model_fields, "judge_mode"]
    missing = [k for k in keys if f"`{k}`" not in text]
    assert not missing, f"docs/reward.md does not document {missing}"


def test_grpo_trains_with_the_judge_and_unparseable_grades_reach_it_as_zero(tmp_path, caplog):
    from instructkit.rl.grpo_job import GRPOJobConfig, run_grpo_job

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Say {w}."}) + "\n" for w in ("a", "b")))

    def judge(request):  # no grade for the first response asked, 7 (reward 2/3) for the rest
        return "I cannot grade this." if len(lm.calls) == 1 else "Rating: [[7]]"

    lm = ScriptedLM(judge)
    cfg = GRPOJobConfig(
        model="tiny-random-llama", output_dir=str(tmp_path / "run"), data=str(prompts),
        num_generations=4, max_completion_length=6, lora={"r": 4},
        train={"lr": 1e-2, "max_steps": 1, "batch_size": 4}, reward=JUDGE,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING):
        result = run_grpo_job(cfg, progress=False, judge_lm=lm)
    assert result.steps == 1 and result.reward == "judge:openai:judge"
    assert 1 <= len(lm.calls) <= 4  # identical completions are graded once
    events = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    [step] = [e for e in events if "reward_mean" in e]
    assert 0.0 <= step["reward_mean"] < 2 / 3  # the unparseable one counted 0, not NaN
    assert "got no score" in caplog.text and "counted as 0.0" in caplog.text


def test_judge_keys_without_kind_judge_are_a_config_error_not_ignored(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps(ROWS[0]) + "\n", encoding="utf-8")
    args = ["data", "pairs", str(prompts), "-o", str(tmp_path / "p.jsonl"), "--judge-lm", "x"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "apply to kind 'judge' only, not 'ifeval'" in r.output
