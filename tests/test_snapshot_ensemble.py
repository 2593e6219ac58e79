"""SnapshotEnsemble: snapshots at the exact schedule minima, no off-by-one."""

import functools

import keras
import numpy as np
import pytest
from test_case import assert_weights_equal, seeded_data

from supernet.batchnorm import recompute_batchnorm_statistics
from supernet.callbacks.snapshot_ensemble import SnapshotEnsemble, _runs_past_budget
from supernet.schedules import CosineRestarts, FGECyclic, SnapshotCosine

STEPS_PER_EPOCH = 4  # 32 samples, batch 8
EPOCHS = 6

# Each schedule with the 0-based steps of its snapshots over 24 steps, worked
# out by hand from the papers' formulas.
SCHEDULES = {
    # Cycles of ceil(24 / 3) = 8 steps; snapshot at each cycle's last step.
    "snapshot_cosine": (SnapshotCosine(0.1, total_steps=24, num_cycles=3), [7, 15, 23]),
    # t(s) = (s mod 8 + 1) / 8 reaches 1/2 at s mod 8 = 3.
    "fge": (FGECyclic(0.1, 0.001, cycle_steps=8), [3, 11, 19]),
    # First cycle 0..11, then 12..19, 20..27.
    "cosine_restarts": (CosineRestarts(0.05, cycle_steps=8, first_cycle_steps=12, first_peak_lr=0.1), [11, 19]),
}


class WeightRecorder(keras.callbacks.Callback):
    """The model's weights after every step, keyed by 0-based global step."""

    def on_train_begin(self, logs=None):
        self.weights = getattr(self, "weights", {})

    def on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) - 1
        self.weights[step] = [np.array(w) for w in self.model.get_weights()]


def tiny_model(optimizer, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer, "sparse_categorical_crossentropy")
    return model


def fit(model, callbacks, epochs=EPOCHS):
    x, y = seeded_data(n=32, d=4, classes=3)
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    return x


@pytest.mark.parametrize("name", SCHEDULES)
def test_snapshots_at_schedule_minima(name):
    schedule, expected = SCHEDULES[name]
    model = tiny_model(keras.optimizers.SGD(learning_rate=schedule, momentum=0.9))
    snapshots, recorder = SnapshotEnsemble(schedule), WeightRecorder()
    x = fit(model, [snapshots, recorder])

    assert snapshots.snapshot_steps_taken == expected
    assert snapshots.snapshot_steps_taken == schedule.snapshot_steps(STEPS_PER_EPOCH * EPOCHS)
    lr = np.array([float(schedule(s)) for s in range(STEPS_PER_EPOCH * EPOCHS)])
    cycles = schedule.cycle_index(np.arange(lr.size))
    for step, weights in zip(snapshots.snapshot_steps_taken, snapshots.snapshots):
        assert lr[step] == pytest.approx(lr[cycles == cycles[step]].min())
        assert_weights_equal(recorder.weights[step], weights)
    for i in range(len(expected)):
        for j in range(i):
            assert_weights_equal(snapshots.snapshots[i], snapshots.snapshots[j], equal=False)

    members = snapshots.models()
    assert len(members) == len(expected)
    predictions = [keras.ops.convert_to_numpy(member(x)) for member in members]
    for i in range(len(predictions)):
        for j in range(i):
            assert not np.allclose(predictions[i], predictions[j])
    # The last member of a cosine-annealing run is the final model.
    if name == "snapshot_cosine":
        np.testing.assert_allclose(predictions[-1], keras.ops.convert_to_numpy(model(x)), rtol=1e-6)


def test_directory_variant_saves_loadable_files(tmp_path):
    schedule, expected = SCHEDULES["fge"]
    model = tiny_model(keras.optimizers.SGD(learning_rate=schedule))
    snapshots = SnapshotEnsemble(schedule, directory=str(tmp_path / "snaps"))
    recorder = WeightRecorder()
    fit(model, [snapshots, recorder])
    assert snapshots.snapshot_steps_taken == expected
    assert snapshots.snapshots == [str(tmp_path / "snaps" / f"snapshot_{k}.keras") for k in range(3)]
    for step, member in zip(expected, snapshots.models()):
        assert_weights_equal(recorder.weights[step], [np.array(w) for w in member.get_weights()])
        assert isinstance(member.optimizer.get_config()["learning_rate"], dict)


