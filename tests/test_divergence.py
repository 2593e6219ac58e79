"""A diverged member stops with a clear message, is recorded as failed and is never merged.

Divergence is provoked with an absurd learning rate (Adam at 1e30 overflows
the weights within a few steps). The SSE case (a cycle with a huge learning
rate is marked failed and left out of the ensemble) is
`tests/test_transfer.py::test_diverged_member_is_failed_and_excluded`.
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from test_case import seeded_data

import supernet
from supernet import data, metrics, reports, soups, training
from supernet_lab import runner as experiment
from supernet.models import mlp
from supernet.training import DivergenceError

ROOT = Path(__file__).resolve().parents[1]
X, Y = seeded_data(n=64, d=6, classes=3)
DS = data.Dataset("t", X, Y, X[:16], Y[:16], X[:16], Y[:16], 3, (6,), ("a", "b", "c"))
ABSURD_LR = 1e30


def _diverged_member():
    member = mlp(6, [8], 3, name="diverged")
    weights = member.get_weights()
    weights[0][0, 0] = np.nan
    member.set_weights(weights)
    return member


def test_fit_members_stops_with_a_clear_message():
    keras.utils.set_random_seed(0)
    model = supernet.PartitionedMLP(6, [8], 3, num_members=2)
    with pytest.raises(DivergenceError, match=r"diverged: the training loss became nan in epoch 1 .*non-finite weights.*Received: learning_rate=1e\+30"):
        training.fit_members(model, DS, epochs=20, batch_size=8, learning_rate=ABSURD_LR)
    # TerminateOnNaN stopped it in the first epoch, not after 20.
    assert model.optimizer.iterations.numpy() < len(X) // 8 + 1
    assert issubclass(DivergenceError, ValueError)


def test_a_sane_learning_rate_passes_the_divergence_check():
    keras.utils.set_random_seed(0)
    model = supernet.PartitionedMLP(6, [8], 3, num_members=2)
    result = training.fit_members(model, DS, epochs=2, batch_size=8, learning_rate=1e-2)
    assert len(result["history"]["loss"]) == 2 and np.all(np.isfinite(result["history"]["loss"]))


@pytest.mark.parametrize(
    "merge",
    [
        lambda members: supernet.build_supernet(members),
        lambda members: training.supermodel(members, DS, downscale=1.0, head_epochs=1),
        lambda members: soups.uniform_soup(members),
        lambda members: soups.greedy_soup(members, X, Y),
        lambda members: soups.average_weights(members),
    ],
    ids=["build_supernet", "supermodel", "uniform_soup", "greedy_soup", "average_weights"],
)
def test_a_diverged_member_is_never_merged(merge):
    members = [mlp(6, [8], 3, name="fine"), _diverged_member()]
    with pytest.raises(ValueError, match=r"Argument `\w+` must hold models with finite weights.*Received: \w+\[1\] \('diverged'\)"):
        merge(members)


def test_votes_refuse_non_finite_member_probabilities():
    probs = np.stack([np.full((64, 3), 1 / 3), np.full((64, 3), np.nan)])
    for vote in (metrics.softmax_vote, metrics.log_prob_average, lambda p: metrics.ensemble_metrics(Y, p)):
        with pytest.raises(ValueError, match="must contain only finite values"):
            vote(probs)


@pytest.mark.slow
def test_diverged_run_is_recorded_as_failed(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    command = [
        sys.executable, "-m", "experiments.table4_partitioning", "--preset", "smoke", "--out", str(tmp_path),
        "--set", f"learning_rate={ABSURD_LR}",
    ]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0
    assert "diverged" in run.stderr and "learning_rate=1e+30" in run.stderr
    [record] = reports.ResultsStore(experiment.results_path(tmp_path, "table4_partitioning")).read()
    assert record["status"] == "failed: diverged"
    assert "diverged" in record["metrics"]["error"]
    # Failed runs never enter the aggregated tables: counted as failed, no values.
    [group] = reports.aggregate([record], by=["preset"], metrics=["metrics.results.small.k1.accuracy"])
    assert group["failed"] == 1 and group["metrics"]["metrics.results.small.k1.accuracy"]["n"] == 0
