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


def _loss(loss, y, y_pred, sample_weight=None):
    return float(keras.ops.convert_to_numpy(loss(y, y_pred, sample_weight=sample_weight)))


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


# === Margin ("gap") and logit-normalised cross-entropy ===

from supernet.losses import LogitNormCrossentropy, MarginCrossentropy  # noqa: E402


def _ce_closed(logits, y):
    """Mean -log softmax(logits)[y] in float64, for (n, C) or summed over members for (n, K, C)."""
    log_probs = special.log_softmax(logits.astype("float64"), axis=-1)
    if logits.ndim == 2:
        return -log_probs[np.arange(len(y)), y].mean()
    return -log_probs[np.arange(len(y)), :, y].sum(axis=1).mean()


@pytest.mark.parametrize("margin", [0.0, 0.7, 3.0])
def test_margin_crossentropy_closed_form_on_logits(margin):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(7, 5)).astype("float32")
    y = rng.integers(0, 5, size=7)
    shifted = logits.astype("float64").copy()
    shifted[np.arange(7), y] -= margin
    value = _loss(MarginCrossentropy(margin, from_logits=True), y, logits)
    assert value == pytest.approx(_ce_closed(shifted, y), rel=1e-5)
    if margin > 0:  # the margin makes the loss strictly larger than plain CE
        assert value > _ce_closed(logits, y) + 1e-3


def test_margin_crossentropy_probabilities_equal_logits_and_zero_margin_is_ce():
    logits, y = _member_problem(seed=4)
    probs = special.softmax(logits, axis=-1).astype("float32")
    on_logits = _loss(MarginCrossentropy(1.5, from_logits=True), y, logits)
    on_probs = _loss(MarginCrossentropy(1.5), y, probs)
    assert on_probs == pytest.approx(on_logits, rel=1e-4)  # CE is shift invariant
    assert _loss(MarginCrossentropy(0.0), y, probs) == pytest.approx(_loss(MemberwiseCrossentropy(), y, probs), rel=1e-5)


@pytest.mark.parametrize("temperature", [0.05, 1.0])
def test_logit_norm_closed_form(temperature):
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(6, 4)).astype("float32") * 3
    y = rng.integers(0, 4, size=6)
    normed = logits.astype("float64") / (temperature * np.linalg.norm(logits.astype("float64"), axis=1, keepdims=True))
    value = _loss(LogitNormCrossentropy(temperature), y, logits)
    assert value == pytest.approx(_ce_closed(normed, y), rel=1e-4)
    # Scaling the logits up does not change the loss (the "radial" escape is closed).
    assert _loss(LogitNormCrossentropy(temperature), y, 10 * logits) == pytest.approx(value, rel=1e-4)


def test_logit_norm_from_probabilities_uses_centred_log_probs():
    logits, y = _member_problem(seed=6)
    probs = special.softmax(logits, axis=-1).astype("float32")
    centred = logits - logits.mean(axis=-1, keepdims=True)
    normed = centred / (0.5 * np.linalg.norm(centred, axis=-1, keepdims=True))
    value = _loss(LogitNormCrossentropy(0.5, from_logits=False), y, probs)
    assert value == pytest.approx(_ce_closed(normed, y), rel=1e-4)


@pytest.mark.parametrize("loss_cls", [MemberwiseCrossentropy, MarginCrossentropy, LogitNormCrossentropy])
def test_per_member_sample_weight_weights_each_member(loss_cls):
    logits, y = _member_problem(seed=7)
    weights = np.random.default_rng(7).integers(0, 3, size=(len(y), logits.shape[1])).astype("float32")
    loss = loss_cls(from_logits=True)
    fused = _loss(loss, y, logits, sample_weight=weights)
    per_member = sum(
        _loss(loss, y, logits[:, k], sample_weight=weights[:, k]) for k in range(logits.shape[1])
    )
    assert fused == pytest.approx(per_member, rel=1e-5)
    assert fused != pytest.approx(_loss(loss, y, logits), rel=1e-3)


@pytest.mark.parametrize(
    "loss",
    [
        MarginCrossentropy(),
        MarginCrossentropy(margin=2.5, from_logits=True, reduction="sum", name="gap"),
        LogitNormCrossentropy(),
        LogitNormCrossentropy(temperature=0.3, from_logits=False, name="ln"),
    ],
)
def test_margin_and_logit_norm_config_round_trip(loss):
    clone = assert_config_round_trip(loss)
    assert clone.from_logits == loss.from_logits
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MarginCrossentropy(margin=-1), "margin"),
        (lambda: LogitNormCrossentropy(temperature=0), "temperature"),
        (lambda: LogitNormCrossentropy(temperature=-0.1), "temperature"),
    ],
)
def test_margin_and_logit_norm_reject_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
