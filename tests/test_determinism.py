"""The same seed and preset give identical metrics in separate processes (CPU).

`run_experiment` seeds Python, NumPy and the backend and turns on
TensorFlow's op determinism; each run here is a fresh interpreter, so no
state is shared between the two runs. A different seed must change the
metrics, or the comparison would prove nothing.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supernet import reports
from supernet_lab import runner as experiment

ROOT = Path(__file__).resolve().parents[1]


def _run(name, seed, out, overrides=()):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", f"experiments.{name}", "--preset", "smoke", "--seed", str(seed), "--out", str(out), "--quiet"]
    command += [arg for override in overrides for arg in ("--set", override)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    [record] = reports.ResultsStore(experiment.results_path(out, name)).read()
    return record


@pytest.mark.slow
# table4's smallest root alone still has a single net, fused members with early stopping and two heads.
@pytest.mark.parametrize("name, overrides", [("quickstart", ()), ("table4_partitioning", ("sizes=('small',)",))])
def test_same_seed_same_metrics_in_separate_processes(name, overrides, tmp_path):
    first = _run(name, 11, tmp_path / "a", overrides)
    second = _run(name, 11, tmp_path / "b", overrides)
    other = _run(name, 12, tmp_path / "c", overrides)
    assert first["metrics"] == second["metrics"]
    assert first["metrics"] != other["metrics"]
    assert first["resumed_stages"] == second["resumed_stages"] == []
