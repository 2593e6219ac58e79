"""Cyclic learning-rate schedules for snapshot-style ensembles.

Each schedule comes twice: a pure numpy function of the step (vectorised,
for plots and tests) and a `keras.optimizers.schedules.LearningRateSchedule`
to pass to an optimizer. All of them are evaluated per iteration.

Steps are 0-based, as in Keras: the optimizer calls `schedule(iterations)`
where `iterations` counts the updates already applied, so `lr(s)` is the
learning rate of the `(s + 1)`-th update, and the weights seen in
`on_train_batch_end` right after that update are "the weights after step
`s`". A snapshot at step `s` is a copy of those weights.

Besides `__call__`, every class offers the cycle bookkeeping that
`supernet.callbacks.SnapshotEnsemble` needs, on python ints or numpy arrays:
`cycle_index(step)`, `is_cycle_start(step)`, `is_snapshot_step(step)` and
`snapshot_steps(total_steps)`.
"""

import math

import keras
import numpy as np
from keras import ops


# === Validation ===


def _check_int(name, value, minimum):
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(
            f"Argument `{name}` must be an integer >= {minimum}. "
            f"Received: {name}={value}"
        )


def _check_lr(name, value):
    if not value >= 0:  # also rejects NaN
        raise ValueError(
            f"Argument `{name}` must be >= 0. Received: {name}={value}"
        )


def _check_order(low_name, low, high_name, high):
    if low > high:
        raise ValueError(
            f"Argument `{low_name}` must be <= `{high_name}`. "
            f"Received: {low_name}={low}, {high_name}={high}"
        )


def _check_snapshot_cosine(initial_lr, total_steps, num_cycles):
    _check_lr("initial_lr", initial_lr)
    _check_int("total_steps", total_steps, 1)
    _check_int("num_cycles", num_cycles, 1)
    if num_cycles > total_steps:
        raise ValueError(
            "Argument `num_cycles` must be <= `total_steps`. "
            f"Received: num_cycles={num_cycles}, total_steps={total_steps}"
        )


def _check_fge(lr_max, lr_min, cycle_steps):
    _check_lr("lr_max", lr_max)
    _check_lr("lr_min", lr_min)
    _check_order("lr_min", lr_min, "lr_max", lr_max)
    # The minimum sits at `cycle_steps // 2 - 1`, so a cycle needs two steps.
    _check_int("cycle_steps", cycle_steps, 2)


def _check_restarts(peak_lr, cycle_steps, first_cycle_steps, first_peak_lr, min_lr):
    _check_lr("peak_lr", peak_lr)
    _check_int("cycle_steps", cycle_steps, 1)
    if first_cycle_steps is not None:
        _check_int("first_cycle_steps", first_cycle_steps, 1)
    if first_peak_lr is not None:
        _check_lr("first_peak_lr", first_peak_lr)
    _check_lr("min_lr", min_lr)
    _check_order("min_lr", min_lr, "peak_lr", peak_lr)
    if first_peak_lr is not None:
        _check_order("min_lr", min_lr, "first_peak_lr", first_peak_lr)


def _steps(step):
    step = np.asarray(step)
    if np.any(step < 0):
        raise ValueError(f"Argument `step` must be >= 0. Received: step={step}")
    return step


def _like(step, value):
    """Python scalar for scalar `step`, numpy array otherwise."""
    return value.item() if np.ndim(step) == 0 else value


