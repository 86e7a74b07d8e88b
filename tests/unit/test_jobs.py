"""io's durable append and torn-tail repair, and the resumable Job, including SIGKILL tests."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from killing import kill_when

from instructkit.errors import ConfigError, DataFormatError
from instructkit.io import append_jsonl, repair_torn_tail
from instructkit.jobs import Job, content_hash, fingerprint


def test_append_then_repair_cuts_only_the_torn_tail(tmp_path):
    path = tmp_path / "j.jsonl"
    assert append_jsonl([{"a": 1}, {"a": 2}], path) == 2
    assert repair_torn_tail(path) == 0  # nothing torn: nothing cut
    with path.open("ab") as f:
        f.write(b'{"a": 3, "b": "unfin')
    assert repair_torn_tail(path) == len(b'{"a": 3, "b": "unfin')
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'
    assert repair_torn_tail(tmp_path / "missing.jsonl") == 0


def test_repair_of_a_file_without_any_newline_empties_it(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"torn": tr')
    assert repair_torn_tail(path) == 11 and path.read_bytes() == b""


def test_repair_finds_the_last_newline_across_large_blocks(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"a": 1}\n' + b"x" * 200_000)  # torn tail longer than a read block
    assert repair_torn_tail(path) == 200_000 and path.read_bytes() == b'{"a": 1}\n'


def test_fingerprint_lists_what_changed_and_fresh_restarts(tmp_path):
    out = tmp_path / "o.jsonl"
    job = Job(out, fingerprint({"lr": 1, "n": 5}, exclude=["n"], seeds=[1, 2]))
    job.append([{"id": 1}])
    job.save_state(done=1)
    again = Job(out, fingerprint({"lr": 1, "n": 9}, exclude=["n"], seeds=[1, 2]))
    assert again.records == [{"id": 1}] and again.state == {"done": 1}
    with pytest.raises(ConfigError, match=r"lr: 1 -> 2.*--fresh"):
        Job(out, fingerprint({"lr": 2}, seeds=[1, 2]))
    with pytest.raises(ConfigError, match="the seeds differ"):
        Job(out, fingerprint({"lr": 1}, seeds=[1]))
    fresh = Job(out, fingerprint({"lr": 2}, seeds=[1]), fresh=True)
    assert fresh.records == [] and fresh.state == {}


def test_rows_without_a_state_file_are_refused(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_text('{"instruction": "x"}\n')
    with pytest.raises(ConfigError, match="did not write"):
        Job(out, fingerprint({}))


def test_a_corrupt_complete_line_is_reported_with_its_row(tmp_path):
    out = tmp_path / "o.jsonl"
    Job(out, fingerprint({})).append([{"id": 1}])
    with out.open("a") as f:
        f.write("not json\n")
    with pytest.raises(DataFormatError, match=r"o.jsonl:2"):
        Job(out, fingerprint({}))


def test_extra_journals_share_the_fingerprint(tmp_path):
    out, rej = tmp_path / "o.jsonl", tmp_path / "r.jsonl"
    job = Job(out, fingerprint({}), journals={"rejects": rej})
    job.append([{"id": 1}], to="rejects")
    with rej.open("a") as f:
        f.write('{"id": 2, "to')
    again = Job(out, fingerprint({}), journals={"rejects": rej})
    assert again.records == [] and again.records_of("rejects") == [{"id": 1}]


def test_content_hash_of_a_file_is_its_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("same")
    b.write_text("same")
    assert content_hash(a) == content_hash(b) != content_hash("same")


# --- SIGKILL at random points ------------------------------------------------------------------

_WORKER = """
import sys, time
from instructkit.jobs import Job, fingerprint
job = Job(sys.argv[1], fingerprint({"units": 300}))
done = {r["unit"] for r in job.records}
for unit in range(300):
    if unit not in done:
        time.sleep(0.004)  # the unit's work
        job.append([{"unit": unit, "pad": "x" * 2000}])
        job.save_state(last=unit)
"""


def _units(path):
    lines = path.read_text().split("\n")[:-1]  # complete lines only (a torn tail has no newline)
    return [json.loads(line)["unit"] for line in lines if line.strip()]


def test_job_killed_at_random_points_loses_and_repeats_nothing(tmp_path):
    out = tmp_path / "o.jsonl"
    rng, seen = random.Random(0), []
    for _ in range(6):  # kill when the journal has grown to a random point
        done = len(_units(out)) if out.exists() else 0
        target = rng.randint(done + 1, done + (300 - done) // 4)
        cmd = [sys.executable, "-c", _WORKER, str(out)]
        kill_when(cmd, lambda t=target: out.exists() and len(_units(out)) >= t, timeout=60)
        seen.append(len(_units(out)) if out.exists() else 0)
    assert all(0 < n < 300 for n in seen), f"a kill did not land mid-job: {seen}"
    subprocess.run([sys.executable, "-c", _WORKER, str(out)], check=True, timeout=120)
    assert _units(out) == list(range(300))  # 0 lost, 0 duplicated, in order


_REPAIRER = """
import sys
from instructkit.io import repair_torn_tail
repair_torn_tail(sys.argv[1])
"""


def test_kill_during_repair_loses_no_complete_line(tmp_path):
    """The old journal rewrote the whole file to drop a torn line: a kill then lost rows."""
    path = tmp_path / "big.jsonl"
    rows = [{"unit": i, "pad": "y" * 500} for i in range(20_000)]  # ~10 MB
    complete = "".join(json.dumps(r) + "\n" for r in rows)
    rng = random.Random(1)
    for _ in range(8):
        path.write_text(complete + '{"unit": 20000, "pad": "yy')
        proc = subprocess.Popen([sys.executable, "-c", _REPAIRER, str(path)])
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        text = path.read_text()
        assert text.startswith(complete), "a complete line was lost or changed"
        assert text in (complete, complete + '{"unit": 20000, "pad": "yy')


def test_a_job_without_a_path_keeps_its_journals_and_state_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = Job(None, fingerprint({"a": 1}), journals={"rejects": "unused.jsonl"})
    job.append([{"id": 1}])
    job.append([{"id": 2}], to="rejects")
    job.append([{"id": 3}], to="proposals")  # any journal name, in memory
    job.save_state(step=4)
    assert job.records == [{"id": 1}]
    assert job.records_of("rejects") == [{"id": 2}]
    assert job.records_of("proposals") == [{"id": 3}]
    assert job.state == {"step": 4} and job.out is None
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert Job(None, fingerprint({"a": 1})).records == []  # nothing survives
