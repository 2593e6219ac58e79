"""MemberEarlyStopping equals per-member EarlyStopping; TimeToAccuracy stops on target;
the per-epoch recorders (SnapshotWeights, EpochScores) equal a fit run one epoch at a time."""

import time

import keras
import numpy as np
import pytest
from test_case import assert_weights_equal

from supernet import metrics
from supernet.callbacks import EpochScores, EpochTimer, MemberEarlyStopping, SnapshotWeights, TimeToAccuracy
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
    fused.compile(optimizer=keras.optimizers.SGD(0.5))
    stopper = MemberEarlyStopping(_data(1, n=32), patience=0)
    history = fused.fit(x, y, batch_size=16, epochs=30, shuffle=False, callbacks=[stopper], verbose=0)
    # Each member is done one epoch after its best; training ends with the last one.
    assert 1 < stopper.stopped_epoch == len(history.history["loss"]) == max(stopper.best_epochs) + 1 < 30


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


# === Per-epoch recorders ===


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((D,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(C, activation="softmax")])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    return model


def _epoch_by_epoch(x, y, epochs, callbacks=()):
    """Yields `(epoch, model, weights)` after each epoch of a fresh `_tiny_model` fitted one epoch per `fit()`."""
    model = _tiny_model()
    for epoch in range(epochs):
        model.fit(x, y, batch_size=16, epochs=epoch + 1, initial_epoch=epoch, shuffle=False, callbacks=list(callbacks), verbose=0)
        yield epoch + 1, model, [np.array(w) for w in model.get_weights()]


def test_snapshot_weights_keeps_exactly_the_requested_epochs_as_get_weights_had_them():
    x, y = _data()
    snapshots = SnapshotWeights([4, 1, 3, 3])
    _tiny_model().fit(x, y, batch_size=16, epochs=5, shuffle=False, callbacks=[snapshots], verbose=0)
    # The same run, one epoch per fit(): a resumed fit continues the epoch count.
    resumed = SnapshotWeights([1, 3, 4])
    expected = {epoch: weights for epoch, _, weights in _epoch_by_epoch(x, y, 5, callbacks=[resumed])}

    assert snapshots.epochs == (1, 3, 4)
    assert sorted(snapshots.weights) == sorted(resumed.weights) == [1, 3, 4]
    for epoch in (1, 3, 4):
        assert_weights_equal(expected[epoch], snapshots.weights[epoch])
        assert_weights_equal(expected[epoch], resumed.weights[epoch])
    # Copies, not views of the live variables: each epoch's weights differ.
    assert_weights_equal(snapshots.weights[3], snapshots.weights[4], equal=False)

    # A different model starts clean.
    _tiny_model(seed=1).fit(x, y, batch_size=16, epochs=1, callbacks=[snapshots], verbose=0)
    assert sorted(snapshots.weights) == [1]


def test_epoch_timer_records_every_epoch_across_fit_calls():
    x, y = _data()
    model = _tiny_model()
    timer = EpochTimer()
    pause = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: time.sleep(0.05))
    model.fit(x, y, epochs=2, callbacks=[pause, timer], verbose=0)
    model.fit(x, y, epochs=5, initial_epoch=2, callbacks=[pause, timer], verbose=0)
    assert len(timer.seconds) == len(timer.cpu_seconds) == 5
    assert all(s >= 0.05 for s in timer.seconds)


def _busy(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_epoch_timer_counts_cpu_time_not_waiting():
    x, y = _data()
    timer = EpochTimer()
    work = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: _busy(0.2) if epoch == 0 else time.sleep(0.2))
    _tiny_model().fit(x, y, epochs=2, callbacks=[work, timer], verbose=0)
    busy, waiting = timer.cpu_seconds
    assert busy >= 0.2 and min(timer.seconds) >= 0.2
    assert waiting < busy - 0.1, "sleeping costs no CPU time"


def test_epoch_scores_equal_the_metrics_of_the_model_after_each_epoch():
    x, y = _data()
    x_val, y_val = _data(1, n=32)
    scores = EpochScores({"val": (x_val, y_val), "train": (x, y)})
    _tiny_model().fit(x, y, batch_size=16, epochs=3, shuffle=False, callbacks=[scores], verbose=0)

    assert sorted(scores.curves) == ["train_accuracy", "train_nll", "val_accuracy", "val_nll"]
    for epoch, model, _ in _epoch_by_epoch(x, y, 3):
        for name, (xs, ys) in (("val", (x_val, y_val)), ("train", (x, y))):
            probs = model.predict(xs, verbose=0).astype("float64")
            assert scores.curves[f"{name}_accuracy"][epoch - 1] == pytest.approx(metrics.accuracy(ys, probs))
            assert scores.curves[f"{name}_nll"][epoch - 1] == pytest.approx(metrics.nll(ys, probs), rel=1e-5)
    assert len(set(scores.curves["val_nll"])) == 3, "the NLL should move from epoch to epoch"

    # The curves restart with every fit().
    _tiny_model().fit(x, y, epochs=1, callbacks=[scores], verbose=0)
    assert all(len(curve) == 1 for curve in scores.curves.values())


X_BAD, Y_BAD = _data(n=8)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SnapshotWeights([0, 2]), "Argument `epochs` must be .* Received: epochs=\\[0, 2\\]"),
        (lambda: SnapshotWeights([1.5]), "Received: epochs=\\[1.5\\]"),
        (lambda: SnapshotWeights([True]), "Received: epochs=\\[True\\]"),
        (lambda: SnapshotWeights(3), "Received: epochs=3"),
        (lambda: EpochScores({}), "Argument `splits` must be a non-empty dict"),
        (lambda: EpochScores((X_BAD, Y_BAD)), "Received: splits of type tuple"),
        (lambda: EpochScores({"val": X_BAD}), "Received: splits\\['val'\\] of type ndarray"),
        (lambda: EpochScores({"val": (X_BAD, Y_BAD[:3])}), "len\\(x\\)=8, len\\(y\\)=3"),
    ],
)
def test_per_epoch_recorders_reject_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()
