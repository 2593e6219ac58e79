"""Cyclic learning-rate schedules against closed forms written out by hand."""

import math

import keras
import numpy as np
import pytest
from test_case import assert_config_round_trip, seeded_data

from supernet import schedules

HORIZON = 41


# Independent closed forms, plain python, 0-based Keras step `s`.


def snapshot_cosine_closed(s, a0, total, cycles):
    length = math.ceil(total / cycles)
    return a0 / 2 * (math.cos(math.pi * (s % length) / length) + 1)


def fge_closed(s, a1, a2, c, start=0):
    if s < start:
        return a1
    i = s - start + 1  # the paper's 1-based iteration
    t = ((i - 1) % c + 1) / c
    if t <= 0.5:
        return (1 - 2 * t) * a1 + 2 * t * a2
    return (2 - 2 * t) * a2 + (2 * t - 1) * a1


def restarts_closed(s, peak, cycle, first_cycle, first_peak, floor):
    if s < first_cycle:
        local, length, top = s, first_cycle, first_peak
    else:
        local, length, top = (s - first_cycle) % cycle, cycle, peak
    return floor + (top - floor) / 2 * (1 + math.cos(math.pi * local / length))


CASES = {
    "snapshot_even": (
        schedules.SnapshotCosine(0.1, total_steps=24, num_cycles=3),
        lambda s: schedules.snapshot_cosine_lr(s, 0.1, 24, 3),
        lambda s: snapshot_cosine_closed(s, 0.1, 24, 3),
    ),
    "snapshot_ragged": (
        schedules.SnapshotCosine(0.2, total_steps=10, num_cycles=3),
        lambda s: schedules.snapshot_cosine_lr(s, 0.2, 10, 3),
        lambda s: snapshot_cosine_closed(s, 0.2, 10, 3),
    ),
    "fge_even": (
        schedules.FGECyclic(0.05, 0.005, cycle_steps=8),
        lambda s: schedules.fge_lr(s, 0.05, 0.005, 8),
        lambda s: fge_closed(s, 0.05, 0.005, 8),
    ),
    "fge_odd_started": (
        schedules.FGECyclic(0.05, 0.001, cycle_steps=5, start_step=6),
        None,
        lambda s: fge_closed(s, 0.05, 0.001, 5, start=6),
    ),
    "restarts": (
        schedules.CosineRestarts(0.05, cycle_steps=8, first_cycle_steps=12, first_peak_lr=0.1, min_lr=0.001),
        lambda s: schedules.restart_cosine_lr(s, 0.05, 8, 12, 0.1, 0.001),
        lambda s: restarts_closed(s, 0.05, 8, 12, 0.1, 0.001),
    ),
    "restarts_default_first": (
        schedules.CosineRestarts(0.05, cycle_steps=6),
        lambda s: schedules.restart_cosine_lr(s, 0.05, 6),
        lambda s: restarts_closed(s, 0.05, 6, 6, 0.05, 0.0),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_schedule_equals_closed_form_at_every_step(case):
    schedule, pure, closed = CASES[case]
    expected = np.array([closed(s) for s in range(HORIZON)])
    keras_values = np.array([float(schedule(s)) for s in range(HORIZON)])
    np.testing.assert_allclose(keras_values, expected, rtol=1e-5, atol=1e-7)
    if pure is not None:
        np.testing.assert_allclose(pure(np.arange(HORIZON)), expected, rtol=1e-12)
        assert pure(3) == pytest.approx(expected[3], rel=1e-12)


@pytest.mark.parametrize(
    "schedule, total, expected",
    [
        (schedules.SnapshotCosine(0.1, 24, 3), None, [7, 15, 23]),
        (schedules.SnapshotCosine(0.1, 10, 3), None, [3, 7, 9]),  # last cycle cut short
        (schedules.SnapshotCosine(0.1, 5, 4), None, [1, 3, 4]),  # only 3 cycles fit
        (schedules.FGECyclic(0.05, 0.005, 8), 24, [3, 11, 19]),
        (schedules.FGECyclic(0.05, 0.005, 5, start_step=6), 24, [7, 12, 17, 22]),
        (schedules.CosineRestarts(0.05, 8, first_cycle_steps=12), 30, [11, 19, 27]),
    ],
)
def test_snapshot_steps(schedule, total, expected):
    steps = schedule.snapshot_steps() if total is None else schedule.snapshot_steps(total)
    assert steps == expected


@pytest.mark.parametrize("case", ["snapshot_even", "fge_even", "fge_odd_started", "restarts"])
def test_snapshot_steps_are_cycle_minima_and_cycles_are_consistent(case):
    schedule = CASES[case][0]
    steps = np.arange(HORIZON)
    lr = np.array([float(schedule(s)) for s in steps])
    index = schedule.cycle_index(steps)
    starts = schedule.is_cycle_start(steps)
    # A cycle starts exactly where the cycle index increases.
    np.testing.assert_array_equal(starts[1:], np.diff(index) == 1)
    snapshots = schedule.snapshot_steps(HORIZON)
    assert snapshots
    for s in snapshots:
        in_cycle = index == index[s]
        assert lr[s] == pytest.approx(lr[in_cycle].min(), rel=1e-6)
        assert schedule.is_snapshot_step(int(s)) is True


def test_fge_minimum_is_lr_min_and_cycle_ends_at_lr_max():
    schedule = schedules.FGECyclic(0.05, 0.005, cycle_steps=8)
    assert float(schedule(3)) == pytest.approx(0.005)
    assert float(schedule(7)) == pytest.approx(0.05)
    assert schedule.cycle_index(7) == 0 and schedule.cycle_index(8) == 1


@pytest.mark.parametrize("case", CASES)
def test_config_and_optimizer_serialization_round_trip(case):
    schedule = CASES[case][0]
    clone = assert_config_round_trip(schedule)
    assert float(clone(5)) == float(schedule(5))
    optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert restored.get_config() == optimizer.get_config()
    assert restored.get_config()["learning_rate"]["registered_name"] == f"supernet>{type(schedule).__name__}"
    restored.iterations.assign(5)
    assert float(restored.learning_rate) == pytest.approx(float(schedule(5)))


def test_schedule_drives_sgd_in_fit():
    x, y = seeded_data(n=32, d=4, classes=3)
    schedule = schedules.FGECyclic(0.05, 0.005, cycle_steps=4)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.SGD(learning_rate=schedule), "sparse_categorical_crossentropy")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: seen.append(float(model.optimizer.learning_rate))
    )
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[record])
    expected = [fge_closed(s, 0.05, 0.005, 4) for s in range(8)]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: schedules.SnapshotCosine(-0.1, 10, 2), "initial_lr=-0.1"),
        (lambda: schedules.SnapshotCosine(0.1, 0, 1), "total_steps=0"),
        (lambda: schedules.SnapshotCosine(0.1, 10, 0), "num_cycles=0"),
        (lambda: schedules.SnapshotCosine(0.1, 3, 4), "num_cycles=4, total_steps=3"),
        (lambda: schedules.SnapshotCosine(0.1, 10.5, 2), "total_steps=10.5"),
        (lambda: schedules.snapshot_cosine_lr(0, 0.1, 3, 4), "num_cycles=4"),
        (lambda: schedules.FGECyclic(0.01, 0.05, 8), "lr_min=0.05, lr_max=0.01"),
        (lambda: schedules.FGECyclic(0.05, -0.01, 8), "lr_min=-0.01"),
        (lambda: schedules.FGECyclic(0.05, 0.01, 1), "cycle_steps=1"),
        (lambda: schedules.FGECyclic(0.05, 0.01, 8, start_step=-1), "start_step=-1"),
        (lambda: schedules.fge_lr(-1, 0.05, 0.01, 8), "step=-1"),
        (lambda: schedules.CosineRestarts(0.05, 0), "cycle_steps=0"),
        (lambda: schedules.CosineRestarts(0.05, 4, first_cycle_steps=0), "first_cycle_steps=0"),
        (lambda: schedules.CosineRestarts(0.05, 4, first_peak_lr=-1.0), "first_peak_lr=-1.0"),
        (lambda: schedules.CosineRestarts(0.05, 4, min_lr=0.1), "min_lr=0.1, peak_lr=0.05"),
        (lambda: schedules.CosineRestarts(0.05, 4, first_peak_lr=0.01, min_lr=0.02), "first_peak_lr=0.01"),
        (lambda: schedules.restart_cosine_lr(0, -0.05, 4), "peak_lr=-0.05"),
    ],
)
def test_bad_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        make()
