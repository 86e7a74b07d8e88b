"""On-policy preference pairs: sampled with a scripted LM, ranked by the IFEval reward,
resumable, read back as preference pairs, and driven from the CLI."""

import json

import pytest
from click.testing import CliRunner

from instructkit.cli.main import cli
from instructkit.data.formats import load_records
from instructkit.data.records import PreferencePair
from instructkit.errors import DataFormatError
from instructkit.lm.scripted import ScriptedLM
from instructkit.rl.pairs import PairsConfig, run_pairs, sample_seed
from instructkit.rl.rewards import RewardSpec

LOWER = {"instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]}
LOWER_AND_LEAF = {
    "instruction_id_list": ["change_case:english_lowercase", "keywords:existence"],
    "kwargs": [{}, {"keywords": ["leaf"]}],
}

# Row number -> the n=4 answers, in sample order (the scripted LM finds the sample by its seed).
ANSWERS = {
    1: ["TEA IS HOT.", "tea is hot.", "TEA!", "tea, warm."],  # pair: a lowercase vs an upper
    2: [
        "tea is a warm drink.",
        "tea is brewed from leaves.",
        "tea is hot.",
        "tea, warm.",
    ],  # all lowercase: tie
    3: ["tea leaf.", "tea cup.", "tea leaf!", "tea pot."],  # 1.0 vs 0.5: low margin at 0.5
    4: ["same.", "same.", "same.", "same."],  # identical
}
ROWS = [
    {"id": "a", "prompt": "Describe tea in lowercase.", **LOWER},
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Tea, lowercase."}], **LOWER},
    {"prompt": "Tea with 'leaf', lowercase.", **LOWER_AND_LEAF},
    {"prompt": "Say same.", **LOWER},
]  # fmt: skip


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _scripted(seed=0, fail_on_row=None):
    by_seed = {sample_seed(seed, row, j): (row, j) for row in ANSWERS for j in range(4)}

    def answer(request):
        row, j = by_seed[request.seed]
        if row == fail_on_row:
            raise ConnectionError("server went away")
        return ANSWERS[row][j]

    return ScriptedLM(answer)


def _cfg(tmp_path, **kw):
    prompts = _write(tmp_path / "prompts.jsonl", kw.pop("rows", ROWS))
    return PairsConfig(prompts=str(prompts), out=str(tmp_path / "pairs.jsonl"), **kw)


def _pairs(path):
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_pairs_are_ranked_by_the_reward_and_drops_are_counted(tmp_path):
    lm = _scripted()
    result = run_pairs(_cfg(tmp_path, min_margin=0.5), lm=lm, progress=False)
    assert len(lm.calls) == 16 and {r.temperature for r in lm.calls} == {0.8}
    assert len({r.seed for r in lm.calls}) == 16  # a seed per (prompt, sample)
    assert (result.n_prompts, result.n_pairs) == (4, 1)
    assert result.counts == {"tie": 1, "low_margin": 1, "identical": 1}
    [pair] = _pairs(result.out)
    assert pair["prompt"] == "Describe tea in lowercase." and pair["id"] == "a"
    assert pair["chosen"] in ("tea is hot.", "tea, warm.")
    assert pair["rejected"] in ("TEA IS HOT.", "TEA!")
    assert (pair["chosen_reward"], pair["rejected_reward"]) == (1.0, 0.0)
    rejects = _pairs(result.rejects_path)
    assert [(r["row"], r["reason"].split(":")[0]) for r in rejects] == [
        (2, "tie"), (3, "low_margin"), (4, "identical")
    ]  # fmt: skip


def test_without_min_margin_the_half_point_pair_is_kept_with_a_message_prompt(tmp_path):
    result = run_pairs(_cfg(tmp_path), lm=_scripted(), progress=False)
    assert result.n_pairs == 2 and result.counts == {"tie": 1, "identical": 1}
    pair = _pairs(result.out)[1]
    assert pair["prompt"] == "Tea with 'leaf', lowercase."
    assert "leaf" in pair["chosen"] and "leaf" not in pair["rejected"]
    assert pair["chosen_reward"] - pair["rejected_reward"] == 0.5


def test_output_reads_back_as_preference_pairs(tmp_path):
    rows = [ROWS[0], {**ROWS[1], "messages": ROWS[1]["messages"]}]
    answers = ["tea is hot.", "TEA IS HOT."]

    def answer(request):
        return answers[request.seed % 2]

    cfg = _cfg(tmp_path, rows=rows, n=8)
    result = run_pairs(cfg, lm=ScriptedLM(answer), progress=False)
    assert result.n_pairs == 2
    loaded = load_records(result.out)
    assert loaded.format == "preference" and not loaded.rejects
    first, second = loaded.records
    assert isinstance(first, PreferencePair)
    assert (first.chosen, first.rejected) == ("tea is hot.", "TEA IS HOT.")
    assert [m.role for m in second.prompt] == ["system", "user"]
    assert first.metadata["chosen_reward"] == 1.0 and first.metadata["id"] == "a"


def test_a_rerun_resumes_without_asking_again_for_finished_prompts(tmp_path):
    cfg = _cfg(tmp_path, batch=4)  # one prompt per LM call
    with pytest.raises(ConnectionError):
        run_pairs(cfg, lm=_scripted(fail_on_row=3), progress=False)
    assert not (tmp_path / "pairs.jsonl").exists()
    lm = _scripted()
    result = run_pairs(cfg, lm=lm, progress=False)
    assert len(lm.calls) == 8  # rows 3 and 4 only
    assert (result.n_sampled, result.n_pairs) == (2, 2)
    again = _scripted()
    assert run_pairs(cfg, lm=again, progress=False).n_pairs == 2 and not again.calls
    assert (
        run_pairs(cfg.model_copy(update={"fresh": True}), lm=again, progress=False).n_sampled == 4
    )


def test_a_row_the_reward_cannot_check_is_a_one_line_error_before_any_call(tmp_path):
    rows = [*ROWS, {"prompt": "No checks here."}]
    lm = _scripted()
    with pytest.raises(DataFormatError) as info:
        run_pairs(_cfg(tmp_path, rows=rows), lm=lm, progress=False)
    assert info.value.row == 5 and str(info.value.path).endswith("prompts.jsonl")
    assert "\n" not in str(info.value) and not lm.calls


def test_skip_invalid_sends_bad_rows_to_rejects(tmp_path):
    rows = [*ROWS, {"prompt": "No checks here."}, {"messages": []}]
    result = run_pairs(_cfg(tmp_path, rows=rows, skip_invalid=True), lm=_scripted(), progress=False)
    assert (result.n_prompts, result.n_rejected_rows) == (4, 2)
    assert {r["row"] for r in _pairs(result.rejects_path)} >= {5, 6}


def test_a_bad_prompt_row_names_the_field(tmp_path):
    with pytest.raises(DataFormatError) as info:
        run_pairs(_cfg(tmp_path, rows=[{"messages": []}]), lm=_scripted(), progress=False)
    assert (info.value.row, info.value.field) == (1, "messages")


def test_unknown_config_keys_are_refused(tmp_path):
    with pytest.raises(ValueError):
        PairsConfig(prompts="p.jsonl", out="o.jsonl", samples=3)


def test_cli_end_to_end(tmp_path, monkeypatch):
    import instructkit.lm

    built = {}

    def fake_build_lm(spec, **kw):
        built.update(spec=spec, **kw)
        return _scripted()

    monkeypatch.setattr(instructkit.lm, "build_lm", fake_build_lm)
    prompts = _write(tmp_path / "prompts.jsonl", ROWS)
    out = tmp_path / "pairs.jsonl"
    args = ["data", "pairs", str(prompts), "-o", str(out), "--lm", "openai:m", "-n", "4"]
    args += ["--base-url", "http://x", "--reward", "ifeval", "--min-margin", "0.5"]
    result = CliRunner().invoke(cli, [*args, "--set", "temperature=1.0", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "4 prompts -> 1 pairs" in result.output and "ties 1, low-margin 1" in result.output
    assert built == {"spec": "openai:m", "base_url": "http://x", "cache": None}
    assert len(_pairs(out)) == 1


def test_cli_bad_row_is_one_line(tmp_path, monkeypatch):
    import instructkit.lm

    monkeypatch.setattr(instructkit.lm, "build_lm", lambda spec, **kw: _scripted())
    prompts = _write(tmp_path / "prompts.jsonl", [{"prompt": "no checks"}])
    args = ["data", "pairs", str(prompts), "-o", str(tmp_path / "o.jsonl"), "--no-progress"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert "prompts.jsonl:1: field 'instruction_id_list'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_exact_reward_ranks_by_the_reference_answer(tmp_path):
    rows = [{"prompt": "2+2?", "answer": "4"}]
    lm = ScriptedLM(lambda request: str(4 + request.seed % 2))
    cfg = _cfg(tmp_path, rows=rows, n=8, reward=RewardSpec(kind="exact"))
    [pair] = _pairs(run_pairs(cfg, lm=lm, progress=False).out)
    assert (pair["chosen"], pair["rejected"]) == ("4", "5")


def test_prompts_take_a_dataset_spec_with_a_column_mapping(tmp_path):
    """`prompts` is a path (as before) or a spec: a CSV with the prompt in another column."""
    (tmp_path / "qa.csv").write_text("id,question,answer\na,What is 2+2?,4\nb,What is 3+3?,6\n")
    spec = {"path": str(tmp_path / "qa.csv"), "columns": {"prompt": "question"}}
    cfg = PairsConfig(
        prompts=spec, out=str(tmp_path / "pairs.jsonl"), reward=RewardSpec(kind="exact"), n=2
    )
    answers = {"What is 2+2?": ["4", "5"], "What is 3+3?": ["6", "7"]}
    sample = {sample_seed(0, row, j): j for row in (2, 3) for j in range(2)}  # CSV lines 2, 3

    def answer(request):
        return answers[request.messages[-1][1]][sample[request.seed]]

    result = run_pairs(cfg, lm=ScriptedLM(answer), progress=False)
    assert (result.n_prompts, result.n_pairs) == (2, 2)
    pairs = _pairs(tmp_path / "pairs.jsonl")
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("What is 2+2?", "4", "5"),
        ("What is 3+3?", "6", "7"),
    ]
