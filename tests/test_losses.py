import keras
import numpy as np
import pytest
from scipy import special

from supernet.losses import MemberwiseCrossentropy
from test_case import assert_config_round_trip


def _member_problem(seed=0, batch=6, members=3, classes=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, members, classes)).astype("float32")
    y = rng.integers(0, classes, size=batch)
    return logits, y


def _loss(loss, y, y_pred):
    return float(keras.ops.convert_to_numpy(loss(y, y_pred)))


def test_memberwise_crossentropy_uniform_hand_value():
    y_pred = np.full((2, 3, 4), 0.25, "float32")
    assert _loss(MemberwiseCrossentropy(), np.array([0, 3]), y_pred) == pytest.approx(
        3 * np.log(4), rel=1e-6
    )


@pytest.mark.parametrize("from_logits", [False, True])
def test_memberwise_crossentropy_equals_sum_of_member_losses(from_logits):
    logits, y = _member_problem()
    y_pred = logits if from_logits else special.softmax(logits, axis=-1).astype("float32")
    per_member = [
        keras.ops.convert_to_numpy(
            keras.losses.sparse_categorical_crossentropy(y, y_pred[:, k], from_logits=from_logits)
        ).mean()
        for k in range(y_pred.shape[1])
    ]
    # Independent closed form: -log softmax(logits)[y], summed over members.
    log_probs = special.log_softmax(logits.astype("float64"), axis=-1)
    closed = -log_probs[np.arange(len(y)), :, y].sum(axis=1).mean()
    value = _loss(MemberwiseCrossentropy(from_logits=from_logits), y, y_pred)
    assert value == pytest.approx(sum(per_member), rel=1e-5)
    assert value == pytest.approx(closed, rel=1e-5)


def test_memberwise_crossentropy_accepts_column_labels_and_sample_weight():
    logits, y = _member_problem(seed=1)
    probs = special.softmax(logits, axis=-1).astype("float32")
    loss = MemberwiseCrossentropy()
    assert _loss(loss, y[:, None], probs) == pytest.approx(_loss(loss, y, probs), rel=1e-6)
    weights = np.zeros(len(y), "float32")
    weights[0] = 1.0
    per_sample = -np.log(probs[0, :, y[0]]).sum()
    weighted = float(keras.ops.convert_to_numpy(loss(y, probs, sample_weight=weights)))
    assert weighted == pytest.approx(per_sample / len(y), rel=1e-5)


def test_memberwise_crossentropy_sum_reduction():
    logits, y = _member_problem(seed=2)
    probs = special.softmax(logits, axis=-1).astype("float32")
    mean = _loss(MemberwiseCrossentropy(), y, probs)
    total = _loss(MemberwiseCrossentropy(reduction="sum"), y, probs)
    assert total == pytest.approx(mean * len(y), rel=1e-5)


@pytest.mark.parametrize("kwargs", [{}, dict(from_logits=True, reduction="sum", name="mce")])
def test_memberwise_crossentropy_config_round_trip(kwargs):
    loss = MemberwiseCrossentropy(**kwargs)
    clone = assert_config_round_trip(loss)
    assert clone.from_logits == loss.from_logits
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, MemberwiseCrossentropy)
    assert restored.get_config() == loss.get_config()
