"""Ensembles in transfer learning: local / global deep ensembles, SSE, StarSSE.

Every trainer fine-tunes copies of pre-trained Keras models (a backbone, or
a classifier whose `"head"` layer is replaced, see
`supernet.models.transfer_model`) on a `supernet.data.Dataset` and returns
`(members, record)`:

- `members`: the fine-tuned `keras.Model`s that finished with finite loss
  and weights, in training order. A diverged member is never returned, so
  it cannot be averaged into an ensemble or a soup by accident.
- `record`: JSON-able dict with one entry per planned member (`status`
  `"ok"` or `"failed"` with a `message`, `start_from`, test `accuracy`,
  `nll`, `calibrated_nll`, wall and CPU seconds, steps and trainable
  parameter count) and the `ensemble` scores of the successful members
  (`avg_member_accuracy`, `accuracy`, `nll`, `calibrated_nll`,
  `diversity`, ...; from `supernet.metrics.ensemble_metrics`).

The four methods (Sadrtdinov et al. 2023, Sec. 3):

- `local_de`: `M` members fine-tuned from ONE checkpoint with different
  seeds (new head initialisation and data order).
- `global_de`: one member per pre-trained checkpoint.
- `sse`: member 1 is fine-tuned normally (cosine from `lr` over `epochs`),
  then member `k` starts from member `k - 1` and runs one cycle that
  restarts at `fge_lr` and decays by cosine over `fge_epochs`.
- `star_sse`: the same cycles, but every member `k >= 2` starts from
  member 1, so the members form a star around it. `trainable=` restricts
  the cycles to the head or the last stages (parameter-efficient StarSSE).

Optimisation follows the paper: SGD with momentum 0.9 and weight decay.
The schedule of a whole SSE / StarSSE run is one
`supernet.schedules.CosineRestarts` (first cycle: `epochs` at `lr`; later
cycles: `fge_epochs` at `fge_lr`), on one optimizer whose step counter runs
on across cycles and whose slots are zeroed with
`supernet.callbacks.reset_optimizer_state` at every cycle start.

Keras's SGD differs from PyTorch's in two documented ways: momentum is
`m <- 0.9 m - lr g; w <- w + m` (the same as PyTorch's while the rate is
constant), and weight decay is decoupled, `w <- w - lr * wd * w`, applied
to the trainable variables (BatchNormalization scales and offsets
included, as in PyTorch's default).

With `bn_update=True` every member's BatchNormalization moving statistics
are recomputed on the (un-augmented) training images before it is evaluated
and returned (`supernet.batchnorm.recompute_batchnorm_statistics`, batches
of `batch_size`), on a copy: training continues from the model's own
statistics. Off by default, as in the StarSSE reference code
(`isadrtdinov/ens-for-transfer`, which carries an `update_bn` but never
calls it: members are evaluated with their running statistics).

Mini-batches come from `TransferBatches`: an explicit, seeded shuffle (and
optional flip + pad-and-crop augmentation) so the data order of a member is
a function of its seed alone, and cycles may last fractional epochs.
"""

import math
import re
import time

import keras
import numpy as np

from supernet import metrics
from supernet._validation import check_bool, check_dataset, check_int, check_positive, nonfinite_weights
from supernet.batchnorm import recompute_batchnorm_statistics
from supernet.callbacks.snapshot_ensemble import reset_optimizer_state
from supernet.models.resnet import transfer_model
from supernet.schedules import CosineRestarts

__all__ = [
    "TransferBatches",
    "global_de",
    "local_de",
    "model_stages",
    "predict_probs",
    "set_trainable",
    "sse",
    "star_sse",
    "steps_for",
]

_STAGE_PATTERN = re.compile(r"^(?:stage|conv)(\d+)_")
_TRAINABLE = ("all", "head", "last_k_stages")


# === Data ===


