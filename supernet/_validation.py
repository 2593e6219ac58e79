"""Argument checks shared by the public API, raising in Keras's wording.

Every check raises `ValueError("Argument `name` must be ... Received:
name=...")` before any training starts, so bad input costs nothing. The
array checks convert with `np.asarray` only; models are read with
`get_weights`.
"""

import numpy as np


def _shown(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(name, value, minimum):
    """`value` is an int (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Argument `{name}` must be an int >= {minimum}. Received: {name}={_shown(value)}")
    return int(value)


def check_bool(name, value):
    """`value` is a bool (Python's or NumPy's); returned as Python's."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"Argument `{name}` must be a bool. Received: {name}={value!r}")
    return bool(value)


def check_positive(name, value):
    """`value` is a finite real number > 0."""
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"Argument `{name}` must be a finite number > 0. Received: {name}={_shown(value)}")
    return value


def check_finite(name, x):
    """`x` is a non-empty numeric array without NaN or inf."""
    array = np.asarray(x)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"Argument `{name}` must be a numeric array. Received: {name} with dtype={array.dtype}")
    if np.issubdtype(array.dtype, np.inexact):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise ValueError(
                f"Argument `{name}` must contain only finite values (no NaN or inf). "
                f"Received: {name} with {bad} non-finite entries"
            )
    return array


def check_labels(name, y, num_classes=None, num_samples=None):
    """`y` is 1-D (or `(n, 1)`), integer-valued, in `[0, num_classes)`."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(
            f"Argument `{name}` must be a 1-D array of integer class labels. Received: {name}.shape={labels.shape}"
        )
    if num_samples is not None and len(labels) != num_samples:
        raise ValueError(
            f"Argument `{name}` must have one label per sample ({num_samples}). Received: len({name})={len(labels)}"
        )
    if labels.size == 0:
        return labels.astype("int64")
    if not np.issubdtype(labels.dtype, np.number) or (
        np.issubdtype(labels.dtype, np.inexact) and not np.all(np.isfinite(labels) & (labels == np.round(labels)))
    ):
        raise ValueError(f"Argument `{name}` must hold integer class labels. Received: {name} with dtype={labels.dtype} and non-integer values")
    low, high = labels.min(), labels.max()
    if low < 0 or (num_classes is not None and high >= num_classes):
        bound = "" if num_classes is None else f" and < {num_classes}"
        raise ValueError(f"Argument `{name}` must hold labels >= 0{bound}. Received: {name} with min={low}, max={high}")
    return labels.astype("int64")


def check_xy(x_name, x, y_name, y, num_classes=None, min_classes=1):
    """Inputs and labels of one split: same length, non-empty, finite, labels in range.

    `min_classes=2` also rejects data whose labels are all one class (nothing
    to learn from).
    """
    x = check_finite(x_name, x)
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"Argument `{x_name}` must hold at least one sample. Received: {x_name}.shape={x.shape}")
    labels = check_labels(y_name, y, num_classes, num_samples=len(x))
    found = len(np.unique(labels))
    if found < min_classes:
        raise ValueError(
            f"Argument `{y_name}` must contain at least {min_classes} distinct classes. "
            f"Received: {y_name} with only class(es) {np.unique(labels).tolist()}"
        )
    return x, labels


def check_dataset(ds, name="ds", num_classes=None, input_shape=None):
    """A `supernet.data.Dataset` fit for training.

    Training data must be non-empty, finite and hold >= 2 classes; every
    split's labels must be in `[0, num_classes)`. With `num_classes` /
    `input_shape` (the model's), the dataset must match them.
    """
    for attr in ("x_train", "y_train", "num_classes", "input_shape"):
        if not hasattr(ds, attr):
            raise ValueError(f"Argument `{name}` must be a supernet.data.Dataset. Received: {name}={_shown(ds)}")
    if num_classes is not None and num_classes != ds.num_classes:
        raise ValueError(
            f"Argument `{name}` must have as many classes as the model ({num_classes}). "
            f"Received: {name}.num_classes={ds.num_classes}"
        )
    if input_shape is not None and tuple(input_shape) != tuple(np.shape(ds.x_train)[1:]):
        raise ValueError(
            f"Argument `{name}` must have inputs of the model's shape {tuple(input_shape)}. "
            f"Received: {name}.x_train.shape={np.shape(ds.x_train)}"
        )
    check_xy(f"{name}.x_train", ds.x_train, f"{name}.y_train", ds.y_train, ds.num_classes, min_classes=2)
    for split in ("val", "test"):
        x, y = getattr(ds, f"x_{split}", None), getattr(ds, f"y_{split}", None)
        if x is not None and len(x):
            check_xy(f"{name}.x_{split}", x, f"{name}.y_{split}", y, ds.num_classes)
    return ds


def nonfinite_weights(model):
    """Names of the float weights of `model` holding NaN or inf."""
    return [
        w.path if hasattr(w, "path") else w.name
        for w, value in zip(model.weights, model.get_weights())
        if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.all(np.isfinite(value))
    ]


def check_finite_weights(name, models):
    """Every model in `models` has only finite weights (a diverged member is refused)."""
    for index, model in enumerate(models):
        bad = nonfinite_weights(model)
        if bad:
            raise ValueError(
                f"Argument `{name}` must hold models with finite weights; a diverged member "
                f"(NaN or inf weights) cannot be merged, averaged or voted. "
                f"Received: {name}[{index}] ({model.name!r}) with non-finite weights in {bad[:3]}"
            )
    return models


class DivergenceError(ValueError):
    """A model's training diverged (non-finite loss or weights); it must not be used.

    Raised by the trainers instead of returning a model that a vote, a
    SuperNet or a soup would silently average in. `run_experiment` records
    the run with `status="failed"` and this message.
    """


def check_converged(model, losses, what, learning_rate=None):
    """Raise `DivergenceError` if `losses` or `model`'s weights are not finite.

    Args:
        model: the trained `keras.Model`.
        losses: the per-epoch (or per-step) training losses seen.
        what: how to name the model in the message, e.g. `"member 3"`.
        learning_rate: shown in the message when given.
    """
    losses = [float(v) for v in losses]
    bad_loss = [i for i, v in enumerate(losses) if not np.isfinite(v)]
    bad_weights = nonfinite_weights(model)
    if not bad_loss and not bad_weights:
        return model
    when = f"the training loss became {losses[bad_loss[0]]} in epoch {bad_loss[0] + 1}" if bad_loss else "the training loss stayed finite"
    weights = f"non-finite weights in {bad_weights[:3]}" if bad_weights else "finite weights"
    rate = "" if learning_rate is None else f" Received: learning_rate={learning_rate}."
    raise DivergenceError(
        f"{what} diverged: {when} and it has {weights}. Training was stopped (TerminateOnNaN) "
        f"and the model is not used in any vote, SuperNet or soup; lower the learning rate.{rate}"
    )
