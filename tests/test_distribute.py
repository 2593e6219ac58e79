"""Data-parallel fit over 2 CPU devices equals the single-device fit.

Each case runs in a fresh subprocess: TensorFlow's logical CPU devices (and
JAX's host device count) can only be configured before the backend
initialises its devices, which the test process has long done.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys
from supernet.distribute import data_parallel_strategy

strategy = data_parallel_strategy(2)  # first: before any backend op creates devices

import keras
import numpy as np
import supernet

rng = np.random.default_rng(0)
x = rng.normal(size=(128, 12)).astype("float32")
y = rng.integers(0, 3, 128)


def build():
    keras.utils.set_random_seed(0)
    return supernet.PartitionedMLP(12, [16], num_classes=3, num_members=2, dropout=0.0, seed=0)


def fit():
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    return history.history["loss"][-1], [w.tolist() for w in model.get_weights()]


with strategy.scope():
    replicas = getattr(strategy, "num_replicas_in_sync", None) or len(strategy.device_mesh.devices.flatten())
    parallel_loss, parallel_weights = fit()
single_loss, single_weights = fit()
model = build()
model(x[:1])
initial_weights = [w.tolist() for w in model.get_weights()]
print("RESULT " + json.dumps({
    "replicas": replicas,
    "strategy": type(strategy).__name__,
    "parallel_loss": parallel_loss,
    "single_loss": single_loss,
    "parallel_weights": parallel_weights,
    "single_weights": single_weights,
    "initial_weights": initial_weights,
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_two_device_fit_equals_single_device_fit(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        KERAS_BACKEND=backend,
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    done = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["replicas"] == 2
    assert result["strategy"] == {"tensorflow": "MirroredStrategy", "jax": "DataParallel"}[backend]
    assert np.isfinite(result["parallel_loss"])
    # Same global batches, mean loss and gradients; only the order of the
    # cross-replica sums differs, hence float32 round-off, not exact equality.
    np.testing.assert_allclose(result["parallel_loss"], result["single_loss"], rtol=1e-5, atol=1e-6)
    moved = 0.0
    for parallel, single, initial in zip(result["parallel_weights"], result["single_weights"], result["initial_weights"], strict=True):
        np.testing.assert_allclose(parallel, single, rtol=1e-5, atol=1e-5)
        moved = max(moved, float(np.max(np.abs(np.subtract(single, initial)))))
    assert moved > 1e-2, "4 SGD steps should move the weights; otherwise equality proves nothing"


def test_num_devices_is_validated():
    from supernet.distribute import data_parallel_strategy

    with pytest.raises(ValueError, match="num_devices"):
        data_parallel_strategy(0)