class TransferBatches(keras.utils.PyDataset):
    """A fixed number of shuffled mini-batches, optionally augmented.

    The training set is traversed in passes, each in a fresh permutation
    drawn from `seed`; batches run across pass boundaries, so every batch
    holds `min(batch_size, n)` examples and a run may last a fractional
    number of epochs. With `augment=True` each image is flipped
    horizontally with probability 1/2 and randomly cropped back to its size
    after zero-padding `pad` pixels per side (the standard CIFAR
    augmentation; random per batch from `(seed, batch index)`).

    Args:
        x: array `(n, ...)` of inputs (images `(n, h, w, c)` to augment).
        y: array `(n,)` of labels.
        batch_size: int >= 1.
        num_steps: int >= 1, the number of batches.
        seed: int, seed of the order and of the augmentation.
        augment: bool, flip and pad-and-crop the images.
        pad: int >= 0, padding of the random crop.
    """

    def __init__(self, x, y, batch_size, num_steps, seed=0, augment=False, pad=4, **kwargs):
        super().__init__(**kwargs)
        if batch_size < 1 or num_steps < 1:
            raise ValueError(
                "Arguments `batch_size` and `num_steps` must be >= 1. "
                f"Received: batch_size={batch_size}, num_steps={num_steps}"
            )
        if augment and np.ndim(x) != 4:
            raise ValueError(f"`augment=True` needs images (n, h, w, c). Received: x.shape={np.shape(x)}")
        self.x, self.y = x, y
        self.batch_size = int(min(batch_size, len(x)))
        self.num_steps = int(num_steps)
        self.seed = int(seed)
        self.augment = augment
        self.pad = int(pad)
        rng = np.random.default_rng(self.seed)
        total = self.num_steps * self.batch_size
        passes = -(-total // len(x))
        self.order = np.concatenate([rng.permutation(len(x)) for _ in range(passes)])[:total]

    def __len__(self):
        return self.num_steps

    def __getitem__(self, index):
        idx = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        x, y = self.x[idx], self.y[idx]
        if self.augment:
            x = _flip_and_crop(x, self.pad, np.random.default_rng([self.seed, index]))
        return x, y


def _flip_and_crop(x, pad, rng):
    n, h, w, _ = x.shape
    flip = rng.random(n) < 0.5
    x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    if pad == 0:
        return x
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    return np.stack([padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def steps_for(epochs, num_examples, batch_size):
    """Optimizer steps of `epochs` (may be fractional) epochs, at least 1."""
    steps_per_epoch = math.ceil(num_examples / min(batch_size, num_examples))
    return max(1, int(round(epochs * steps_per_epoch)))


# === Stages and freezing ===


def model_stages(model):
    """Stage index -> layer names, from the `stage{s}_` / `conv{s}_` prefixes.

    `small_resnet` names its stages `stage1_...`; Keras's ResNet50 names
    its stem `conv1_...` and its stages `conv2_...` to `conv5_...`.

    Returns:
        dict `{int: [layer names]}` sorted by stage index.
    """
    stages = {}
    for layer in model.layers:
        match = _STAGE_PATTERN.match(layer.name)
        if match:
            stages.setdefault(int(match.group(1)), []).append(layer.name)
    return dict(sorted(stages.items()))


def set_trainable(model, trainable="all", last_k=1):
    """Freezes all but the head (and optionally the last `last_k` stages).

    `"last_k_stages"` keeps trainable every layer from the first layer of
    the last `last_k` stages onwards in topological order (so layers after
    the stages, e.g. pooling, and the head); everything before is frozen.
    Frozen BatchNormalization layers run in inference mode (Keras 3), so
    their moving statistics stay bit-identical too.

    Args:
        model: a functional `keras.Model` with a layer named `"head"`.
        trainable: `"all"`, `"head"` or `"last_k_stages"`.
        last_k: int >= 1, number of trailing stages to train.

    Returns:
        The number of trainable parameters.
    """
    if trainable not in _TRAINABLE:
        raise ValueError(f"Argument `trainable` must be one of {_TRAINABLE}. Received: trainable={trainable!r}")
    names = [layer.name for layer in model.layers]
    if trainable != "all" and "head" not in names:
        raise ValueError(f"`trainable={trainable!r}` needs a layer named 'head'. Received layers: {names[-3:]}")
    if trainable == "all":
        first = 0
    elif trainable == "head":
        first = names.index("head")
    else:
        stages = model_stages(model)
        if isinstance(last_k, bool) or not isinstance(last_k, int) or not 1 <= last_k <= len(stages):
            raise ValueError(
                f"Argument `last_k` must be an int in [1, {len(stages)}] (the model has stages "
                f"{list(stages)}). Received: last_k={last_k}"
            )
        kept = list(stages)[-last_k:]
        first = min(names.index(name) for s in kept for name in stages[s])
    # Layers frozen by construction (e.g. ResNet50's fixed ImageNet
    # preprocessing) stay frozen whatever `trainable` asks for.
    base = _base_trainable(model)
    for i, layer in enumerate(model.layers):
        layer.trainable = base[layer.name] and i >= first
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))


def _base_trainable(model):
    """The model's trainable flags as first seen by `set_trainable`."""
    if not hasattr(model, "_supernet_base_trainable"):
        model._supernet_base_trainable = {layer.name: layer.trainable for layer in model.layers}
    return model._supernet_base_trainable


# === Shared training pieces ===


def _as_model(pretrained):
    if isinstance(pretrained, keras.Model):
        return pretrained
    if callable(pretrained):
        model = pretrained()
        if isinstance(model, keras.Model):
            return model
    raise ValueError(
        "A pre-trained model must be a keras.Model or a callable returning one. "
        f"Received: {pretrained!r}"
    )


def _member_seeds(seed, k):
    """Independent head-initialisation and data-order seeds of member `k`."""
    head, order = np.random.default_rng([int(seed), int(k)]).integers(0, 2**31 - 1, size=2)
    return int(head), int(order)


def _sgd(schedule, momentum, weight_decay):
    return keras.optimizers.SGD(learning_rate=schedule, momentum=momentum, weight_decay=weight_decay or None)


def _snapshot(model):
    member = keras.models.clone_model(model)
    member.set_weights(model.get_weights())
    base = _base_trainable(model)
    for layer in member.layers:
        layer.trainable = base.get(layer.name, True)
    return member


class _Progress(keras.callbacks.Callback):
    """Last batch loss, and a progress line every `every` steps."""

    def __init__(self, log, label, every, total):
        super().__init__()
        self.log, self.label, self.every, self.total = log, label, every, total

    def on_train_begin(self, logs=None):
        self.last_loss = None
        self.done = 0

    def on_train_batch_end(self, batch, logs=None):
        self.done = batch + 1
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])
        if self.log is not None and (self.done % self.every == 0 or self.done == self.total):
            self.log(f"  {self.label}: step {self.done}/{self.total}, loss {self.last_loss:.4f}")


