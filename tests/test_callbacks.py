"""MemberEarlyStopping equals per-member EarlyStopping; TimeToAccuracy stops on target."""

import keras
import numpy as np
import pytest

from supernet.callbacks import MemberEarlyStopping, TimeToAccuracy
from supernet.models import PartitionedMLP

D, C, K = 12, 3, 3


def _data(seed=0, n=48, noise=1.0):
    """Noisy linear labels: learnable, and small enough to overfit."""
    w = np.random.default_rng(123).normal(size=(D, C))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype("float32")
    y = np.argmax(x @ w + noise * rng.normal(size=(n, C)), axis=1)
    return x, y


def test_member_early_stopping_equals_separate_early_stopping():
    # The validation loss turns up at a different epoch for each member.
    x, y = _data(0)
    x_val, y_val = _data(1, n=32)
    keras.utils.set_random_seed(0)
    fused = PartitionedMLP(D, [16], C, num_members=K)
    members = fused.members()
    fused.compile(optimizer=keras.optimizers.SGD(0.2))
    stopper = MemberEarlyStopping((x_val, y_val), patience=2)
    fused.fit(x, y, batch_size=16, epochs=40, shuffle=False, callbacks=[stopper], verbose=0)

    best_epochs = []
    for member in members:
        member.compile(optimizer=keras.optimizers.SGD(0.2), loss="sparse_categorical_crossentropy")
        early = keras.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
        history = member.fit(x, y, batch_size=16, epochs=40, shuffle=False, validation_data=(x_val, y_val), callbacks=[early], verbose=0)
        best_epochs.append(int(np.argmin(history.history["val_loss"])) + 1)

    assert stopper.best_epochs == best_epochs
    assert len(set(best_epochs)) > 1, "the test needs members that stop at different epochs"
    assert 0 < stopper.stopped_epoch < 40
    probs = fused.predict(x_val, verbose=0)
    for k, member in enumerate(members):
        np.testing.assert_allclose(probs[:, k], member.predict(x_val, verbose=0), atol=1e-5)


def test_member_early_stopping_needs_a_fused_model_and_valid_arguments():
    x, y = _data()
    plain = keras.Sequential([keras.Input((D,)), keras.layers.Dense(C, activation="softmax")])
    plain.compile("sgd", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="PartitionedMLP"):
        plain.fit(x, y, epochs=1, verbose=0, callbacks=[MemberEarlyStopping((x, y))])
    with pytest.raises(ValueError, match="monitor"):
        MemberEarlyStopping((x, y), monitor="auc")
    with pytest.raises(ValueError, match="patience"):
        MemberEarlyStopping((x, y), patience=-1)


def test_time_to_accuracy_stops_at_the_first_epoch_reaching_the_target():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, D)).astype("float32")
    y = (x[:, 0] > 0).astype(int)  # linearly separable
    model = keras.Sequential([keras.Input((D,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    timer = TimeToAccuracy((x, y), target=0.95, offset=(10.0, 5.0))
    model.fit(x, y, epochs=50, batch_size=16, verbose=0, callbacks=[timer])
    first = next(i for i, s in enumerate(timer.scores) if s >= 0.95) + 1
    assert timer.reached_epoch == first == len(timer.scores)  # stopped right there
    assert timer.wall_s >= 10.0 and timer.cpu_s >= 5.0


def test_time_to_accuracy_reports_none_when_never_reached():
    x, y = _data()
    model = keras.Sequential([keras.Input((D,)), keras.layers.Dense(C, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    timer = TimeToAccuracy((x, y), target=1.0)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[timer])
    assert timer.reached_epoch is None and timer.wall_s is None and len(timer.scores) == 2
    with pytest.raises(ValueError, match="target"):
        TimeToAccuracy((x, y), target=1.5)


def test_member_early_stopping_patience_zero_follows_keras():
    # patience=0 stops at the first epoch without improvement, not after epoch 1.
    x, y = _data(0)
    keras.utils.set_random_seed(1)
    fused = PartitionedMLP(D, [16], C, num_members=2)
    fused.compile(optimizer=keras.optimizers.SGD(0.05))
    stopper = MemberEarlyStopping(_data(1, n=32), patience=0)
    history = fused.fit(x, y, batch_size=16, epochs=30, shuffle=False, callbacks=[stopper], verbose=0)
    assert len(history.history["loss"]) > 1
    assert all(1 <= e < len(history.history["loss"]) + 1 for e in stopper.best_epochs)


def test_member_early_stopping_rejects_merged_head_and_bad_data():
    x, y = _data()
    merged = PartitionedMLP(D, [8], C, num_members=2, head="merged")
    merged.compile()
    with pytest.raises(ValueError, match="head='members'"):
        merged.fit(x, y, epochs=1, verbose=0, callbacks=[MemberEarlyStopping((x, y))])
    with pytest.raises(ValueError, match="validation_data"):
        MemberEarlyStopping(x)
    config = MemberEarlyStopping((x, y), patience=3).get_config()
    assert MemberEarlyStopping.from_config({**config, "validation_data": (x, y)}).patience == 3
