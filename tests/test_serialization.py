"""Lossless save and load of every registered `supernet` class and model builder.

Every class registered under the `supernet>` package round-trips
`get_config` / `from_config`; every layer and model also survives a `.keras`
save -> load with bit-identical predictions. A guard test fails as soon as a
new class is registered without an entry here.
"""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from test_case import assert_saved_model_predicts_same, run_one_fit_step, seeded_data

import supernet
from supernet import callbacks, losses, metrics, schedules
from supernet.layers import ByteDropout, FrozenModel, GroupedDense, SwapMemberAxis
from supernet.models import mlp, small_resnet, thesis_cnn, transfer_model, vgg16

ROOT = Path(__file__).resolve().parents[1]
X, Y = seeded_data(n=32, d=12, classes=4)
VALIDATION = (X[:8], Y[:8])


def _registered():
    return sorted(name.split(">", 1)[1] for name in keras.saving.get_custom_objects() if name.startswith("supernet>"))


# Each registered class: a factory and the extra `from_config` arguments that
# are data, not configuration (validation arrays of callbacks).
CONFIG_CASES = {
    "GroupedDense": (lambda: GroupedDense(3, [4, 5, 6], input_units=[2, 2, 3], activation="relu", kernel_regularizer="l2"), {}),
    "FrozenModel": (lambda: FrozenModel(mlp(12, [6], 4), name="frozen"), {}),
    "PartitionedMLP": (lambda: supernet.PartitionedMLP(12, [8, 6], num_classes=4, num_members=3, dropout=0.1, l2=1e-4, seed=1), {}),
    "SuperNet": (lambda: supernet.build_supernet([mlp(12, [6], 4) for _ in range(2)], downscale=2.5), {}),
    "Ensemble": (lambda: supernet.Ensemble([mlp(12, [6], 4) for _ in range(2)], combiner="log_prob"), {}),
    "SnapshotCosine": (lambda: schedules.SnapshotCosine(0.1, total_steps=12, num_cycles=3), {}),
    "FGECyclic": (lambda: schedules.FGECyclic(0.05, 0.0005, cycle_steps=8, start_step=4), {}),
    "CosineRestarts": (lambda: schedules.CosineRestarts(0.05, cycle_steps=4, first_cycle_steps=10, first_peak_lr=0.005, min_lr=1e-4), {}),
    "SnapshotEnsemble": (lambda: callbacks.SnapshotEnsemble(schedules.SnapshotCosine(0.1, 12, 3), reset_optimizer=True), {}),
    "MemberEarlyStopping": (lambda: callbacks.MemberEarlyStopping(VALIDATION, monitor="accuracy", patience=3, min_delta=0.01), {"validation_data": VALIDATION}),
    "TimeToAccuracy": (lambda: callbacks.TimeToAccuracy(VALIDATION, target=0.9, offset=(1.0, 2.0), stop=False), {"validation_data": VALIDATION}),
    "SnapshotWeights": (lambda: callbacks.SnapshotWeights([1, 4]), {}),
    "EpochTimer": (lambda: callbacks.EpochTimer(), {}),
    "EpochScores": (lambda: callbacks.EpochScores({"val": VALIDATION}), {"splits": {"val": VALIDATION}}),
    "MemberwiseCrossentropy": (lambda: losses.MemberwiseCrossentropy(from_logits=True, name="mw"), {}),
    "MemberAccuracy": (lambda: metrics.MemberAccuracy(name="macc"), {}),
    "SoftmaxVoteAccuracy": (lambda: metrics.SoftmaxVoteAccuracy(name="vacc"), {}),
    "MarginCrossentropy": (lambda: losses.MarginCrossentropy(margin=2.0, from_logits=True, name="gap"), {}),
    "LogitNormCrossentropy": (lambda: losses.LogitNormCrossentropy(temperature=0.1, name="lnorm"), {}),
    "SwapMemberAxis": (lambda: SwapMemberAxis(name="swap"), {}),
    "ByteDropout": (lambda: ByteDropout(0.3, seed=2, name="bytes"), {}),
    "FusedAdam": (lambda: supernet.optimizers.FusedAdam(learning_rate=3e-3, beta_2=0.99), {}),
    "Distiller": (lambda: supernet.Distiller(mlp(12, [4], 4), supernet.build_supernet([mlp(12, [6], 4) for _ in range(2)], downscale=2.0), temperature=2.0, alpha=0.3), {}),
}


def test_every_registered_class_has_a_round_trip_case():
    registered = _registered()
    assert registered, "no supernet class is registered"
    assert sorted(CONFIG_CASES) == registered


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_config_round_trip(name):
    make, extra = CONFIG_CASES[name]
    obj = make()
    assert type(obj).__name__ == name
    config = obj.get_config()
    # Functional `from_config` consumes nested parts of its argument.
    clone = type(obj).from_config({**copy.deepcopy(config), **extra})
    assert type(clone) is type(obj)
    # Compared as stored in a `.keras` file: JSON turns tuples into lists.
    assert _as_json(clone.get_config()) == _as_json(config)


def _as_json(config):
    def strip(value):
        # `shared_object_id` is an `id()` of this process, not configuration.
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "shared_object_id"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(json.loads(json.dumps(config, sort_keys=True)))