def test_explicit_steps_and_several_fit_calls():
    schedule = SnapshotCosine(0.1, total_steps=24, num_cycles=3)
    model = tiny_model(keras.optimizers.SGD(learning_rate=schedule))
    snapshots, recorder = SnapshotEnsemble(snapshot_steps=[2, 7, 13]), WeightRecorder()
    fit(model, [snapshots, recorder], epochs=2)  # steps 0..7
    fit(model, [snapshots, recorder], epochs=2)  # steps 8..15: earlier snapshots kept
    assert snapshots.snapshot_steps_taken == [2, 7, 13]
    for step, weights in zip([2, 7, 13], snapshots.snapshots):
        assert_weights_equal(recorder.weights[step], weights)

    # A fresh model and optimizer start a clean run.
    fit(tiny_model(keras.optimizers.SGD(learning_rate=schedule)), [snapshots], epochs=1)
    assert snapshots.snapshot_steps_taken == [2]


@pytest.mark.parametrize("reset", [True, False])
def test_reset_optimizer_zeroes_moments_at_cycle_start(reset):
    schedule = SnapshotCosine(0.01, total_steps=16, num_cycles=2)  # cycle starts 0, 8
    model = tiny_model(keras.optimizers.Adam(learning_rate=schedule))
    optimizer = model.optimizer

    def slots():
        return [
            np.array(v)
            for v in optimizer.variables
            if v.name not in ("iteration", "learning_rate")
        ]

    seen = {}

    def probe(batch, logs):
        step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        seen[step] = (slots(), step)

    # The probe runs after SnapshotEnsemble, so it sees the state right after a reset.
    callbacks = [
        SnapshotEnsemble(schedule, reset_optimizer=reset),
        keras.callbacks.LambdaCallback(on_train_batch_begin=probe),
    ]
    fit(model, callbacks, epochs=3)
    before_reset, _ = seen[7]
    at_reset, iterations = seen[8]
    assert before_reset and all(np.any(s != 0) for s in before_reset)
    assert iterations == 8
    if reset:
        assert all(np.all(s == 0) for s in at_reset)
    else:
        assert all(np.any(s != 0) for s in at_reset)
    assert all(np.any(s != 0) for s in seen[9][0])  # no reset mid-cycle


@pytest.mark.parametrize("max_snapshots", [None, 2])
def test_config_round_trip(max_snapshots):
    kwargs = {} if max_snapshots is None else {"max_snapshots": max_snapshots}
    callback = SnapshotEnsemble(SCHEDULES["cosine_restarts"][0], directory="snaps", reset_optimizer=True, **kwargs)
    config = callback.get_config()
    clone = SnapshotEnsemble.from_config(config)
    assert clone.get_config() == config
    assert clone.schedule.get_config() == callback.schedule.get_config()
    assert clone.max_snapshots == max_snapshots
    # Without the argument the config reads as before it existed.
    assert ("max_snapshots" in config) == (max_snapshots is not None)


