"""Shared helpers for the Keras-level tests (public API only).

Not a test module: nothing here is named `test_*`, so pytest collects no
items from it. Import as `from test_case import ...` (pytest puts `tests/`
on `sys.path`).
"""

import keras
import numpy as np


def seeded_data(n=64, d=20, classes=5, seed=0):
    """Tiny learnable classification problem: `(x float32, y int32)`.

    Labels are the arg-max of a fixed random linear map, so a few training
    steps move the loss and every class occurs.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    w = rng.normal(size=(d, classes))
    y = np.argmax(x @ w, axis=-1).astype("int32")
    return x, y


def weights_of(obj):
    """A copy of every weight of a layer or model, as numpy arrays."""
    return [np.array(keras.ops.convert_to_numpy(w)) for w in obj.weights]


def assert_weights_equal(before, after, equal=True):
    """`equal=True`: all arrays bit-identical; `False`: at least one differs."""
    assert len(before) == len(after)
    same = [a.shape == b.shape and np.array_equal(a, b) for a, b in zip(before, after)]
    if equal:
        assert all(same), f"weights changed: {same}"
    else:
        assert not all(same), "no weight changed"


def assert_config_round_trip(obj):
    """`type(obj).from_config(obj.get_config())` has the same config."""
    config = obj.get_config()
    clone = type(obj).from_config(config)
    assert type(clone) is type(obj)
    assert clone.get_config() == config
    return clone


def assert_saved_model_predicts_same(model, x, tmp_path, name="model.keras"):
    """`.keras` save -> `keras.saving.load_model` -> bit-identical predictions."""
    path = str(tmp_path / name)
    expected = model.predict(x, verbose=0)
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    return loaded


def run_one_fit_step(model, x, y, **kwargs):
    """One full-batch, unshuffled `fit` step; returns the History."""
    kwargs.setdefault("batch_size", len(x))
    kwargs.setdefault("epochs", 1)
    return model.fit(x, y, shuffle=False, verbose=0, **kwargs)
