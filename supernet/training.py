"""Training recipes shared by the experiments: members, SuperNet heads, scores.

Thin orchestration over `model.fit`: what the thesis does again and again
(train members, merge them, re-train the head, score on held-out data), so
each experiment module only holds its configuration.
"""

import time

import keras
import numpy as np

from supernet import metrics
from supernet._validation import DivergenceError, check_converged, check_dataset, check_int, check_xy  # noqa: F401
from supernet.callbacks import MemberEarlyStopping
from supernet.models.supernet import build_supernet, fit_head
from supernet.optimizers import FusedAdam


def scores(y, probs):
    """Accuracy and NLL of probabilities; for `(n, K, C)` the softmax vote."""
    probs = np.asarray(probs)
    if probs.ndim == 3:
        probs = probs.mean(axis=1)
    return {"accuracy": metrics.accuracy(y, probs), "nll": metrics.nll(y, probs)}


def epoch_logger(log, total_epochs, every=None, keys=None, max_silence_s=30.0):
    """A `LambdaCallback` that sends a progress line to `log` every few epochs.

    A line is sent every `every` epochs (default: a fifth of the run), at
    the last epoch, and after any epoch that ends more than `max_silence_s`
    seconds after the previous line, so long epochs are never silent.
    """
    every = every or max(1, total_epochs // 5)
    last = [time.perf_counter()]

    def on_epoch_end(epoch, logs):
        now = time.perf_counter()
        if (epoch + 1) % every == 0 or epoch + 1 == total_epochs or now - last[0] > max_silence_s:
            last[0] = now
            shown = {k: v for k, v in logs.items() if keys is None or k in keys}
            text = ", ".join(f"{k} {v:.4f}" for k, v in shown.items())
            log(f"  epoch {epoch + 1}/{total_epochs}: {text}")

    return keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


def _input_shape(model):
    if getattr(model, "input_dim", None) is not None:
        return (model.input_dim,)
    inputs = getattr(model, "inputs", None) if model.built else None
    return tuple(inputs[0].shape[1:]) if inputs else None


def fit_members(model, ds, *, epochs, batch_size=128, learning_rate=1e-3, patience=None, callbacks=(), log=None, sample_weight=None, loss=None):
    """Train a fused `PartitionedMLP` (or any compiled-by-us Keras model).

    Args:
        model: an uncompiled `PartitionedMLP`.
        ds: a `supernet.data.Dataset`.
        epochs: maximum epochs.
        patience: if set, `MemberEarlyStopping` on each member's validation
            loss with best-weight restoration (thesis Table 4's rule).
        callbacks: extra callbacks.
        log: optional `fn(str)` for progress lines.
        sample_weight: optional `(n,)` or per-member `(n, K)` training
            weights, e.g. `supernet.bootstrap.bootstrap_weights` to train
            each member on its own bootstrap resample.
        loss: optional loss for `model.compile` (default: the model's own,
            `MemberwiseCrossentropy` for a `PartitionedMLP`), e.g.
            `supernet.losses.MarginCrossentropy`.

    Returns:
        dict: `history` (per-epoch logs) and `best_epochs` (per member, when
        early stopping is on).

    Raises:
        DivergenceError: (a `ValueError`) if the loss or the weights became
            NaN or inf; training stops at the first non-finite batch loss.
    """
    check_int("epochs", epochs, 1)
    check_dataset(ds, num_classes=getattr(model, "num_classes", None), input_shape=_input_shape(model))
    # FusedAdam is Keras's Adam with each variable's update in one kernel
    # (see `supernet.optimizers`; ~20% of a fused MLP step on a CPU).
    if loss is None:
        model.compile(optimizer=FusedAdam(learning_rate))
    else:
        model.compile(optimizer=FusedAdam(learning_rate), loss=loss)
    callbacks = list(callbacks)
    stopper = None
    if patience is not None:
        stopper = MemberEarlyStopping((ds.x_val, ds.y_val), patience=patience)
        callbacks.append(stopper)
    if log is not None:
        callbacks.append(epoch_logger(log, epochs))
    # A NaN loss stops training at once; `check_converged` then raises.
    callbacks.append(keras.callbacks.TerminateOnNaN())
    history = model.fit(
        ds.x_train,
        ds.y_train,
        sample_weight=sample_weight,
        validation_data=(ds.x_val, ds.y_val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=callbacks,
        verbose=0,
    )
    check_converged(model, history.history.get("loss", []), f"Model {model.name!r}", learning_rate)
    result = {"history": {k: [float(v) for v in vs] for k, vs in history.history.items()}}
    if stopper is not None:
        result["best_epochs"] = stopper.best_epochs
    return result


def supermodel(members, ds, *, init="copy", downscale="auto", l2=0.0, head_epochs=10, batch_size=128, learning_rate=1e-3, seed=None, log=None, head_data=None):
    """Merge members into a SuperNet, re-train its head, score it.

    Args:
        members: the trained members (a `PartitionedMLP` or a list of models),
            as for `build_supernet`.
        ds: a `supernet.data.Dataset`; its validation split picks an `"auto"`
            `downscale` and is monitored, its test split is scored.
        init, downscale, l2, seed: as for `build_supernet`.
        head_epochs, batch_size, learning_rate: the head's re-training (a
            fresh Adam).
        log: optional `fn(str)` for progress lines.
        head_data: `(x, y)` the head is re-trained on, or `None` (default)
            for `(ds.x_train, ds.y_train)`. Pass a part of the training set
            the members never saw (`supernet.data.holdout_split`) to train
            the head as a stacked combiner.

    Returns:
        `(supernet, result)` where `result` has `before` / `after` test scores
        (copied head before re-training, and after), `val_after`, the chosen
        `downscale`, the head's per-epoch `history` and `head_samples`, the
        number of examples the head was re-trained on.
    """
    check_dataset(ds)
    head_x, head_y = _head_data(head_data, ds)
    supernet = build_supernet(
        members,
        init=init,
        downscale=downscale,
        l2=l2,
        validation_data=(ds.x_val, ds.y_val) if downscale == "auto" else None,
        seed=seed,
    )
    before = scores(ds.y_test, supernet.predict(ds.x_test, verbose=0, batch_size=1024))
    callbacks = [epoch_logger(log, head_epochs)] if log is not None else None
    history = fit_head(
        supernet,
        head_x,
        head_y,
        validation_data=(ds.x_val, ds.y_val),
        epochs=head_epochs,
        batch_size=batch_size,
        optimizer=keras.optimizers.Adam(learning_rate),
        callbacks=callbacks,
        verbose=0,
    )
    result = {
        "before": before,
        "after": scores(ds.y_test, supernet.predict(ds.x_test, verbose=0, batch_size=1024)),
        "val_after": scores(ds.y_val, supernet.predict(ds.x_val, verbose=0, batch_size=1024)),
        "downscale": supernet.supernet_info["downscale"],
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "head_samples": len(head_y),
    }
    return supernet, result


def _head_data(head_data, ds):
    """`(x, y)` of `supermodel`'s `head_data`, checked against `ds`."""
    if head_data is None:
        return ds.x_train, ds.y_train
    if not isinstance(head_data, (tuple, list)) or len(head_data) != 2:
        raise ValueError(
            "Argument `head_data` must be None or a tuple `(x, y)`. "
            f"Received: head_data of type {type(head_data).__name__}"
            + (f" and length {len(head_data)}" if isinstance(head_data, (tuple, list)) else "")
        )
    x, y = check_xy("head_data[0]", head_data[0], "head_data[1]", head_data[1], ds.num_classes, min_classes=2)
    if tuple(x.shape[1:]) != tuple(np.shape(ds.x_train)[1:]):
        raise ValueError(
            f"Argument `head_data` must have inputs of the dataset's shape {tuple(np.shape(ds.x_train)[1:])}. "
            f"Received: head_data[0].shape={x.shape}"
        )
    return x, y
