import keras
import numpy as np
import pytest

from supernet.callbacks.layer_by_layer import (
    StageResult,
    layer_by_layer_stages,
    retrain_last_layers,
    retrain_layer_by_layer,
    trainable_layers,
)
from supernet.models.thesis_cnn import thesis_cnn
from test_case import weights_of

STAGE_ORDER = ["dense", "conv2", "conv1"]  # last trainable layer first


def _tiny_net(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="conv1"),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.ELU(name="elu"),
            keras.layers.Conv2D(4, 3, name="conv2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(3, activation="softmax", name="dense"),
        ],
        name="tiny",
    )


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 2.0, size=(n, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 3, size=n).astype("int32")
    return x, y


def _snapshot(model):
    return {layer.name: weights_of(layer) for layer in model.layers}


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


class _Recorder(keras.callbacks.Callback):
    """Weights, flags and optimizer seen at the start and end of every fit()."""

    def __init__(self):
        super().__init__()
        self.stages = []
        self.epochs = []

    def on_train_begin(self, logs=None):
        model = self.model
        self.stages.append(
            {
                "before": _snapshot(model),
                "trainable": {layer.name: layer.trainable for layer in model.layers},
                "optimizer": model.optimizer,
                "iterations": int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
            }
        )

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_train_end(self, logs=None):
        self.stages[-1]["after"] = _snapshot(self.model)


@pytest.fixture(scope="module")
def run():
    model = _tiny_net()
    x, y = _data()
    flags = {layer.name: layer.trainable for layer in model.layers}
    recorder = _Recorder()
    results = retrain_layer_by_layer(
        model,
        x,
        y,
        epochs_per_stage=(1, 2, 1),
        validation_data=_data(16, seed=1),
        batch_size=16,
        callbacks=[recorder],
        verbose=0,
    )
    return model, flags, recorder, results


def test_trainable_layers_skips_batchnorm_by_default():
    model = _tiny_net()
    assert [layer.name for layer in trainable_layers(model)] == ["conv1", "conv2", "dense"]
    names = [layer.name for layer in trainable_layers(model, include_batchnorm=True)]
    assert names == ["conv1", "bn1", "conv2", "dense"]


@pytest.mark.parametrize(
    "include_batchnorm, expected",
    [(True, [["dense"], ["conv2"], ["conv1", "bn1"]]), (False, [["dense"], ["conv2"], ["conv1"]])],
)
def test_stages_go_from_last_to_first(include_batchnorm, expected):
    stages = layer_by_layer_stages(_tiny_net(), 3, include_batchnorm=include_batchnorm)
    assert [[layer.name for layer in group] for group in stages] == expected


def test_thesis_cnn_stages_are_table_3_layers():
    stages = layer_by_layer_stages(thesis_cnn(), 4)
    assert [[layer.name for layer in group] for group in stages] == [
        ["predictions"],
        ["block3_conv2", "block3_bn2"],
        ["block3_conv1", "block3_bn1"],
        ["block2_conv2", "block2_bn2"],
    ]


@pytest.mark.parametrize("num_stages", [0, 4, 1.5])
def test_stages_reject_bad_num_stages(num_stages):
    with pytest.raises(ValueError, match="num_stages"):
        layer_by_layer_stages(_tiny_net(), num_stages)


def test_results_describe_each_stage(run):
    _, _, _, results = run
    assert all(isinstance(r, StageResult) for r in results)
    assert [r.stage for r in results] == [1, 2, 3]
    assert [r.layer for r in results] == STAGE_ORDER
    assert [r.trained_layers for r in results] == [("dense",), ("conv2",), ("conv1", "bn1")]
    assert [r.epochs for r in results] == [1, 2, 1]
    assert [len(r.history["loss"]) for r in results] == [1, 2, 1]
    for r in results:
        assert 0.0 <= r.val_accuracy <= 1.0
        assert r.as_dict()["val_accuracy"] == r.val_accuracy


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_only_the_stage_layers_change(run, stage):
    _, _, recorder, results = run
    record = recorder.stages[stage]
    trained = set(results[stage].trained_layers)
    assert {name for name, flag in record["trainable"].items() if flag} == trained
    for name, before in record["before"].items():
        after = record["after"][name]
        if name in trained:
            assert not _same(before, after), f"stage {stage + 1}: {name} did not train"
        else:
            # Kernels, biases, and BatchNormalization gamma/beta and moving
            # statistics of frozen layers are bit-identical.
            assert _same(before, after), f"stage {stage + 1}: frozen {name} changed"