@pytest.mark.parametrize(
    "max_snapshots, taken, steps_run, epochs_run",
    [
        (None, [2, 9, 13], 24, 6),  # every epoch of the fit
        (2, [2, 9], 10, 3),  # stops right after step 9, mid-epoch 3
        (3, [2, 9, 13], 14, 4),
    ],
)
def test_max_snapshots_stops_the_fit_once_that_many_are_held(max_snapshots, taken, steps_run, epochs_run):
    model = tiny_model(keras.optimizers.SGD(learning_rate=0.01))
    snapshots, recorder = SnapshotEnsemble(snapshot_steps=[2, 9, 13], max_snapshots=max_snapshots), WeightRecorder()
    x, y = seeded_data(n=32, d=4, classes=3)
    history = model.fit(x, y, batch_size=8, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[snapshots, recorder])
    assert snapshots.snapshot_steps_taken == taken
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == steps_run
    assert len(history.history["loss"]) == epochs_run
    assert_weights_equal(recorder.weights[taken[-1]], snapshots.snapshots[-1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "Exactly one of `schedule` and `snapshot_steps`"),
        ({"schedule": SCHEDULES["fge"][0], "snapshot_steps": [1]}, "Exactly one of"),
        ({"snapshot_steps": [-1, 3]}, "snapshot_steps=\\[-1, 3\\]"),
        ({"schedule": keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)}, "is_snapshot_step"),
        ({"snapshot_steps": [3], "max_snapshots": 0}, "Argument `max_snapshots` must be an int >= 1. Received: max_snapshots=0"),
        ({"snapshot_steps": [3], "max_snapshots": 2.0}, "Received: max_snapshots=2.0"),
        ({"snapshot_steps": [3], "bn_data": np.zeros((0, 4))}, "Argument `bn_data` must be None or an array .* Received: bn_data with shape=\\(0, 4\\)"),
        ({"snapshot_steps": [3], "bn_data": "x_train"}, "Argument `bn_data` must be a numeric array"),
        ({"snapshot_steps": [3], "bn_data": np.full((2, 4), np.nan)}, "Argument `bn_data` must contain only finite values"),
        ({"snapshot_steps": [3], "bn_batch_size": 0}, "Argument `bn_batch_size` must be an int >= 1. Received: bn_batch_size=0"),
        ({"snapshot_steps": [3], "bn_batch_size": 8.0}, "Received: bn_batch_size=8.0"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SnapshotEnsemble(**kwargs)


def test_steps_per_execution_warns_and_takes_next_reachable_step():
    model = tiny_model(keras.optimizers.SGD(learning_rate=0.01))
    model.compile(model.optimizer, "sparse_categorical_crossentropy", steps_per_execution=2)
    snapshots = SnapshotEnsemble(snapshot_steps=[2, 5])
    with pytest.warns(UserWarning, match="after step 2 .* after step 3"):
        fit(model, [snapshots], epochs=1)
    assert snapshots.snapshot_steps_taken == [3]


# === Budget check: `total_steps` given in epochs ===


def budget_warnings(record):
    return [w for w in record if "SnapshotEnsemble: the schedule's `total_steps" in str(w.message)]


@pytest.mark.parametrize(
    "total_steps, start_step, epochs, expected",
    [
        (24, 0, 6, False),  # exactly the budget
        (22, 0, 6, False),  # epochs rounded up to cover the budget
        (20, 0, 6, True),  # steps 20..23: a whole epoch past the budget
        (6, 0, 6, True),  # the budget given in epochs
        (24, 12, 3, False),  # resumed halfway, finishing the budget
        (24, 24, 1, True),  # the budget already spent
    ],
)
def test_runs_past_budget(total_steps, start_step, epochs, expected):
    assert _runs_past_budget(total_steps, start_step, epochs, STEPS_PER_EPOCH) is expected


def test_total_steps_given_in_epochs_warns_once():
    schedule = SnapshotCosine(0.1, total_steps=EPOCHS, num_cycles=3)  # cycles of 2 steps
    model = tiny_model(keras.optimizers.SGD(learning_rate=schedule))
    snapshots = SnapshotEnsemble(schedule)
    with pytest.warns(UserWarning) as record:
        fit(model, [snapshots])
    [warning] = budget_warnings(record)
    message = str(warning.message)
    assert "`total_steps=6`" in message and "the 24 steps" in message
    assert "(6 epochs of 4 steps)" in message and "epochs instead of steps" in message
    # What the warning is about: every odd step 1..23 is a snapshot, 9 past step 5.
    assert "12 snapshots, 9 of them after" in message
    assert snapshots.snapshot_steps_taken == list(range(1, 24, 2))


@pytest.mark.parametrize("resume", [False, True])
def test_matching_budget_does_not_warn(resume, recwarn):
    schedule, expected = SCHEDULES["snapshot_cosine"]  # total_steps=24: 6 epochs of 4 steps
    model = tiny_model(keras.optimizers.SGD(learning_rate=schedule))
    snapshots = SnapshotEnsemble(schedule)
    x, y = seeded_data(n=32, d=4, classes=3)
    kwargs = dict(batch_size=8, shuffle=False, verbose=0, callbacks=[snapshots])
    if resume:  # as after a restart: fit() counts epochs from `initial_epoch`
        model.fit(x, y, epochs=3, **kwargs)
        model.fit(x, y, epochs=EPOCHS, initial_epoch=3, **kwargs)
    else:
        model.fit(x, y, epochs=EPOCHS, **kwargs)
    assert budget_warnings(recwarn) == []
    assert snapshots.snapshot_steps_taken == expected


# === Fresh BatchNormalization statistics (`bn_data`) ===


BN_DATA = np.random.default_rng(1).normal(1.0, 2.0, size=(20, 4)).astype("float32")  # 20: a partial last batch of 8


def bn_model(optimizer, seed=0, batchnorm=True):
    """Two BatchNormalization layers, the second fed by batch-normalised activations, and dropout."""
    keras.utils.set_random_seed(seed)
    norm = keras.layers.BatchNormalization if batchnorm else keras.layers.LayerNormalization
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(6, name="dense_in"),
        norm(momentum=0.9, name="bn_in") if batchnorm else norm(name="bn_in"),
        keras.layers.ReLU(),
        keras.layers.Dense(5),
        norm(momentum=0.9, name="bn_mid") if batchnorm else norm(name="bn_mid"),
        # Downstream of both: the recomputed statistics do not depend on its masks.
        keras.layers.Dropout(0.25, seed=seed),
        keras.layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer, "sparse_categorical_crossentropy")
    return model