def _train_cycle(model, optimizer, ds, *, steps, start_step, data_seed, batch_size, augment, callbacks, log, label, run_eagerly=False):
    """One fit over `steps` batches; returns the member's training entry."""
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=False, run_eagerly=run_eagerly)
    # A cycle cut short by a NaN would shift the later cycles of the schedule.
    optimizer.iterations.assign(start_step)
    batches = TransferBatches(ds.x_train, ds.y_train, batch_size, steps, seed=data_seed, augment=augment)
    steps_per_epoch = steps_for(1, len(ds.x_train), batch_size)
    progress = _Progress(log, label, max(steps_per_epoch, steps // 5), steps)
    wall, cpu = time.perf_counter(), time.process_time()
    # The batches are already in their seeded order: Keras's own shuffle of a
    # `PyDataset` would reorder them with Python's global `random`.
    model.fit(batches, epochs=1, verbose=0, shuffle=False,
              callbacks=[keras.callbacks.TerminateOnNaN(), progress, *callbacks])
    entry = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "steps": int(progress.done),
        "planned_steps": int(steps),
        "trainable_params": int(sum(int(np.prod(v.shape)) for v in model.trainable_weights)),
        "final_loss": progress.last_loss,
    }
    loss_ok = progress.last_loss is not None and math.isfinite(progress.last_loss)
    if loss_ok and progress.done == steps and not nonfinite_weights(model):
        entry.update(status="ok", message="")
    else:
        entry.update(
            status="failed",
            message=(
                f"{label} diverged: loss {progress.last_loss} after step {progress.done}/{steps} "
                "(non-finite loss stops the cycle via TerminateOnNaN; non-finite weights are checked "
                "after it); excluded from the ensemble, lower the learning rate"
            ),
            final_loss=None,
        )
        if log is not None:
            log(f"  {entry['message']}")
    return entry


def predict_probs(model, x, batch_size=512):
    """Inference-mode outputs of `model` on `x`, as float64 numpy.

    Direct `model(batch, training=False)` calls instead of `predict()`:
    every fine-tuned member or soup is a new model, and `predict()` would
    trace a new graph for each one, which costs more than the forward
    passes of a small test set.
    """
    if len(x) == 0:
        raise ValueError("Argument `x` must not be empty. Received: len(x)=0")
    outputs = [
        np.asarray(keras.ops.convert_to_numpy(model(x[i : i + batch_size], training=False)), np.float64)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outputs)


def _evaluate(model, ds, batch_size):
    probs = predict_probs(model, ds.x_test, batch_size)
    if not np.all(np.isfinite(probs)):
        return None, {"accuracy": None, "nll": None, "calibrated_nll": None}
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs, {
        "accuracy": metrics.accuracy(ds.y_test, probs),
        "nll": metrics.nll(ds.y_test, probs),
        "calibrated_nll": metrics.calibrated_nll(ds.y_test, probs),
    }


def _failed(label, message, start_from):
    return {
        "status": "failed",
        "message": message,
        "start_from": start_from,
        "wall_s": 0.0,
        "cpu_s": 0.0,
        "steps": 0,
        "accuracy": None,
        "nll": None,
        "calibrated_nll": None,
    }


def _finish(method, entries, members, probs, ds, settings, log):
    """Scores the successful members and assembles the record."""
    record = {
        "method": method,
        "settings": settings,
        "members": entries,
        "num_members": len(entries),
        "num_ok": len(members),
        "num_failed": sum(e["status"] != "ok" for e in entries),
        "wall_s": float(sum(e["wall_s"] for e in entries)),
        "cpu_s": float(sum(e["cpu_s"] for e in entries)),
    }
    if probs:
        scores = metrics.ensemble_metrics(ds.y_test, np.stack(probs))
        record["ensemble"] = {k: v for k, v in scores.items() if k != "member_accuracy"}
    else:
        record["ensemble"] = {"avg_member_accuracy": None, "accuracy": None, "nll": None, "calibrated_nll": None, "diversity": None}
    if log is not None:
        e = record["ensemble"]
        if probs:
            log(
                f"{method}: {len(members)}/{len(entries)} members, avg member acc {e['avg_member_accuracy']:.4f}, "
                f"ensemble acc {e['accuracy']:.4f}, diversity {e['diversity']:.1f}, wall {record['wall_s']:.1f}s"
            )
        else:
            log(f"{method}: no member finished; no ensemble")
    return members, record


def _fresh_batchnorm(member, entry, ds, batch_size):
    """Recomputes `member`'s BatchNorm statistics on the training images; its cost joins the entry's."""
    wall, cpu = time.perf_counter(), time.process_time()
    recompute_batchnorm_statistics(member, ds.x_train, batch_size)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    entry.update(bn_update_wall_s=wall, bn_update_cpu_s=cpu, wall_s=entry["wall_s"] + wall, cpu_s=entry["cpu_s"] + cpu)


def _add_member(model, entry, ds, batch_size, members, probs, entries, log, label, bn_update_batch_size=None):
    """Evaluates a trained member and keeps a copy of it if it is sound.

    `bn_update_batch_size`: `None`, or the batch size with which the copy's
    BatchNormalization statistics are recomputed on `ds.x_train` before it
    is evaluated; `model` itself keeps its own.
    """
    if entry["status"] == "ok":
        member = model
        if bn_update_batch_size is not None:
            member = _snapshot(model)
            _fresh_batchnorm(member, entry, ds, bn_update_batch_size)
        member_probs, scores = _evaluate(member, ds, batch_size)
        if member_probs is None:
            entry.update(status="failed", message=f"{label} predicts non-finite probabilities")
        else:
            members.append(_snapshot(model) if member is model else member)
            probs.append(member_probs)
        entry.update(scores)
        if log is not None and entry["status"] == "ok":
            log(f"  {label}: test acc {entry['accuracy']:.4f}, wall {entry['wall_s']:.1f}s")
    else:
        entry.update(accuracy=None, nll=None, calibrated_nll=None)
    entries.append(entry)


def _check_positive(**kwargs):
    for name, value in kwargs.items():
        check_positive(name, value)


# === Deep ensembles ===


def _independent(method, sources, ds, *, epochs, lr, batch_size, momentum, weight_decay, augment, seed, callbacks, log, eval_batch_size, start_labels, run_eagerly, bn_update):
    _check_positive(epochs=epochs, lr=lr, batch_size=batch_size)
    bn_update = check_bool("bn_update", bn_update)
    check_dataset(ds)
    steps = steps_for(epochs, len(ds.x_train), batch_size)
    members, probs, entries = [], [], []
    for k, source in enumerate(sources):
        label = f"{method} member {k + 1}/{len(sources)}"
        if log is not None:
            log(f"{label}: fine-tuning from {start_labels[k]}, {steps} steps at lr {lr}")
        head_seed, data_seed = _member_seeds(seed, k)
        model = transfer_model(_as_model(source), ds.num_classes, head_seed=head_seed)
        optimizer = _sgd(CosineRestarts(lr, steps), momentum, weight_decay)
        entry = _train_cycle(
            model, optimizer, ds, steps=steps, start_step=0, data_seed=data_seed, batch_size=batch_size,
            augment=augment, callbacks=callbacks, log=log, label=label, run_eagerly=run_eagerly,
        )
        entry.update(start_from=start_labels[k], head_seed=head_seed, data_seed=data_seed)
        _add_member(model, entry, ds, eval_batch_size, members, probs, entries, log, label, batch_size if bn_update else None)
    settings = dict(
        epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay, augment=augment, seed=seed,
        steps_per_member=steps, bn_update=bn_update,
    )
    return _finish(method, entries, members, probs, ds, settings, log)


def local_de(
    pretrained,
    ds,
    *,
    num_members,
    epochs,
    lr,
    batch_size=256,
    momentum=0.9,
    weight_decay=5e-4,
    augment=False,
    seed=0,
    callbacks=(),
    log=None,
    eval_batch_size=512,
    run_eagerly=False,
    bn_update=False,
):
    """Local deep ensemble: members fine-tuned from ONE pre-trained checkpoint.

    Member `k` gets a new head initialised from its own seed and its own
    data order, then is fine-tuned with SGD and a cosine schedule decaying
    from `lr` to 0 over `epochs`.

    Args:
        pretrained: the checkpoint, a `keras.Model` (backbone or classifier
            with a `"head"`) or a callable returning one.
        ds: a `supernet.data.Dataset` of the target task.
        num_members: int >= 1.
        epochs: float > 0, fine-tuning epochs per member.
        lr: float > 0, the peak learning rate.
        batch_size: int, the mini-batch size (paper: 256).
        momentum: SGD momentum (paper: 0.9).
        weight_decay: decoupled weight decay (paper: 5e-4).
        augment: bool, flip + pad-and-crop augmentation (`TransferBatches`).
        seed: int; member `k`'s seeds are drawn from `(seed, k)`.
        callbacks: extra Keras callbacks passed to every `fit()`.
        log: optional `fn(str)` for progress lines.
        eval_batch_size: batch size of the test-set predictions.
        run_eagerly: passed to `compile()`; eager steps skip graph tracing,
            which is faster for tiny models and short cycles (tests).
        bn_update: bool; `True` recomputes each member's BatchNormalization
            statistics on `ds.x_train` (un-augmented, batches of
            `batch_size`) before it is evaluated and returned; its time
            joins the member's `wall_s` / `cpu_s` (and is recorded as
            `bn_update_wall_s` / `bn_update_cpu_s`). Off by default, as in
            the reference code (see the module docstring).

    Returns:
        `(members, record)`; see the module docstring.

    Example:
    >>> members, record = local_de(source, ds, num_members=3, epochs=5, lr=0.01)  # doctest: +SKIP
    >>> record["ensemble"]["accuracy"]  # doctest: +SKIP

    Reference:
        Sadrtdinov et al. 2023, "To Stay or Not to Stay in the Pre-train
        Basin", Sec. 3 ("local DE").
    """
    check_int("num_members", num_members, 1)
    return _independent(
        "local_de", [pretrained] * num_members, ds, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
        weight_decay=weight_decay, augment=augment, seed=seed, callbacks=callbacks, log=log,
        run_eagerly=run_eagerly, eval_batch_size=eval_batch_size, start_labels=["pretrained"] * num_members,
        bn_update=bn_update,
    )


def global_de(
    pretrained_models,
    ds,
    *,
    epochs,
    lr,
    batch_size=256,
    momentum=0.9,
    weight_decay=5e-4,
    augment=False,
    seed=0,
    callbacks=(),
    log=None,
    eval_batch_size=512,
    run_eagerly=False,
    bn_update=False,
):
    """Global deep ensemble: one member per pre-trained checkpoint.

    As `local_de`, but member `k` is fine-tuned from
    `pretrained_models[k]`, checkpoints pre-trained independently (e.g.
    with different seeds), so the members leave from different pre-train
    basins.

    Args:
        pretrained_models: sequence of checkpoints (`keras.Model`s or
            callables returning one), one per member.
        ds, epochs, lr, batch_size, momentum, weight_decay, augment, seed,
        callbacks, log, eval_batch_size, run_eagerly, bn_update: as in
        `local_de`.

    Returns:
        `(members, record)`; see the module docstring.

    Reference:
        Sadrtdinov et al. 2023, Sec. 3 ("global DE").
    """
    pretrained_models = list(pretrained_models)
    if not pretrained_models:
        raise ValueError("Argument `pretrained_models` must hold at least one checkpoint. Received: []")
    return _independent(
        "global_de", pretrained_models, ds, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
        weight_decay=weight_decay, augment=augment, seed=seed, callbacks=callbacks, log=log,
        run_eagerly=run_eagerly, eval_batch_size=eval_batch_size, start_labels=[f"pretrained[{k}]" for k in range(len(pretrained_models))],
        bn_update=bn_update,
    )


# === Snapshot ensembles ===


def _cyclic(method, pretrained, ds, *, star, num_members, epochs, lr, fge_lr, fge_epochs, trainable, last_k, first_member, batch_size, momentum, weight_decay, augment, seed, callbacks, log, eval_batch_size, run_eagerly, bn_update):
    check_int("num_members", num_members, 1)
    _check_positive(epochs=epochs, lr=lr, fge_lr=fge_lr, fge_epochs=fge_epochs, batch_size=batch_size)
    bn_update = check_bool("bn_update", bn_update)
    bn_update_batch_size = batch_size if bn_update else None
    check_dataset(ds)
    if trainable not in _TRAINABLE:
        raise ValueError(f"Argument `trainable` must be one of {_TRAINABLE}. Received: trainable={trainable!r}")
    n = len(ds.x_train)
    first_steps = steps_for(epochs, n, batch_size)
    cycle_steps = steps_for(fge_epochs, n, batch_size)
    schedule = CosineRestarts(fge_lr, cycle_steps, first_cycle_steps=first_steps, first_peak_lr=lr)
    optimizer = _sgd(schedule, momentum, weight_decay)
    members, probs, entries = [], [], []

    label = f"{method} member 1/{num_members}"
    head_seed, data_seed = _member_seeds(seed, 0)
    if first_member is None:
        if log is not None:
            log(f"{label}: fine-tuning from pretrained, {first_steps} steps at lr {lr}")
        model = transfer_model(_as_model(pretrained), ds.num_classes, head_seed=head_seed)
        set_trainable(model, "all")
        entry = _train_cycle(
            model, optimizer, ds, steps=first_steps, start_step=0, data_seed=data_seed, batch_size=batch_size,
            augment=augment, callbacks=callbacks, log=log, label=label, run_eagerly=run_eagerly,
        )
        entry.update(start_from="pretrained", head_seed=head_seed, data_seed=data_seed, reused=False)
    else:
        if log is not None:
            log(f"{label}: reusing the given fine-tuned first member")
        model = _snapshot(first_member)
        entry = {"status": "ok", "message": "", "wall_s": 0.0, "cpu_s": 0.0, "steps": 0, "planned_steps": first_steps,
                 "trainable_params": None, "final_loss": None, "start_from": "first_member", "reused": True}
    _add_member(model, entry, ds, eval_batch_size, members, probs, entries, log, label, bn_update_batch_size)
    first_weights = model.get_weights()

    for k in range(1, num_members):
        label = f"{method} member {k + 1}/{num_members}"
        start_from = "member 1" if star else f"member {k}"
        if entries[0 if star else k - 1]["status"] != "ok":
            entries.append(_failed(label, f"{label} not trained: its starting point ({start_from}) failed", start_from))
            if log is not None:
                log(f"  {entries[-1]['message']}")
            continue
        if star:
            model.set_weights(first_weights)
        trainable_params = set_trainable(model, trainable, last_k)
        reset_optimizer_state(optimizer)
        _, data_seed = _member_seeds(seed, k)
        if log is not None:
            log(f"{label}: cycle from {start_from}, {cycle_steps} steps from lr {fge_lr}, {trainable_params} trainable params")
        entry = _train_cycle(
            model, optimizer, ds, steps=cycle_steps, start_step=first_steps + (k - 1) * cycle_steps,
            data_seed=data_seed, batch_size=batch_size, augment=augment, callbacks=callbacks, log=log, label=label, run_eagerly=run_eagerly,
        )
        entry.update(start_from=start_from, data_seed=data_seed)
        _add_member(model, entry, ds, eval_batch_size, members, probs, entries, log, label, bn_update_batch_size)
    set_trainable(model, "all")
    settings = dict(
        epochs=epochs, lr=lr, fge_lr=fge_lr, fge_epochs=fge_epochs, trainable=trainable,
        last_k=last_k if trainable == "last_k_stages" else None, batch_size=batch_size, momentum=momentum,
        weight_decay=weight_decay, augment=augment, seed=seed, first_steps=first_steps, cycle_steps=cycle_steps,
        schedule=schedule.get_config(), bn_update=bn_update,
    )
    return _finish(method, entries, members, probs, ds, settings, log)


def sse(
    pretrained,
    ds,
    *,
    num_members,
    epochs,
    lr,
    fge_lr,
    fge_epochs,
    first_member=None,
    batch_size=256,
    momentum=0.9,
    weight_decay=5e-4,
    augment=False,
    seed=0,
    callbacks=(),
    log=None,
    eval_batch_size=512,
    run_eagerly=False,
    bn_update=False,
):
    """Snapshot ensemble in transfer learning: a chain of cosine cycles.

    Member 1 is fine-tuned from `pretrained` like a `local_de` member
    (`epochs` at `lr`). Member `k >= 2` continues from member `k - 1`: the
    optimizer state is zeroed and the rate restarts at `fge_lr`, decaying
    by cosine to 0 over `fge_epochs`. The whole run follows one
    `CosineRestarts(fge_lr, cycle, first_cycle_steps=first, first_peak_lr=lr)`.
    If member `k` diverges, the chain stops: later members are recorded as
    failed ("not trained").

    Args:
        pretrained: the checkpoint (`keras.Model` or callable).
        ds: a `supernet.data.Dataset` of the target task.
        num_members: int >= 1, the number of snapshots.
        epochs: float > 0, epochs of the first fine-tuning.
        lr: float > 0, peak rate of the first fine-tuning.
        fge_lr: float > 0, the restart rate of the later cycles (the paper
            sweeps `{0.25, 0.5, 1, 2, 4} x lr`).
        fge_epochs: float > 0, epochs per later cycle (the paper sweeps
            `{0.5, 1, 2, 4} x epochs`; fractions of an epoch are fine).
        first_member: optional already fine-tuned model (with the target
            head) to use as member 1 instead of training it, e.g. member 1
            of a `local_de`; its time is then recorded as 0 and
            `reused=True`.
        bn_update: as in `local_de`. The cycles continue from the trained
            model's own statistics, not from the recomputed ones (but a
            `first_member` is taken as given, recomputed or not).
        batch_size, momentum, weight_decay, augment, seed, callbacks, log,
        eval_batch_size, run_eagerly: as in `local_de`.

    Returns:
        `(members, record)`; see the module docstring.

    Reference:
        Sadrtdinov et al. 2023, Sec. 3 (SSE in transfer learning); Huang
        et al. 2017 (Snapshot Ensembles).
    """
    return _cyclic(
        "sse", pretrained, ds, star=False, num_members=num_members, epochs=epochs, lr=lr, fge_lr=fge_lr,
        fge_epochs=fge_epochs, trainable="all", last_k=1, first_member=first_member, batch_size=batch_size,
        momentum=momentum, weight_decay=weight_decay, augment=augment, seed=seed, callbacks=callbacks, log=log,
        eval_batch_size=eval_batch_size, run_eagerly=run_eagerly, bn_update=bn_update,
    )


def star_sse(
    pretrained,
    ds,
    *,
    num_members,
    epochs,
    lr,
    fge_lr,
    fge_epochs,
    trainable="all",
    last_k=1,
    first_member=None,
    batch_size=256,
    momentum=0.9,
    weight_decay=5e-4,
    augment=False,
    seed=0,
    callbacks=(),
    log=None,
    eval_batch_size=512,
    run_eagerly=False,
    bn_update=False,
):
    """StarSSE: every later member runs one cycle starting from member 1.

    Member 1 is fine-tuned as in `sse`. Every member `k >= 2` restarts
    from member 1's weights with a zeroed optimizer state and runs one
    cosine cycle from `fge_lr` over `fge_epochs`, so the members are
    spokes of a star around member 1 rather than a chain; a diverged spoke
    is dropped without affecting the others. The cycles are independent
    and could run in parallel; here they run one after another on one
    optimizer whose step counter keeps the `CosineRestarts` schedule.

    Parameter-efficient StarSSE: with `trainable="head"` the cycles train
    only the head, with `"last_k_stages"` the last `last_k` stages and the
    head (see `set_trainable`); the frozen layers, BatchNormalization
    statistics included, stay identical to member 1's (with `bn_update`
    every member's statistics are recomputed, the frozen layers' from the
    same weights and images as member 1's, so these still agree). The record's
    per-member `wall_s` and `trainable_params` show the saving; compare
    with a `trainable="all"` run for the time ratio.

    Args:
        trainable: `"all"`, `"head"` or `"last_k_stages"`, what the cycles
            after the first train (member 1 always trains everything).
        last_k: int >= 1, stages trained with `"last_k_stages"`.
        pretrained, ds, num_members, epochs, lr, fge_lr, fge_epochs,
        first_member, batch_size, momentum, weight_decay, augment, seed,
        callbacks, log, eval_batch_size, run_eagerly, bn_update: as in `sse`.

    Returns:
        `(members, record)`; see the module docstring.

    Example:
    >>> members, record = star_sse(source, ds, num_members=5, epochs=25, lr=0.005,
    ...                            fge_lr=0.01, fge_epochs=12.5)  # doctest: +SKIP

    Reference:
        Sadrtdinov et al. 2023, Sec. 4 (StarSSE); parameter-efficient
        variant as in the HSE 2024 slides ("StarSSE with PeFt").
    """
    return _cyclic(
        "star_sse", pretrained, ds, star=True, num_members=num_members, epochs=epochs, lr=lr, fge_lr=fge_lr,
        fge_epochs=fge_epochs, trainable=trainable, last_k=last_k, first_member=first_member,
        batch_size=batch_size, momentum=momentum, weight_decay=weight_decay, augment=augment, seed=seed,
        callbacks=callbacks, log=log, eval_batch_size=eval_batch_size, run_eagerly=run_eagerly, bn_update=bn_update,
    )