def test_batchnorm_moving_statistics_move_only_with_their_conv(run):
    _, _, recorder, _ = run
    bn = {v.path: i for i, v in enumerate(run[0].get_layer("bn1").weights)}
    moving = [i for path, i in bn.items() if "moving" in path]
    assert len(moving) == 2
    for stage, changes in zip(recorder.stages, [False, False, True]):
        before, after = stage["before"]["bn1"], stage["after"]["bn1"]
        assert [not np.array_equal(before[i], after[i]) for i in moving] == [changes] * 2


def test_each_stage_gets_a_fresh_optimizer(run):
    _, _, recorder, results = run
    optimizers = [stage["optimizer"] for stage in recorder.stages]
    assert len({id(o) for o in optimizers}) == 3
    assert all(r.optimizer is o for r, o in zip(results, optimizers))
    assert [stage["iterations"] for stage in recorder.stages] == [0, 0, 0]
    # 32 samples / batch 16 = 2 steps per epoch.
    steps = [int(keras.ops.convert_to_numpy(o.iterations)) for o in optimizers]
    assert steps == [2, 4, 2]


def test_callbacks_see_continuous_epochs(run):
    _, _, recorder, _ = run
    assert recorder.epochs == [0, 1, 2, 3]


def test_trainable_flags_restored(run):
    model, flags, _, _ = run
    assert {layer.name: layer.trainable for layer in model.layers} == flags
    assert [layer.name for layer in trainable_layers(model)] == ["conv1", "conv2", "dense"]


def test_batchnorm_can_stay_frozen_throughout():
    model = _tiny_net()
    x, y = _data()
    before = _snapshot(model)
    results = retrain_layer_by_layer(
        model, x, y, epochs_per_stage=(1, 1, 1), include_batchnorm=False, batch_size=16, verbose=0
    )
    after = _snapshot(model)
    assert results[-1].trained_layers == ("conv1",)
    assert _same(before["bn1"], after["bn1"])
    assert not _same(before["conv1"], after["conv1"])


def test_pre_frozen_and_nested_flags_are_respected_and_restored():
    keras.utils.set_random_seed(0)
    inner = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="inner_a"), keras.layers.Conv2D(4, 3, name="inner_b")],
        name="inner",
    )
    inner.get_layer("inner_b").trainable = False
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), inner, keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax", name="dense")]
    )
    x, y = _data()
    before = {name: weights_of(inner.get_layer(name)) for name in ("inner_a", "inner_b")}
    results = retrain_layer_by_layer(model, x, y, epochs_per_stage=(1, 1), batch_size=16, verbose=0)
    assert [r.layer for r in results] == ["dense", "inner"]
    assert not _same(before["inner_a"], weights_of(inner.get_layer("inner_a")))
    assert _same(before["inner_b"], weights_of(inner.get_layer("inner_b")))
    assert inner.trainable and inner.get_layer("inner_a").trainable
    assert not inner.get_layer("inner_b").trainable


def test_retrain_last_layers_uses_equal_epochs():
    model = _tiny_net()
    x, y = _data()
    results = retrain_last_layers(model, x, y, num_layers=1, epochs=2, batch_size=32, verbose=0)
    assert [(r.layer, r.epochs, len(r.history["loss"])) for r in results] == [("dense", 2, 2)]


@pytest.mark.parametrize("epochs_per_stage", [(), (1, -1), (0,), (1, 1, 1, 1), 3, (1.5,)])
def test_bad_epochs_per_stage(epochs_per_stage):
    model = _tiny_net()
    x, y = _data()
    with pytest.raises(ValueError, match="epochs_per_stage"):
        retrain_layer_by_layer(model, x, y, epochs_per_stage=epochs_per_stage, verbose=0)


@pytest.mark.parametrize("kwargs, argument", [({"num_layers": 0}, "num_layers"), ({"epochs": -1}, "epochs")])
def test_retrain_last_layers_bad_args(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        retrain_last_layers(_tiny_net(), *_data(), **kwargs)


def test_reused_optimizer_is_rejected_and_flags_restored():
    model = _tiny_net()
    x, y = _data()
    shared = keras.optimizers.Adam()
    with pytest.raises(ValueError, match="optimizer_fn"):
        retrain_layer_by_layer(
            model, x, y, epochs_per_stage=(1, 1), optimizer_fn=lambda: shared, batch_size=32, verbose=0
        )
    assert all(layer.trainable for layer in model.layers)
