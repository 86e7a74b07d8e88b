"""The shared CLI options: one LM option set with the config's field descriptions as help, the
data formats from the data layer's registry, and template names checked at parse time."""

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from instructkit.cli.main import cli
from instructkit.cli.options import field_help, lm_options
from instructkit.data.formats import FORMATS
from instructkit.lm.options import LM_OPTION_FIELDS, LMOptions

# every command that calls a model through an LM spec
MODEL_COMMANDS = [
    ("generate",),
    ("synth", "self-instruct"),
    ("synth", "evol"),
    ("data", "pairs"),
    ("optimize", "prompt"),
    ("optimize", "program"),
]
LM_ONLY_FLAGS = ("--lm", "--base-url", "--api-key-env", "--cache", "--concurrency")


def _command(path):
    cmd = cli
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def _all_commands(group=cli, path=()):
    for name, cmd in getattr(group, "commands", {}).items():
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _options(cmd):
    return {p.name: p for p in cmd.params if isinstance(p, click.Option)}


@pytest.mark.parametrize("path", MODEL_COMMANDS, ids=" ".join)
def test_every_model_command_has_every_lm_option_with_the_field_description(path):
    options = _options(_command(path))
    for name in LM_OPTION_FIELDS:
        assert name in options, f"{' '.join(path)} lacks --{name.replace('_', '-')}"
        assert options[name].help == LMOptions.model_fields[name].description


def test_no_command_has_an_lm_flag_with_other_help():
    # serve is rewritten separately (its --model names the served model)
    for path, cmd in _all_commands():
        if path == ("serve",):
            continue
        for opt in (p for p in cmd.params if isinstance(p, click.Option)):
            if set(opt.opts) & set(LM_ONLY_FLAGS):
                assert opt.help == LMOptions.model_fields[opt.name].description, (path, opt.opts)


def test_lm_options_pass_only_the_flags_given():
    seen = {}

    @click.command()
    @lm_options()
    def cmd(lm_flags):
        seen.update(lm_flags)

    r = CliRunner().invoke(cmd, ["--lm", "openai", "--model", "m", "--concurrency", "3"])
    assert r.exit_code == 0, r.output
    assert seen == {"lm": "openai", "model": "m", "concurrency": 3}
    assert LMOptions(**seen).spec == "openai:m"
    assert LMOptions(lm="local:a", model="b").spec == "local:b"
    assert LMOptions(lm="openai:x").spec == "openai:x"


def test_field_help_is_the_description_and_refuses_an_undescribed_field():
    class C(BaseModel):
        a: int = 1

    assert field_help(LMOptions, "cache") == LMOptions.model_fields["cache"].description
    with pytest.raises(TypeError, match="C.a has no Field"):
        field_help(C, "a")


def test_format_options_list_the_data_layer_formats():
    for path, cmd in _all_commands():
        for opt in _options(cmd).values():
            if path == ("run",) and opt.opts == ["--from"]:
                continue  # `instructkit run --from STAGE` names a recipe stage, not a format
            if set(opt.opts) & {"--from", "--to"}:
                assert list(opt.type.choices) == list(FORMATS), (path, opt.opts)


def test_every_template_option_checks_the_name_with_a_suggestion():
    found = []
    for path, cmd in _all_commands():
        opt = _options(cmd).get("template")
        if opt is None:
            continue
        found.append(path)
        with pytest.raises(click.BadParameter, match="did you mean 'vicuna'"):
            opt.type.convert("vicuan", opt, None)
    assert {("data", "stats"), ("data", "render"), ("generate",), ("serve",)} <= set(found)


def test_synth_evol_takes_base_url_and_cache(tmp_path, monkeypatch):
    import instructkit.lm
    from instructkit.lm.scripted import ScriptedLM

    built = {}

    def build_lm(spec, **kw):
        built.update(spec=spec, **kw)
        return ScriptedLM(lambda r: "x", name=spec)

    monkeypatch.setattr(instructkit.lm, "build_lm", build_lm)
    src = tmp_path / "in.jsonl"
    src.write_text('{"instruction": "Name a color."}\n')
    r = CliRunner().invoke(cli, ["synth", "evol", str(src), "-o", str(tmp_path / "o.jsonl"),
                                 "--lm", "openai", "--model", "m", "--base-url", "http://h/v1",
                                 "--cache", str(tmp_path / "c.sqlite"), "--concurrency", "2",
                                 "--rounds", "1", "--no-progress"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert built == {"spec": "openai:m", "base_url": "http://h/v1",
                     "cache": str(tmp_path / "c.sqlite"), "concurrency": 2}  # fmt: skip


@pytest.mark.parametrize("path", [("data", "filter"), ("eval", "run")], ids=" ".join)
def test_judge_commands_have_every_lm_option_under_the_judge_prefix(path):
    """`data filter` and `eval run` call a judge: --judge, --judge-model, --judge-base-url,
    --judge-api-key-env, --judge-cache, --judge-concurrency, help from LMOptions."""
    options = _options(_command(path))
    for name in LM_OPTION_FIELDS:
        flag = "--judge" if name == "lm" else f"--judge-{name.replace('_', '-')}"
        opt = options.get(f"judge_{name}")
        assert opt is not None and flag in opt.opts, f"{' '.join(path)} lacks {flag}"
        if name != "lm":
            assert opt.help == "Judge: " + LMOptions.model_fields[name].description


def test_prefixed_lm_options_pass_their_own_dict():
    seen = {}

    @click.command()
    @lm_options()
    @lm_options(prefix="judge")
    def cmd(lm_flags, judge_flags):
        seen.update(lm=lm_flags, judge=judge_flags)

    r = CliRunner().invoke(cmd, ["--lm", "openai:a", "--judge", "openai", "--judge-model", "b"])
    assert r.exit_code == 0, r.output
    assert seen == {"lm": {"lm": "openai:a"}, "judge": {"lm": "openai", "model": "b"}}
