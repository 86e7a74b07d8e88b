from click.testing import CliRunner

from instructkit import __version__
from instructkit.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_version_and_help():
    assert __version__ in run("--version").output
    out = run("--help").output
    assert "data" in out and "demo" in out
    assert "render" in run("data", "--help").output


def test_config_error_is_one_line_and_exit_1(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sft:\n  train:\n    lr: -1\n")
    r = run("demo", "--out", str(tmp_path / "o"), "--config", str(cfg), "--set", "epoch=2")
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 2 config problem(s)")
    assert "did you mean 'epochs'?" not in lines[0]  # top-level: nearest DemoConfig key instead
    assert "sft.train.lr" in lines[0]