class Batches(keras.utils.PyDataset):
    """Batches of 8 that `fit(shuffle=True)` puts in an order drawn from Python's `random`."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x) // 8

    def __getitem__(self, index):
        return self.x[8 * index : 8 * index + 8], self.y[8 * index : 8 * index + 8]


def fit_shuffled(model, callbacks, py_dataset=False):
    x, y = seeded_data(n=32, d=4, classes=3)
    keras.utils.set_random_seed(7)  # the shuffle and dropout masks of every run
    if py_dataset:
        model.fit(Batches(x, y), epochs=EPOCHS, shuffle=True, verbose=0, callbacks=callbacks)
    else:
        model.fit(x, y, batch_size=8, epochs=EPOCHS, verbose=0, callbacks=callbacks)


def snapshot_run(with_bn_data, directory=None, batchnorm=True, py_dataset=False):
    """A run with `bn_data=BN_DATA` or none; in-memory runs are made once, since the tests only read them."""
    if directory is None:
        return _in_memory_snapshot_run(with_bn_data, batchnorm, py_dataset)
    return _snapshot_run(with_bn_data, directory, batchnorm, py_dataset)


@functools.cache
def _in_memory_snapshot_run(with_bn_data, batchnorm, py_dataset):
    return _snapshot_run(with_bn_data, None, batchnorm, py_dataset)


def _snapshot_run(with_bn_data, directory, batchnorm, py_dataset):
    schedule, expected = SCHEDULES["fge"]
    model = bn_model(keras.optimizers.SGD(learning_rate=schedule, momentum=0.9), batchnorm=batchnorm)
    bn_data = BN_DATA if with_bn_data else None
    snapshots = SnapshotEnsemble(schedule, directory=directory, bn_data=bn_data, bn_batch_size=8)
    recorder = WeightRecorder()
    fit_shuffled(model, [snapshots, recorder], py_dataset)
    assert snapshots.snapshot_steps_taken == expected
    members = [[np.array(w) for w in m.get_weights()] for m in snapshots.models()]
    return model, snapshots, recorder, members


def moving_statistics_indices(model):
    """Positions of the BatchNormalization moving means and variances in `get_weights()`."""
    moving = {id(v) for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
              for v in (layer.moving_mean, layer.moving_variance)}
    return [i for i, v in enumerate(model.weights) if id(v) in moving]


# The on-disk variants run with `-m slow`.
@pytest.mark.parametrize("on_disk", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_bn_data_snapshots_hold_the_statistics_of_the_data(on_disk, tmp_path):
    model, snapshots, recorder, members = snapshot_run(True, str(tmp_path / "snaps") if on_disk else None)
    moving = moving_statistics_indices(model)
    assert len(moving) == 4
    for step, member_weights in zip(snapshots.snapshot_steps_taken, members):
        trained = recorder.weights[step]
        # Every weight but the moving statistics is the model's at that step.
        for i, (a, b) in enumerate(zip(trained, member_weights)):
            assert np.array_equal(a, b) == (i not in moving), i
        member = keras.models.clone_model(model)
        member.set_weights(member_weights)
        # The first layer's inputs in closed form: mean and population variance over BN_DATA.
        kernel, bias = member.get_layer("dense_in").get_weights()
        inputs = BN_DATA.astype(np.float64) @ kernel + bias
        bn = member.get_layer("bn_in")
        np.testing.assert_allclose(bn.moving_mean.numpy(), inputs.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn.moving_variance.numpy(), inputs.var(axis=0), rtol=1e-4, atol=1e-5)
        # Both layers as the recomputation on a copy holding the model's weights at that step.
        reference = keras.models.clone_model(model)
        reference.set_weights(trained)
        recompute_batchnorm_statistics(reference, BN_DATA, batch_size=8)
        for name in ("bn_in", "bn_mid"):
            expected = reference.get_layer(name).get_weights()[2:]
            np.testing.assert_allclose(member.get_layer(name).get_weights()[2:], expected, rtol=1e-5, atol=1e-6)
        if on_disk:
            assert isinstance(snapshots.models()[0].optimizer.get_config()["learning_rate"], dict)


@pytest.mark.parametrize(
    "on_disk, py_dataset", [(False, False), (False, True), pytest.param(True, False, marks=pytest.mark.slow)]
)
def test_bn_data_leaves_the_trained_model_as_without_it(on_disk, py_dataset, tmp_path):
    runs = {
        given: snapshot_run(given, str(tmp_path / f"snaps_{given}") if on_disk else None, py_dataset=py_dataset)
        for given in (False, True)
    }
    (plain, _, plain_steps, plain_members), (model, _, steps, members) = runs[False], runs[True]
    # The trained model's weights, moving statistics included, after every step.
    assert sorted(steps.weights) == sorted(plain_steps.weights) == list(range(STEPS_PER_EPOCH * EPOCHS))
    for step in plain_steps.weights:
        assert_weights_equal(plain_steps.weights[step], steps.weights[step])
    assert_weights_equal([np.array(w) for w in plain.get_weights()], [np.array(w) for w in model.get_weights()])
    # Only the snapshots' moving statistics differ.
    moving = moving_statistics_indices(model)
    for a, b in zip(plain_members, members):
        assert [i for i, (u, v) in enumerate(zip(a, b)) if not np.array_equal(u, v)] == moving


def test_bn_data_without_batchnorm_gives_identical_snapshots():
    _, plain, _, plain_members = snapshot_run(False, batchnorm=False)
    _, snapshots, _, members = snapshot_run(True, batchnorm=False)
    assert snapshots._bn_copy is None  # no copy made, no pass over the data
    for a, b in zip(plain.snapshots, snapshots.snapshots):
        assert_weights_equal(a, b)
    for a, b in zip(plain_members, members):
        assert_weights_equal(a, b)


def test_bn_data_is_not_serialized():
    callback = SnapshotEnsemble(SCHEDULES["fge"][0], bn_data=BN_DATA, bn_batch_size=8)
    with pytest.raises(ValueError, match="`bn_data` cannot be serialized.*Received: bn_data with shape=\\(20, 4\\)"):
        callback.get_config()
    callback = SnapshotEnsemble(SCHEDULES["fge"][0], bn_batch_size=8)
    clone = SnapshotEnsemble.from_config(callback.get_config())
    assert clone.bn_batch_size == 8 and clone.bn_data is None
    assert "bn_batch_size" not in SnapshotEnsemble(SCHEDULES["fge"][0]).get_config()