@pytest.mark.parametrize("name", ["SnapshotCosine", "FGECyclic", "CosineRestarts", "MemberwiseCrossentropy", "MemberAccuracy", "SoftmaxVoteAccuracy"])
def test_serialize_by_registered_name(name):
    obj = CONFIG_CASES[name][0]()
    serialized = keras.saving.serialize_keras_object(obj)
    assert serialized["registered_name"] == f"supernet>{name}"
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is type(obj) and clone.get_config() == obj.get_config()
    if isinstance(obj, keras.optimizers.schedules.LearningRateSchedule):
        steps = np.arange(30)
        np.testing.assert_array_equal([float(clone(s)) for s in steps], [float(obj(s)) for s in steps])


def _fused(head, **kwargs):
    model = supernet.PartitionedMLP(12, [8, 6], num_classes=4, num_members=3, dropout=0.2, l2=1e-4, head=head, seed=3, **kwargs)
    if head == "members":
        model.compile(optimizer=keras.optimizers.SGD(schedules.SnapshotCosine(0.1, 4, 2)), metrics=[metrics.MemberAccuracy(), metrics.SoftmaxVoteAccuracy()])
    else:
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    run_one_fit_step(model, X, Y)
    return model, X


def _grouped_dense():
    model = keras.Sequential([keras.Input((3, 4)), GroupedDense(3, 5, activation="softmax")])
    return model, np.random.default_rng(0).normal(size=(6, 3, 4)).astype("float32")


def _supernet_of(members_fn, **kwargs):
    def build():
        members = members_fn()
        return supernet.build_supernet(members, **kwargs)
    return build


def _dropout_mlp():
    return [mlp(12, [6], 4, dropout=0.5) for _ in range(2)]


def _image(model_fn, shape=(32, 32, 3)):
    def build():
        return model_fn(), np.random.default_rng(1).normal(size=(2, *shape)).astype("float32")
    return build


MODEL_CASES = {
    "PartitionedMLP-members": lambda: _fused("members"),
    "PartitionedMLP-merged": lambda: _fused("merged"),
    "PartitionedMLP-byte-dropout": lambda: _fused("members", dropout_masks="bytes"),
    "GroupedDense": _grouped_dense,
    "SuperNet-of-mlps": lambda: (_supernet_of(_dropout_mlp, downscale=2.5)(), X),
    "SuperNet-auto-downscale": lambda: (_supernet_of(_dropout_mlp, downscale="auto", validation_data=VALIDATION)(), X),
    "SuperNet-random-head": lambda: (_supernet_of(_dropout_mlp, init="random", seed=2)(), X),
    "SuperNet-of-PartitionedMLP": lambda: (supernet.build_supernet(_fused("members")[0], downscale=3.0), X),
    "Ensemble-majority-of-PartitionedMLP": lambda: (supernet.Ensemble(_fused("members")[0], combiner="majority"), X),
    "mlp": lambda: (mlp(12, [8], 4, dropout=0.1, l2=1e-3), X),
    "thesis_cnn": _image(lambda: thesis_cnn((32, 32, 3), 4)),
    "small_resnet": _image(lambda: small_resnet((16, 16, 3), 4, seed=0), (16, 16, 3)),
    "transfer_model": _image(lambda: transfer_model(small_resnet((16, 16, 3), 4, seed=0), 3, head_seed=1), (16, 16, 3)),
    "vgg16": _image(lambda: vgg16((32, 32, 3), 5, dense_units=16)),
}


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_keras_file_round_trip_predicts_the_same(name, tmp_path):
    keras.utils.set_random_seed(0)
    model, x = MODEL_CASES[name]()
    loaded = assert_saved_model_predicts_same(model, x, tmp_path)
    assert type(loaded) is type(model)
    assert [w.shape for w in loaded.weights] == [w.shape for w in model.weights]
    for mine, theirs in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs))


def test_compiled_fused_model_keeps_loss_metrics_and_schedule(tmp_path):
    model, x = _fused("members")
    loaded = assert_saved_model_predicts_same(model, x, tmp_path)
    assert isinstance(loaded.loss, losses.MemberwiseCrossentropy)
    schedule = loaded.optimizer.learning_rate if not hasattr(loaded.optimizer, "_learning_rate") else loaded.optimizer._learning_rate
    assert isinstance(schedule, schedules.SnapshotCosine)
    # Training goes on from the same optimizer state in both.
    before = model.evaluate(X, Y, verbose=0, return_dict=True)
    after = loaded.evaluate(X, Y, verbose=0, return_dict=True)
    assert before == after and {"member_accuracy", "vote_accuracy"} <= set(after)


@pytest.mark.parametrize("downscale", [2.5, "auto"])
def test_supernet_info_survives_save_and_load(downscale, tmp_path):
    keras.utils.set_random_seed(0)
    model = supernet.build_supernet(_dropout_mlp(), downscale=downscale, validation_data=VALIDATION)
    path = tmp_path / "supernet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, supernet.SuperNet)
    assert loaded.supernet_info == model.supernet_info
    assert loaded.supernet_info["downscale"] > 0 and loaded.supernet_info["num_members"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("name", ["PartitionedMLP-members", "SuperNet-of-mlps"])
def test_loading_without_the_package_names_the_missing_class(name, tmp_path):
    keras.utils.set_random_seed(0)
    model, _ = MODEL_CASES[name]()
    path = tmp_path / "model.keras"
    model.save(path)
    code = (
        "import sys, keras\n"
        f"keras.saving.load_model({str(path)!r})\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    # Run outside the repository so `supernet` is not importable from the cwd.
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    cls = type(model).__name__
    assert f"Could not locate class '{cls}'" in result.stderr
    assert f"'registered_name': 'supernet>{cls}'" in result.stderr
