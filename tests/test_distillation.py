"""Distillation: loss closed form, frozen teacher, the student learns, config round trip."""

import keras
import numpy as np
import pytest
from scipy import special

from supernet.distillation import Distiller, distillation_loss, teacher_outputs
from supernet.models import PartitionedMLP, mlp
from test_case import assert_weights_equal, seeded_data, weights_of


def _closed_form(y, student_logits, teacher_logits, T, alpha):
    log_q = special.log_softmax(student_logits, axis=-1)
    log_p_t = special.log_softmax(teacher_logits / T, axis=-1)
    log_q_t = special.log_softmax(student_logits / T, axis=-1)
    hard = -log_q[np.arange(len(y)), y]
    kl = (np.exp(log_p_t) * (log_p_t - log_q_t)).sum(axis=-1)
    return alpha * hard + (1 - alpha) * T**2 * kl


@pytest.mark.parametrize("T, alpha", [(1.0, 0.0), (4.0, 0.1), (2.5, 1.0)])
@pytest.mark.parametrize("from_logits", [True, False])
def test_loss_equals_closed_form(T, alpha, from_logits):
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(2, 6, 4)) * 2
    y = rng.integers(0, 4, size=6)
    convert = (lambda z: z) if from_logits else (lambda z: special.softmax(z, axis=-1))
    value = keras.ops.convert_to_numpy(
        distillation_loss(y, convert(student), convert(teacher), T, alpha, from_logits, from_logits)
    )
    np.testing.assert_allclose(value, _closed_form(y, student, teacher, T, alpha), rtol=1e-4, atol=1e-5)


def test_ensemble_teacher_is_its_softmax_vote():
    rng = np.random.default_rng(1)
    members = special.softmax(rng.normal(size=(5, 3, 4)), axis=-1)
    student = special.softmax(rng.normal(size=(5, 4)), axis=-1)
    y = rng.integers(0, 4, size=5)
    fused = distillation_loss(y, student, members, 3.0, 0.2)
    vote = distillation_loss(y, student, members.mean(axis=1), 3.0, 0.2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fused), keras.ops.convert_to_numpy(vote), rtol=1e-5)


def test_soft_term_is_zero_when_student_equals_teacher():
    probs = special.softmax(np.random.default_rng(2).normal(size=(4, 3)), axis=-1)
    value = keras.ops.convert_to_numpy(distillation_loss(np.zeros(4), probs, probs, 5.0, 0.0))
    np.testing.assert_allclose(value, 0.0, atol=1e-5)


@pytest.fixture(scope="module")
def teacher_and_data():
    """A trained 3-member teacher and its data, shared: no test changes the teacher."""
    x, y = seeded_data(n=200, d=20, classes=5)
    keras.utils.set_random_seed(0)
    teacher = PartitionedMLP(20, [32], num_classes=5, num_members=3)
    teacher.compile(optimizer=keras.optimizers.Adam(1e-2))
    teacher.fit(x, y, epochs=30, batch_size=50, verbose=0)
    return teacher, x, y


def test_fit_trains_student_and_leaves_teacher_unchanged(teacher_and_data):
    teacher, x, y = teacher_and_data
    before = weights_of(teacher)
    student = mlp(20, [8], 5)
    distiller = Distiller(student, teacher, temperature=3.0, alpha=0.1)
    distiller.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    start = distiller.evaluate(x, y, verbose=0, return_dict=True)
    history = distiller.fit(x, y, epochs=30, batch_size=50, verbose=0)
    assert_weights_equal(before, weights_of(teacher))
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    accuracy = np.mean(np.argmax(student.predict(x, verbose=0), axis=-1) == y)
    assert accuracy > start["accuracy"] + 0.3 and accuracy > 0.8
    np.testing.assert_allclose(distiller.predict(x[:5], verbose=0), student.predict(x[:5], verbose=0), rtol=1e-6)


def test_pure_soft_targets_follow_the_teacher_not_the_labels(teacher_and_data):
    """alpha=0: the labels are ignored, so flipped labels do not matter."""
    teacher, x, y = teacher_and_data
    results = []
    for labels in (y, (y + 1) % 5):
        keras.utils.set_random_seed(1)
        student = mlp(20, [8], 5)
        distiller = Distiller(student, teacher, temperature=2.0, alpha=0.0)
        distiller.compile(optimizer=keras.optimizers.Adam(1e-2))
        distiller.fit(x, labels, epochs=2, batch_size=50, shuffle=False, verbose=0)
        results.append(weights_of(student))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_offline_distillation_equals_online(teacher_and_data):
    """Precomputed teacher outputs give the same training as calling the teacher at each step."""
    teacher, x, y = teacher_and_data
    results = []
    for offline in (False, True):
        keras.utils.set_random_seed(2)
        student = mlp(20, [8], 5)
        distiller = Distiller(student, None if offline else teacher, temperature=3.0, alpha=0.2)
        distiller.compile(optimizer=keras.optimizers.Adam(1e-2), metrics=["accuracy"])
        targets = (y, teacher_outputs(teacher, x)) if offline else y
        history = distiller.fit(x, targets, validation_data=(x, targets), epochs=3, batch_size=50, shuffle=False, verbose=0)
        results.append((weights_of(student), history.history))
    (online_weights, online_history), (offline_weights, offline_history) = results
    for a, b in zip(online_weights, offline_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(online_history[key], offline_history[key], rtol=1e-4)


def test_offline_distillation_needs_label_and_teacher_pair():
    x, y = seeded_data(n=200, d=20, classes=5)
    distiller = Distiller(mlp(20, [8], 5), None)
    distiller.compile(optimizer="adam")
    with pytest.raises(ValueError, match="teacher_outputs"):
        distiller.fit(x, y, epochs=1, verbose=0)


def test_config_round_trip_and_save_load(tmp_path):
    teacher = mlp(6, [4], 3)
    distiller = Distiller(mlp(6, [2], 3), teacher, temperature=2.0, alpha=0.3, teacher_from_logits=False)
    config = distiller.get_config()
    clone = Distiller.from_config(config)
    assert (clone.temperature, clone.alpha, clone.student_from_logits, clone.teacher_from_logits) == (2.0, 0.3, False, False)
    assert clone.get_config()["temperature"] == 2.0
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    expected = distiller.predict(x, verbose=0)
    path = tmp_path / "distiller.keras"
    distiller.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Distiller)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    assert loaded.teacher.trainable is False


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(temperature=0), "temperature"), (dict(temperature=-1.0), "temperature"), (dict(alpha=1.5), "alpha"), (dict(alpha=-0.1), "alpha")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Distiller(mlp(4, [2], 2), mlp(4, [2], 2), **kwargs)
    with pytest.raises(ValueError, match=match):
        distillation_loss(np.zeros(1), np.full((1, 2), 0.5), np.full((1, 2), 0.5), **kwargs)


def test_student_and_teacher_must_be_models():
    with pytest.raises(ValueError, match="teacher"):
        Distiller(mlp(4, [2], 2), "not a model")
