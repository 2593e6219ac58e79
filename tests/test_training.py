"""Recipes shared by the experiments: progress output, the SuperNet head's data."""

import keras
import numpy as np
import pytest

from supernet import data, training
from supernet.models import PartitionedMLP, build_supernet, fit_head
from supernet.training import epoch_logger


@pytest.mark.parametrize(
    "total, every, silence, logged",
    [
        (100, None, 1e9, [20, 40, 60, 80, 100]),  # a fifth of the run, and the last epoch
        (7, 3, 1e9, [3, 6, 7]),
        (5, None, 0.0, [1, 2, 3, 4, 5]),  # every epoch once more than `max_silence_s` has passed
    ],
)
def test_epoch_logger_reports_every_few_epochs_and_never_stays_silent(total, every, silence, logged):
    lines = []
    callback = epoch_logger(lines.append, total, every=every, max_silence_s=silence)
    for epoch in range(total):
        callback.on_epoch_end(epoch, {"loss": 0.5})
    assert [int(line.split()[1].split("/")[0]) for line in lines] == logged
    assert lines[-1] == f"  epoch {total}/{total}: loss 0.5000"


# === supermodel(..., head_data=...) ===


def _members_and_data():
    ds = data.synthetic(num_classes=3, input_shape=(6,), num_train=120, num_test=30, validation_size=0.2, seed=0)
    members_ds, head_data = data.holdout_split(ds, 0.25, seed=0)
    members = PartitionedMLP(6, [8], 3, num_members=2, seed=0)
    members(members_ds.x_train[:1])
    # Random non-zero weights, as trained members have.
    rng = np.random.default_rng(0)
    members.set_weights([rng.normal(size=w.shape).astype("float32") for w in members.get_weights()])
    return members, members_ds, head_data


def _head_weights(supernet):
    return [np.array(keras.ops.convert_to_numpy(w)) for w in supernet.get_layer("supernet_head").weights]


def _spy_on_fit_head(monkeypatch):
    seen = []

    def spy(model, x, y, **kwargs):
        seen.append((np.array(x), np.array(y)))
        return fit_head(model, x, y, **kwargs)

    monkeypatch.setattr(training, "fit_head", spy)
    return seen


def test_supermodel_trains_the_head_on_exactly_the_head_data(monkeypatch):
    members, ds, (x_head, y_head) = _members_and_data()
    seen = _spy_on_fit_head(monkeypatch)
    _, result = training.supermodel(members, ds, downscale=1.0, head_epochs=1, seed=0, head_data=(x_head, y_head))
    (x_seen, y_seen), = seen
    np.testing.assert_array_equal(x_seen, x_head)
    np.testing.assert_array_equal(y_seen, y_head)
    assert result["head_samples"] == len(y_head) == 24
    # By default the head trains on the dataset's training part, as before.
    _, result = training.supermodel(members, ds, downscale=1.0, head_epochs=1, seed=0)
    np.testing.assert_array_equal(seen[1][0], ds.x_train)
    np.testing.assert_array_equal(seen[1][1], ds.y_train)
    assert result["head_samples"] == len(ds.y_train) == 72


def test_supermodel_with_head_data_equals_a_manual_fit_head_on_it():
    members, ds, (x_head, y_head) = _members_and_data()
    # Full-batch steps: the order of examples within an epoch cannot matter.
    common = dict(head_epochs=3, batch_size=len(ds.x_train), learning_rate=0.05, seed=0)
    keras.utils.set_random_seed(0)
    held_out, _ = training.supermodel(members, ds, downscale=1.0, head_data=(x_head, y_head), **common)
    keras.utils.set_random_seed(0)
    manual = build_supernet(members, init="copy", downscale=1.0, seed=0)
    fit_head(manual, x_head, y_head, validation_data=(ds.x_val, ds.y_val), epochs=3, batch_size=len(ds.x_train),
             optimizer=keras.optimizers.Adam(0.05), verbose=0)
    keras.utils.set_random_seed(0)
    on_train, _ = training.supermodel(members, ds, downscale=1.0, **common)
    copied = _head_weights(build_supernet(members, init="copy", downscale=1.0, seed=0))
    for got, expected, full, start in zip(_head_weights(held_out), _head_weights(manual), _head_weights(on_train), copied):
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert not np.allclose(got, start)  # the head did train
    assert not all(np.allclose(a, b, atol=1e-4) for a, b in zip(_head_weights(held_out), _head_weights(on_train)))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda x, y: x, r"Argument `head_data` must be None or a tuple `\(x, y\)`. Received: head_data of type ndarray"),
        (lambda x, y: (x, y, y), r"Received: head_data of type tuple and length 3"),
        (lambda x, y: (x, y[:-1]), r"Argument `head_data\[1\]` must have one label per sample \(24\)"),
        (lambda x, y: (x[:, :4], y), r"Argument `head_data` must have inputs of the dataset's shape \(6,\). Received: head_data\[0\].shape=\(24, 4\)"),
        (lambda x, y: (x, y + 3), r"Argument `head_data\[1\]` must hold labels >= 0 and < 3"),
        (lambda x, y: (x, np.zeros_like(y)), r"Argument `head_data\[1\]` must contain at least 2 distinct classes"),
        (lambda x, y: (np.full_like(x, np.nan), y), r"Argument `head_data\[0\]` must contain only finite values"),
    ],
)
def test_supermodel_rejects_bad_head_data(make, match, monkeypatch):
    members, ds, (x_head, y_head) = _members_and_data()
    seen = _spy_on_fit_head(monkeypatch)
    with pytest.raises(ValueError, match=match):
        training.supermodel(members, ds, downscale=1.0, head_epochs=1, head_data=make(x_head, y_head))
    assert not seen
