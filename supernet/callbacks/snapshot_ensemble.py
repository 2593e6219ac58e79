"""Collect ensemble members from one training run at learning-rate minima."""

import os
import random
import warnings

import keras
import numpy as np

from supernet._validation import check_finite, check_int
from supernet.batchnorm import batchnorm_layers, recompute_batchnorm_statistics


def _global_step(optimizer):
    """Number of optimizer updates applied so far (the schedule's `step`)."""
    return int(keras.ops.convert_to_numpy(optimizer.iterations))


def _runs_past_budget(total_steps, start_step, epochs, steps_per_epoch):
    """Whether a `fit()` runs a whole epoch or more past a schedule's budget.

    Rounding the number of epochs up to cover the budget is fine: the fit
    then ends less than an epoch after `total_steps`. Anything longer means
    the budget and the fit disagree, typically `total_steps` given in epochs.

    Args:
        total_steps: the schedule's budget, in global (optimizer) steps.
        start_step: the global step at which the fit starts.
        epochs: the number of epochs the fit runs.
        steps_per_epoch: the number of steps of one epoch.

    Returns:
        `True` if `epochs` exceeds the epochs needed to reach `total_steps`
        from `start_step`.

    Example:
    >>> _runs_past_budget(20, 0, epochs=20, steps_per_epoch=3)
    True
    >>> _runs_past_budget(20, 0, epochs=7, steps_per_epoch=3)  # 21 steps
    False
    """
    remaining = max(int(total_steps) - int(start_step), 0)
    return epochs > -(-remaining // int(steps_per_epoch))


def reset_optimizer_state(optimizer):
    """Zeroes an optimizer's slots (momenta, moments), keeping its step count.

    Every variable of `optimizer.variables` is set to zero except the
    iteration counter and a learning-rate variable, so learning-rate
    schedules continue where they were. Adam's bias correction also reads
    the iteration counter and is therefore not restarted. A
    `keras.optimizers.LossScaleOptimizer` has its inner optimizer reset and
    keeps its loss scale.

    Args:
        optimizer: a built `keras.optimizers.Optimizer`.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    if getattr(optimizer, "use_ema", False):
        raise ValueError(
            "Resetting the state of an optimizer with `use_ema=True` would zero "
            "its moving averages of the weights. Received: use_ema=True"
        )
    keep = {id(optimizer.iterations), id(optimizer.learning_rate)}
    for variable in optimizer.variables:
        # With gradient accumulation `iterations` is a tensor computed from
        # the "iteration" variable, so names catch what identity misses.
        if id(variable) in keep or variable.name in ("iteration", "learning_rate"):
            continue
        variable.assign(keras.ops.zeros(variable.shape, variable.dtype))


@keras.saving.register_keras_serializable(package="supernet")
class SnapshotEnsemble(keras.callbacks.Callback):
    """Takes snapshots of the model at the minima of a cyclic schedule.

    Snapshot Ensembles, FGE and SSE train one network with a cyclic learning
    rate and keep a copy of the weights at the end of every cycle (or, for
    FGE, at mid-cycle), where the rate is lowest. This callback keeps those
    copies at batch granularity: after every training step it reads the
    global step from `model.optimizer.iterations`, so the snapshots stay
    aligned with the schedule across several `fit()` calls and whatever the
    number of steps per epoch.

    The step `s` reported is 0-based: a snapshot at step `s` holds the
    weights right after the update that used `schedule(s)`.

    Snapshots already taken survive later `fit()` calls on the same model;
    they are dropped in `on_train_begin` when the model changes or when they
    lie at or after the optimizer's current step (a fresh optimizer, or a
    rewound one), so reusing the callback for a new run starts clean.

    Args:
        schedule: a schedule from `supernet.schedules` (`SnapshotCosine`,
            `FGECyclic`, `CosineRestarts`) or any object with
            `is_snapshot_step(step)` and `is_cycle_start(step)` methods.
            Usually the one passed to the optimizer.
        snapshot_steps: explicit 0-based global steps after which to take a
            snapshot, instead of `schedule`. Cycles are then taken to start
            right after each snapshot.
        directory: `None` keeps `model.get_weights()` copies in memory;
            otherwise each snapshot is written to
            `directory/snapshot_{k}.keras` with `model.save`.
        reset_optimizer: if `True`, zero the optimizer's slot variables
            (momentum, Adam moments; not `iterations`) at every cycle start
            after the first, so each cycle starts like a fresh optimizer.
        verbose: 0 or 1; 1 prints a line per snapshot.
        max_snapshots: `None` runs the fit to its end; an int stops it
            (`model.stop_training = True`) after the training step at which
            the callback holds that many snapshots, counting those kept from
            earlier `fit()` calls. Give the fit epochs enough to reach them.
        bn_data: `None` keeps each snapshot's BatchNormalization moving
            statistics as they were at its step. An array `(n, ...)` of
            training inputs: every snapshot's statistics are recomputed on
            it (`supernet.batchnorm.recompute_batchnorm_statistics`: the
            exact mean and population variance of each layer's inputs over
            `bn_data`, computed as in training). The recomputation runs on
            a copy of the model, so the model being trained keeps its own
            moving statistics and trains exactly as without `bn_data`; only
            the stored snapshots (weights, files, `models()`) carry the
            recomputed statistics. A model without BatchNormalization is
            snapshotted as without `bn_data`, at no extra cost. Not
            serialized: `get_config()` raises while it is set.
        bn_batch_size: int >= 1, batch size of the recomputation (the
            upstream layers normalise by batch statistics, as in training,
            so use the training batch size).

    Moving statistics are an exponential average over roughly the last
    `1 / (1 - momentum)` steps (100 at Keras's default 0.99), during which
    the weights kept moving, so they lag behind a snapshot's weights.
    `bn_data` gives each snapshot the statistics of its own weights, as SWA
    does for its weight average (Izmailov et al. 2018, `bn_update`). The
    FGE reference code (Garipov et al. 2018, `fge.py` of
    `dnn-mode-connectivity`) evaluates its snapshots with their running
    statistics and recomputes them only for points on connecting curves
    (`update_bn`), hence the default `None`.

    A schedule with a budget, `total_steps` (`SnapshotCosine`), plans its
    snapshots over that many steps; past it the cycles restart and take
    extra snapshots. When a `fit()` would run a whole epoch or more past
    `total_steps` (counting from the optimizer's current step and the fit's
    `initial_epoch`), the callback warns once at the start of the fit: the
    usual cause is `total_steps` given in epochs instead of steps.

    Attributes:
        snapshots: list of weight lists (in memory) or of file paths.
        snapshot_steps_taken: list of the 0-based global steps of the
            snapshots.

    The callback expects `steps_per_execution=1` (the default): with more
    steps per call a planned step may fall inside a call; the snapshot is then
    taken at the end of that call and a warning names both steps.

    Example:
    >>> x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    >>> y = (x[:, 0] > 0).astype("int32")
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    >>> from supernet.schedules import SnapshotCosine
    >>> schedule = SnapshotCosine(0.1, total_steps=8 * 4, num_cycles=4)  # 8 epochs of 4 steps
    >>> model.compile(keras.optimizers.SGD(schedule, momentum=0.9), "sparse_categorical_crossentropy")
    >>> snapshots = SnapshotEnsemble(schedule)
    >>> _ = model.fit(x, y, batch_size=8, epochs=8, callbacks=[snapshots], verbose=0)
    >>> snapshots.snapshot_steps_taken
    [7, 15, 23, 31]
    >>> len(snapshots.models())
    4

    Reference:
        Huang et al. 2017 (Snapshot Ensembles); Garipov et al. 2018 (FGE);
        Sadrtdinov et al. 2023 (SSE / StarSSE).
    """

    def __init__(
        self,
        schedule=None,
        snapshot_steps=None,
        directory=None,
        reset_optimizer=False,
        verbose=0,
        max_snapshots=None,
        bn_data=None,
        bn_batch_size=256,
    ):
        super().__init__()
        if (schedule is None) == (snapshot_steps is None):
            raise ValueError(
                "Exactly one of `schedule` and `snapshot_steps` must be given. "
                f"Received: schedule={schedule}, snapshot_steps={snapshot_steps}"
            )
        if schedule is not None and not (
            hasattr(schedule, "is_snapshot_step") and hasattr(schedule, "is_cycle_start")
        ):
            raise ValueError(
                "Argument `schedule` must provide `is_snapshot_step(step)` and "
                f"`is_cycle_start(step)`. Received: schedule={schedule}"
            )
        if snapshot_steps is not None:
            snapshot_steps = sorted({int(s) for s in snapshot_steps})
            if not snapshot_steps or snapshot_steps[0] < 0:
                raise ValueError(
                    "Argument `snapshot_steps` must be a non-empty list of steps >= 0. "
                    f"Received: snapshot_steps={snapshot_steps}"
                )
        if max_snapshots is not None:
            max_snapshots = check_int("max_snapshots", max_snapshots, 1)
        if bn_data is not None:
            bn_data = check_finite("bn_data", bn_data)
            if bn_data.ndim == 0 or len(bn_data) == 0:
                raise ValueError(
                    "Argument `bn_data` must be None or an array (n, ...) of at least one training input. "
                    f"Received: bn_data with shape={bn_data.shape}"
                )
        bn_batch_size = check_int("bn_batch_size", bn_batch_size, 1)
        self.schedule = schedule
        self.snapshot_steps = snapshot_steps
        self.directory = directory
        self.reset_optimizer = reset_optimizer
        self.verbose = verbose
        self.max_snapshots = max_snapshots
        self.bn_data = bn_data
        self.bn_batch_size = bn_batch_size
        self.snapshots = []
        self.snapshot_steps_taken = []
        self._trained_model = None
        self._bn_copy = None

    # === Cycle bookkeeping ===

    def _is_snapshot_step(self, steps):
        steps = np.asarray(steps)
        if self.schedule is not None:
            return np.asarray(self.schedule.is_snapshot_step(steps), bool)
        return np.isin(steps, self.snapshot_steps)

    def _is_cycle_start(self, step):
        if self.schedule is not None:
            return bool(self.schedule.is_cycle_start(step))
        return step - 1 in self.snapshot_steps

    # === Callback hooks ===

    def on_train_begin(self, logs=None):
        step = _global_step(self.model.optimizer)
        if self._trained_model is not self.model:
            self.snapshots, self.snapshot_steps_taken = [], []
            self._bn_copy = None
        kept = [i for i, s in enumerate(self.snapshot_steps_taken) if s < step]
        self.snapshots = [self.snapshots[i] for i in kept]
        self.snapshot_steps_taken = [self.snapshot_steps_taken[i] for i in kept]
        self._trained_model = self.model
        self._last_step = step - 1
        self._fit_start_step = step
        self._budget_checked = False
        self._recompute_bn = self.bn_data is not None and bool(batchnorm_layers(self.model))
        if self.reset_optimizer and getattr(self.model.optimizer, "use_ema", False):
            raise ValueError(
                "`reset_optimizer=True` does not support optimizers with "
                "`use_ema=True`. Received: use_ema=True"
            )
        if self.directory is not None:
            os.makedirs(self.directory, exist_ok=True)

    def on_epoch_begin(self, epoch, logs=None):
        # The first epoch of a fit is its `initial_epoch`, which
        # `on_train_begin` cannot see.
        if not self._budget_checked:
            self._budget_checked = True
            self._warn_if_past_budget(initial_epoch=epoch)

    def _warn_if_past_budget(self, initial_epoch):
        total_steps = getattr(self.schedule, "total_steps", None)
        params = self.params or {}
        steps = params.get("steps")
        if total_steps is None or not steps or params.get("epochs") is None:
            return  # no budget, or a dataset of unknown length
        epochs = params["epochs"] - initial_epoch
        start = self._fit_start_step
        if not _runs_past_budget(total_steps, start, epochs, steps):
            return
        end = start + epochs * steps
        fit_steps = np.arange(start, end)
        planned = fit_steps[self._is_snapshot_step(fit_steps)]
        extra = int(np.sum(planned >= total_steps))
        origin = f" from step {start}" if start else ""
        warnings.warn(
            f"SnapshotEnsemble: the schedule's `total_steps={total_steps}` is "
            f"smaller than the {end} steps training will have run at the end "
            f"of this `fit()` ({epochs} epochs of {steps} steps{origin}). "
            "Past `total_steps` the cycles restart: this fit will take "
            f"{planned.size} snapshots, {extra} of them after `total_steps`. "
            "Was `total_steps` given in epochs instead of steps? It should "
            f"be epochs * steps_per_epoch (here {params['epochs'] * steps})."
        )

    def on_train_batch_begin(self, batch, logs=None):
        if not self.reset_optimizer:
            return
        step = _global_step(self.model.optimizer)
        if step > 0 and self._is_cycle_start(step):
            reset_optimizer_state(self.model.optimizer)
            if self.verbose:
                print(f"\nStep {step}: SnapshotEnsemble reset the optimizer state.")

    def on_train_batch_end(self, batch, logs=None):
        step = _global_step(self.model.optimizer) - 1
        passed = np.arange(self._last_step + 1, step + 1)
        self._last_step = step
        planned = passed[self._is_snapshot_step(passed)]
        if planned.size:
            if planned[-1] != step:
                warnings.warn(
                    f"SnapshotEnsemble planned a snapshot after step {int(planned[-1])} "
                    f"but the callback only ran after step {step} (is "
                    "`steps_per_execution` > 1?); the snapshot holds the later weights."
                )
            self._take_snapshot(step)
        if self.max_snapshots is not None and len(self.snapshots) >= self.max_snapshots:
            self.model.stop_training = True

    def _fresh_batchnorm_weights(self):
        """The model's weights with BatchNormalization statistics recomputed on `bn_data`.

        The recomputation runs forward passes in training mode, which would
        move the trained model's statistics and draw from its dropout seeds,
        so it runs on a copy kept for the whole run.
        """
        if self._bn_copy is None:
            # Cloning draws seeds for the copy's initializers and dropout
            # from Python's `random`, which also orders the batches of a
            # shuffled `PyDataset`: its state is put back so the fit runs on
            # as without `bn_data`.
            state = random.getstate()
            try:
                self._bn_copy = keras.models.clone_model(self.model)
            finally:
                random.setstate(state)
        self._bn_copy.set_weights(self.model.get_weights())
        recompute_batchnorm_statistics(self._bn_copy, self.bn_data, self.bn_batch_size)
        return self._bn_copy.get_weights()

    def _take_snapshot(self, step):
        k = len(self.snapshots)
        fresh = self._fresh_batchnorm_weights() if self._recompute_bn else None
        if self.directory is None:
            weights = self.model.get_weights() if fresh is None else fresh
            snapshot = [np.array(w, copy=True) for w in weights]
        else:
            snapshot = os.path.join(self.directory, f"snapshot_{k}.keras")
            if fresh is None:
                self.model.save(snapshot)
            else:
                # The file keeps the model's compile config and optimizer
                # state, so the trained model is saved with the recomputed
                # statistics swapped in, and its own put back.
                live = self.model.get_weights()
                self.model.set_weights(fresh)
                try:
                    self.model.save(snapshot)
                finally:
                    self.model.set_weights(live)
        self.snapshots.append(snapshot)
        self.snapshot_steps_taken.append(step)
        if self.verbose:
            print(f"\nStep {step}: SnapshotEnsemble took snapshot {k}.")

    # === Members ===

    def models(self):
        """The snapshots as Keras models, in the order they were taken.

        In memory, each is a `keras.models.clone_model` of the trained model
        holding the snapshot's weights. `clone_model` compiles the clone from
        the trained model's `get_compile_config()`: same loss, metrics and
        compile options, and a new optimizer of the same config whose state
        (step count, momenta) starts from zero. With a `directory`, each is
        loaded with `keras.saving.load_model`, compiled as saved, with the
        optimizer state at the snapshot's step. With `bn_data`, each holds
        its snapshot's recomputed BatchNormalization statistics.

        Returns:
            list of compiled `keras.Model`, ready for `evaluate()` and
            `predict()`.
        """
        if self.directory is not None:
            return [keras.saving.load_model(path) for path in self.snapshots]
        members = []
        for weights in self.snapshots:
            member = keras.models.clone_model(self._trained_model)
            member.set_weights(weights)
            members.append(member)
        return members

    def get_config(self):
        if self.bn_data is not None:
            raise ValueError(
                "A SnapshotEnsemble with `bn_data` cannot be serialized: the array does not fit in a config, and "
                "a config without it would rebuild a callback that keeps the lagging moving statistics. Pass "
                f"`bn_data` to the constructor instead. Received: bn_data with shape={self.bn_data.shape}"
            )
        config = {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "snapshot_steps": self.snapshot_steps,
            "directory": self.directory,
            "reset_optimizer": self.reset_optimizer,
            "verbose": self.verbose,
        }
        # Written only when given, so the configs of callbacks that do not
        # use it read as they did before the argument existed.
        if self.max_snapshots is not None:
            config["max_snapshots"] = self.max_snapshots
        if self.bn_batch_size != 256:
            config["bn_batch_size"] = self.bn_batch_size
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)
