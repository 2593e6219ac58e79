"""`supernet run --seeds ... --shard i/n`: shards merge into the unsharded table."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from supernet import reports
from supernet_lab import cli
from supernet_lab import runner as experiment

ROOT = Path(__file__).resolve().parents[1]


def _start(out, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "supernet_lab.cli", "run", "quickstart", "--preset", "smoke", "--out", str(out), *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process):
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-2000:]
    return stdout


def _table_without_timings(out):
    """The rendered quickstart table, with the wall/CPU seconds blanked."""
    assert cli.main(["report", "--out", str(out)]) == 0
    text = (Path(out) / "quickstart" / "quickstart_smoke.md").read_text()
    # Timings are in the caption ("wall 1.2 ± 0.1 s, CPU ..."); accuracies and NLLs are not timings.
    return re.sub(r"(wall|CPU) [0-9.]+( ± [0-9.]+)? s", r"\1 <t> s", text)


@pytest.mark.slow
def test_two_shards_merge_into_the_unsharded_table(tmp_path):
    sharded, unsharded = tmp_path / "sharded", tmp_path / "unsharded"
    processes = [_start(sharded, "--seeds", "0,1", "--shard", f"{i}/2") for i in range(2)]
    processes.append(_start(unsharded, "--seeds", "0,1"))
    outputs = [_finish(p) for p in processes]
    assert "shard 0/2: 1 of 2 run(s), seeds: 0" in outputs[0]
    assert "shard 1/2: 1 of 2 run(s), seeds: 1" in outputs[1]

    records = reports.ResultsStore(experiment.results_path(sharded, "quickstart")).read()
    assert sorted(r["seed"] for r in records) == [0, 1]
    assert {r["seed"]: r["shard"] for r in records} == {0: "0/2", 1: "1/2"}
    plain = reports.ResultsStore(experiment.results_path(unsharded, "quickstart")).read()
    assert sorted(r["seed"] for r in plain) == [0, 1]
    assert all("shard" not in r for r in plain)

    merged, reference = _table_without_timings(sharded), _table_without_timings(unsharded)
    rows = [line for line in merged.splitlines() if line.startswith("|")]
    assert len(rows) >= 2 + 4  # header, rule, members and ensembles
    assert "± " in merged  # two seeds aggregated, not one
    assert rows == [line for line in reference.splitlines() if line.startswith("|")]
    assert merged == reference


@pytest.mark.parametrize(
    "shard, message",
    [
        ("2/2", "needs 0 <= i < n"),
        ("5/4", "needs 0 <= i < n"),
        ("0/0", "needs n >= 1"),
        ("1/-2", "needs n >= 1"),
        ("1", "must be i/n"),
        ("a/b", "must be i/n"),
        ("1/2/3", "must be i/n"),
    ],
)
def test_bad_shard_exits_2_with_a_clear_message(shard, message, capsys, tmp_path):
    code = cli.main(["run", "quickstart", "--seeds", "0,1", f"--shard={shard}", "--out", str(tmp_path)])
    assert code == 2
    error = capsys.readouterr().err
    assert "--shard" in error and message in error and shard in error
    assert not experiment.results_path(tmp_path, "quickstart").exists()


@pytest.mark.slow
def test_bad_shard_exit_code_of_the_command(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "supernet_lab.cli", "run", "quickstart", "--shard", "4/4", "--out", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "supernet: error: Argument `--shard` needs 0 <= i < n" in result.stderr


@pytest.mark.parametrize(
    "text, seeds",
    [("0,1,2", [0, 1, 2]), ("0-4", [0, 1, 2, 3, 4]), ("7", [7]), ("0-2, 9", [0, 1, 2, 9]), ("3-3", [3])],
)
def test_parse_seeds(text, seeds):
    assert experiment.parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [("", "comma list"), ("1,,2", "comma list"), ("4-1", "ends before"), ("0,1,0", "more than once"), ("-1", "comma list")])
def test_parse_seeds_rejects(text, message):
    with pytest.raises(ValueError, match=message):
        experiment.parse_seeds(text)


def test_shards_partition_the_runs():
    seeds = list(range(8))
    parts = [experiment.shard_runs(seeds, (i, 3)) for i in range(3)]
    assert parts == [[0, 3, 6], [1, 4, 7], [2, 5]]
    assert sorted(s for part in parts for s in part) == seeds
    assert experiment.shard_runs(seeds, None) == seeds
    assert experiment.parse_shard(" 1 / 4 ") == (1, 4)


def test_shard_without_runs_does_nothing(tmp_path):
    # An array job wider than the sweep: the extra tasks exit cleanly.
    assert experiment.run_sweep("quickstart", "smoke", [0], tmp_path, shard=(1, 2), verbose=False) == []
    assert not experiment.results_path(tmp_path, "quickstart").exists()
