import keras
import numpy as np
import pytest

from supernet.models import PartitionedMLP
from supernet.optimizers import FusedAdam
from test_case import assert_config_round_trip, seeded_data


def _trained_weights(optimizer, run_eagerly):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(7, activation="relu"), keras.layers.Dense(3)])
    model.compile(optimizer, "mse", run_eagerly=run_eagerly)
    x, _ = seeded_data(n=48, d=6)
    y = np.random.default_rng(1).normal(size=(48, 3)).astype("float32")
    model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("run_eagerly", [False, True], ids=["graph", "eager"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(learning_rate=0.01),
        dict(learning_rate=keras.optimizers.schedules.ExponentialDecay(0.02, 3, 0.5), beta_1=0.8, epsilon=1e-4),
        dict(learning_rate=0.01, amsgrad=True),  # falls back to keras.optimizers.Adam
    ],
    ids=["default", "schedule", "amsgrad"],
)
def test_fused_adam_equals_keras_adam(kwargs, run_eagerly):
    expected = _trained_weights(keras.optimizers.Adam(**kwargs), run_eagerly)
    fused = _trained_weights(FusedAdam(**kwargs), run_eagerly)
    before = _trained_weights(keras.optimizers.SGD(0.0), run_eagerly)
    for a, b, c in zip(expected, fused, before):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        assert not np.allclose(b, c)  # 9 Adam steps moved every weight


def test_fused_adam_config_round_trip():
    optimizer = FusedAdam(learning_rate=0.005, beta_2=0.99)
    clone = assert_config_round_trip(optimizer)
    assert clone.beta_2 == 0.99


def test_partitioned_mlp_adam_string_means_fused_adam():
    model = PartitionedMLP(8, [4], num_classes=3, num_members=2)
    model.compile()
    assert isinstance(model.optimizer, FusedAdam)
    model.compile(optimizer=keras.optimizers.Adam(0.1))
    assert type(model.optimizer) is keras.optimizers.Adam