def _ceil_div(a, b):
    return -(-int(a) // int(b))


# === Pure functions ===


def snapshot_cosine_lr(step, initial_lr, total_steps, num_cycles):
    """Learning rate of the Snapshot Ensembles cosine-annealing schedule.

    `lr(t) = initial_lr / 2 * (cos(pi * mod(t, C) / C) + 1)` with cycle length
    `C = ceil(total_steps / num_cycles)` and 0-based step `t`: each cycle
    starts at `initial_lr` and ends one step short of 0.

    Args:
        step: int or integer array, 0-based step(s).
        initial_lr: float >= 0, the learning rate at each cycle start.
        total_steps: int > 0, the training budget `T` in steps.
        num_cycles: int in `[1, total_steps]`, the number of cycles `M`.

    Returns:
        float or float64 array shaped like `step`.

    Reference:
        Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free",
        Eq. (2).
    """
    _check_snapshot_cosine(initial_lr, total_steps, num_cycles)
    step = _steps(step)
    cycle = _ceil_div(total_steps, num_cycles)
    lr = initial_lr / 2 * (np.cos(np.pi * np.mod(step, cycle) / cycle) + 1)
    return _like(step, lr)


def fge_lr(step, lr_max, lr_min, cycle_steps):
    """Learning rate of the Fast Geometric Ensembling triangular cycle.

    The paper numbers iterations from 1 and sets
    `t(i) = (mod(i - 1, c) + 1) / c` and
    `lr = (1 - 2t) a1 + 2t a2` for `t <= 1/2`, `(2 - 2t) a2 + (2t - 1) a1`
    otherwise. With Keras's 0-based step `s = i - 1` this is
    `t(s) = (mod(s, c) + 1) / c`: the first step of a cycle already uses a
    rate slightly below `a1`, the minimum `a2` is used by step
    `mod(s, c) = c/2 - 1` (the member is collected right after it) and the
    last step of a cycle uses exactly `a1`. For odd `c` the minimum
    `a2 + (a1 - a2) / c` is reached at `c // 2 - 1` and `c // 2`.

    Args:
        step: int or integer array, 0-based step(s) since the cycles began.
        lr_max: float >= 0, `a1`.
        lr_min: float in `[0, lr_max]`, `a2`.
        cycle_steps: int >= 2, the cycle length `c` in steps.

    Returns:
        float or float64 array shaped like `step`.

    Reference:
        Garipov et al. 2018, "Loss Surfaces, Mode Connectivity, and Fast
        Ensembling of DNNs", Sec. 4, Eq. (2).
    """
    _check_fge(lr_max, lr_min, cycle_steps)
    step = _steps(step)
    t = (np.mod(step, cycle_steps) + 1) / cycle_steps
    lr = np.where(
        t <= 0.5,
        (1 - 2 * t) * lr_max + 2 * t * lr_min,
        (2 - 2 * t) * lr_min + (2 * t - 1) * lr_max,
    )
    return _like(step, lr)


def restart_cosine_lr(step, peak_lr, cycle_steps, first_cycle_steps=None, first_peak_lr=None, min_lr=0.0):
    """Learning rate of cosine annealing with warm restarts (SSE / StarSSE).

    The first cycle (the initial training or fine-tuning) lasts
    `first_cycle_steps` and starts at `first_peak_lr`; every later cycle lasts
    `cycle_steps` and restarts at `peak_lr`. Within a cycle of length `L`
    started at peak `P`, local step `u` gets
    `min_lr + (P - min_lr) / 2 * (1 + cos(pi * u / L))`.

    Args:
        step: int or integer array, 0-based step(s).
        peak_lr: float >= 0, the restart learning rate of cycles 1, 2, ...
        cycle_steps: int > 0, the length of cycles 1, 2, ...
        first_cycle_steps: int > 0, the length of cycle 0. Defaults to
            `cycle_steps`.
        first_peak_lr: float >= 0, the starting learning rate of cycle 0.
            Defaults to `peak_lr`.
        min_lr: float >= 0, the floor every cycle anneals towards.

    Returns:
        float or float64 array shaped like `step`.

    Reference:
        Sadrtdinov et al. 2023, "To Stay or Not to Stay in the Pre-train
        Basin", Sec. 3 (SSE and StarSSE cyclic schedules); Loshchilov &
        Hutter 2017 (SGDR).
    """
    _check_restarts(peak_lr, cycle_steps, first_cycle_steps, first_peak_lr, min_lr)
    step = _steps(step)
    first_steps = cycle_steps if first_cycle_steps is None else first_cycle_steps
    first_peak = peak_lr if first_peak_lr is None else first_peak_lr
    in_first = step < first_steps
    local = np.where(in_first, step, np.mod(step - first_steps, cycle_steps))
    length = np.where(in_first, first_steps, cycle_steps)
    peak = np.where(in_first, first_peak, peak_lr)
    lr = min_lr + (peak - min_lr) / 2 * (1 + np.cos(np.pi * local / length))
    return _like(step, lr)


# === LearningRateSchedule classes ===


def _float(value):
    return ops.convert_to_tensor(value, dtype=keras.config.floatx())


def _cosine(peak, floor, local, length):
    return floor + (peak - floor) / 2 * (1 + ops.cos(math.pi * local / length))


@keras.saving.register_keras_serializable(package="supernet")
class SnapshotCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing restarted `num_cycles` times over a fixed budget.

    The Snapshot Ensembles schedule: the budget of `total_steps` iterations
    is split into cycles of `C = ceil(total_steps / num_cycles)` steps; each
    cycle anneals from `initial_lr` towards 0 by a half cosine and a
    snapshot is taken at its last step, where the rate is lowest. Past
    `total_steps` the cycles simply continue.

    When `C` does not divide `total_steps` the last cycle is cut short and
    its snapshot is taken at step `total_steps - 1`, which is then not a
    learning-rate minimum; if `(num_cycles - 1) * C >= total_steps` fewer
    than `num_cycles` cycles fit (e.g. `total_steps=5, num_cycles=4`).
    Choose `total_steps` divisible by `num_cycles` to avoid both.

    Args:
        initial_lr: float >= 0, `a0`, the rate at each cycle start.
        total_steps: int > 0, the training budget `T` in steps (optimizer
            updates: epochs * steps_per_epoch, not epochs).
            `SnapshotEnsemble` warns when a `fit()` runs an epoch past it.
        num_cycles: int in `[1, total_steps]`, the number of snapshots `M`.
        name: name scope of the ops.

    Example:
    >>> schedule = SnapshotCosine(0.1, total_steps=12, num_cycles=3)
    >>> schedule.snapshot_steps()
    [3, 7, 11]
    >>> optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)

    Reference:
        Huang et al. 2017, "Snapshot Ensembles: Train 1, get M for free",
        Eq. (2).
    """

    def __init__(self, initial_lr, total_steps, num_cycles, name="SnapshotCosine"):
        super().__init__()
        _check_snapshot_cosine(initial_lr, total_steps, num_cycles)
        self.initial_lr = initial_lr
        self.total_steps = total_steps
        self.num_cycles = num_cycles
        self.name = name

    @property
    def cycle_steps(self):
        """The cycle length `ceil(total_steps / num_cycles)`."""
        return _ceil_div(self.total_steps, self.num_cycles)

    def __call__(self, step):
        with keras.name_scope(self.name):
            initial_lr = _float(self.initial_lr)
            step = ops.cast(step, initial_lr.dtype)
            cycle = ops.cast(self.cycle_steps, initial_lr.dtype)
            return _cosine(initial_lr, 0.0, ops.mod(step, cycle), cycle)

    def cycle_index(self, step):
        step = _steps(step)
        return _like(step, step // self.cycle_steps)

    def is_cycle_start(self, step):
        step = _steps(step)
        return _like(step, step % self.cycle_steps == 0)

    def is_snapshot_step(self, step):
        step = _steps(step)
        last = (step % self.cycle_steps == self.cycle_steps - 1) | (step == self.total_steps - 1)
        return _like(step, last)

    def snapshot_steps(self, total_steps=None):
        """0-based steps after which a snapshot is taken, below `total_steps`.

        Defaults to the schedule's own budget: `k * C - 1` for
        `k = 1, 2, ...`, capped at `total_steps - 1`.
        """
        total_steps = self.total_steps if total_steps is None else total_steps
        return _snapshot_steps(self, total_steps)

    def get_config(self):
        return {
            "initial_lr": self.initial_lr,
            "total_steps": self.total_steps,
            "num_cycles": self.num_cycles,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="supernet")
class FGECyclic(keras.optimizers.schedules.LearningRateSchedule):
    """The triangular cycle of Fast Geometric Ensembling.

    Over each cycle of `cycle_steps` iterations the rate falls linearly
    from `lr_max` to `lr_min` during the first half and climbs back during
    the second; the ensemble member is collected at the minimum, mid-cycle.
    See `fge_lr` for how the paper's 1-based iteration maps onto Keras's
    0-based step: with `s' = s - start_step`, step `s` is a snapshot step
    when `mod(s', c) == c // 2 - 1`, its rate is `lr_min` (for even `c`), and
    the last step of each cycle uses exactly `lr_max`.

    FGE starts from a pre-trained network. Train it first with any schedule,
    then either compile a fresh optimizer with this schedule
    (`start_step=0`) or swap it into the running one
    (`optimizer.learning_rate = FGECyclic(..., start_step=int(optimizer.iterations))`).
    Steps before `start_step` get a constant `lr_max` and belong to no cycle
    (`cycle_index` is -1).

    Args:
        lr_max: float >= 0, `a1`, the rate at the cycle boundaries.
        lr_min: float in `[0, lr_max]`, `a2`, the rate at mid-cycle.
        cycle_steps: int >= 2, the cycle length `c` in steps (the paper uses
            2 to 4 epochs; prefer an even number of steps).
        start_step: int >= 0, the optimizer step at which the first cycle
            begins.
        name: name scope of the ops.

    Example:
    >>> schedule = FGECyclic(0.05, 0.0005, cycle_steps=8)
    >>> schedule.snapshot_steps(24)
    [3, 11, 19]

    Reference:
        Garipov et al. 2018, "Loss Surfaces, Mode Connectivity, and Fast
        Ensembling of DNNs", Sec. 4, Eq. (2).
    """

    def __init__(self, lr_max, lr_min, cycle_steps, start_step=0, name="FGECyclic"):
        super().__init__()
        _check_fge(lr_max, lr_min, cycle_steps)
        _check_int("start_step", start_step, 0)
        self.lr_max = lr_max
        self.lr_min = lr_min
        self.cycle_steps = cycle_steps
        self.start_step = start_step
        self.name = name

    def __call__(self, step):
        with keras.name_scope(self.name):
            lr_max = _float(self.lr_max)
            dtype = lr_max.dtype
            lr_min = ops.cast(self.lr_min, dtype)
            step = ops.cast(step, dtype) - ops.cast(self.start_step, dtype)
            cycle = ops.cast(self.cycle_steps, dtype)
            t = (ops.mod(step, cycle) + 1.0) / cycle
            down = (1.0 - 2.0 * t) * lr_max + 2.0 * t * lr_min
            up = (2.0 - 2.0 * t) * lr_min + (2.0 * t - 1.0) * lr_max
            lr = ops.where(t <= 0.5, down, up)
            return ops.where(step < 0, lr_max, lr)

    def _local(self, step):
        return _steps(step) - self.start_step

    def cycle_index(self, step):
        local = self._local(step)
        return _like(local, np.where(local < 0, -1, local // self.cycle_steps))

    def is_cycle_start(self, step):
        local = self._local(step)
        return _like(local, (local >= 0) & (local % self.cycle_steps == 0))

    def is_snapshot_step(self, step):
        local = self._local(step)
        middle = self.cycle_steps // 2 - 1
        return _like(local, (local >= 0) & (local % self.cycle_steps == middle))

    def snapshot_steps(self, total_steps):
        """0-based steps below `total_steps` after which a member is taken."""
        return _snapshot_steps(self, total_steps)

    def get_config(self):
        return {
            "lr_max": self.lr_max,
            "lr_min": self.lr_min,
            "cycle_steps": self.cycle_steps,
            "start_step": self.start_step,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="supernet")
class CosineRestarts(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine annealing with warm restarts and a distinct first cycle.

    The schedule of Snapshot Ensembles fine-tuned from a pre-trained model
    (SSE) and of each StarSSE branch: a first cycle of `first_cycle_steps`
    starting at `first_peak_lr` (e.g. the initial training, 25 epochs from
    lr 0.005), then cycles of `cycle_steps` each restarting at `peak_lr` (the
    "fge_lr" of the paper, over "fge_epochs"), all annealing by a half cosine
    towards `min_lr`. A snapshot is taken at the last step of every cycle,
    the first one included; drop `snapshots[0]` if the pre-trained model is
    not a member.

    Args:
        peak_lr: float >= 0, the restart rate of cycles 1, 2, ...
        cycle_steps: int > 0, the length of cycles 1, 2, ...
        first_cycle_steps: int > 0, the length of cycle 0. Defaults to
            `cycle_steps`.
        first_peak_lr: float >= 0, the starting rate of cycle 0. Defaults to
            `peak_lr`.
        min_lr: float in `[0, peak_lr]`, the floor of every cycle.
        name: name scope of the ops.

    Example:
    >>> schedule = CosineRestarts(0.05, cycle_steps=4, first_cycle_steps=10, first_peak_lr=0.005)
    >>> schedule.snapshot_steps(20)
    [9, 13, 17]

    Reference:
        Sadrtdinov et al. 2023, "To Stay or Not to Stay in the Pre-train
        Basin: Insights on Ensembling in Transfer Learning", Sec. 3;
        Loshchilov & Hutter 2017 (SGDR).
    """

    def __init__(self, peak_lr, cycle_steps, first_cycle_steps=None, first_peak_lr=None, min_lr=0.0, name="CosineRestarts"):
        super().__init__()
        _check_restarts(peak_lr, cycle_steps, first_cycle_steps, first_peak_lr, min_lr)
        self.peak_lr = peak_lr
        self.cycle_steps = cycle_steps
        self.first_cycle_steps = first_cycle_steps
        self.first_peak_lr = first_peak_lr
        self.min_lr = min_lr
        self.name = name

    @property
    def _first_steps(self):
        return self.cycle_steps if self.first_cycle_steps is None else self.first_cycle_steps

    @property
    def _first_peak(self):
        return self.peak_lr if self.first_peak_lr is None else self.first_peak_lr

    def __call__(self, step):
        with keras.name_scope(self.name):
            peak = _float(self.peak_lr)
            dtype = peak.dtype
            first_peak = ops.cast(self._first_peak, dtype)
            min_lr = ops.cast(self.min_lr, dtype)
            step = ops.cast(step, dtype)
            first = ops.cast(self._first_steps, dtype)
            cycle = ops.cast(self.cycle_steps, dtype)
            later = _cosine(peak, min_lr, ops.mod(step - first, cycle), cycle)
            return ops.where(step < first, _cosine(first_peak, min_lr, step, first), later)

    def _local(self, step):
        """Step within the current cycle and that cycle's index."""
        step = _steps(step)
        after = step - self._first_steps
        in_first = after < 0
        local = np.where(in_first, step, after % self.cycle_steps)
        index = np.where(in_first, 0, 1 + after // self.cycle_steps)
        length = np.where(in_first, self._first_steps, self.cycle_steps)
        return step, local, index, length

    def cycle_index(self, step):
        step, _, index, _ = self._local(step)
        return _like(step, index)

    def is_cycle_start(self, step):
        step, local, _, _ = self._local(step)
        return _like(step, local == 0)

    def is_snapshot_step(self, step):
        step, local, _, length = self._local(step)
        return _like(step, local == length - 1)

    def snapshot_steps(self, total_steps):
        """0-based steps below `total_steps` after which a snapshot is taken."""
        return _snapshot_steps(self, total_steps)

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "cycle_steps": self.cycle_steps,
            "first_cycle_steps": self.first_cycle_steps,
            "first_peak_lr": self.first_peak_lr,
            "min_lr": self.min_lr,
            "name": self.name,
        }


def _snapshot_steps(schedule, total_steps):
    _check_int("total_steps", total_steps, 0)
    steps = np.arange(int(total_steps))
    return [int(s) for s in np.flatnonzero(schedule.is_snapshot_step(steps))]
