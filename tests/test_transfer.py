"""Transfer-learning ensembles: starting points, optimizer resets, schedules, PEFT, NaN."""

import functools
import time

import keras
import numpy as np
import pytest

from supernet import data, transfer
from supernet.batchnorm import recompute_batchnorm_statistics
from supernet.models.resnet import resnet50_backbone, small_resnet, transfer_model
from supernet.schedules import restart_cosine_lr

BATCH = 16
# Eager steps: tracing a graph per fit() costs more than these few steps.
FAST = dict(batch_size=BATCH, run_eagerly=True)


class Recorder(keras.callbacks.Callback):
    """Per fit(): starting weights, optimizer slots at the first step, rates."""

    def __init__(self):
        super().__init__()
        self.starts, self.slot_max, self.lrs = [], [], []

    def on_train_begin(self, logs=None):
        self.starts.append([np.array(w) for w in self.model.get_weights()])
        self._first = True

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        if self._first:
            slots = [
                float(np.max(np.abs(keras.ops.convert_to_numpy(v))))
                for v in optimizer.variables
                if v.name not in ("iteration", "learning_rate") and np.prod(v.shape) > 0
            ]
            self.slot_max.append(max(slots, default=0.0))
            self._first = False
        step = int(keras.ops.convert_to_numpy(optimizer.iterations))
        self.lrs.append((step, float(keras.ops.convert_to_numpy(optimizer.learning_rate))))


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@functools.cache
def _tiny():
    ds = data.synthetic(num_classes=3, input_shape=(8, 8, 3), num_train=48, num_test=24, validation_size=0, seed=0)
    source = small_resnet((8, 8, 3), num_classes=4, stages=(1, 1), width=4, seed=1)
    return ds, source


@pytest.fixture(scope="module")
def tiny():
    return _tiny()


def _cyclic(method, tiny, **kwargs):
    ds, source = tiny
    recorder = Recorder()
    keras.utils.set_random_seed(0)
    members, record = getattr(transfer, method)(
        source, ds, num_members=3, epochs=2, lr=0.05, fge_lr=0.1, fge_epochs=1,
        **FAST, callbacks=[recorder], seed=3, **kwargs,
    )
    return method, members, record, recorder


@functools.cache
def _plain_cyclic(method):
    return _cyclic(method, _tiny())


@pytest.fixture(scope="module", params=["star_sse", "sse"])
def cyclic_run(request):
    return _plain_cyclic(request.param)


def test_cycle_starting_points(cyclic_run, tiny):
    method, members, record, recorder = cyclic_run
    assert [m["status"] for m in record["members"]] == ["ok"] * 3
    assert len(members) == 3 and len(recorder.starts) == 3
    # Member 1 starts from the pre-trained backbone (head replaced).
    backbone = tiny[1].get_weights()[:-2]
    assert _same(recorder.starts[0][:-2], backbone)
    for k in (1, 2):
        parent = members[0] if method == "star_sse" else members[k - 1]
        assert _same(recorder.starts[k], parent.get_weights())
    assert not _same(members[1].get_weights(), members[2].get_weights())
    expected = ["pretrained", "member 1", "member 1"] if method == "star_sse" else ["pretrained", "member 1", "member 2"]
    assert [m["start_from"] for m in record["members"]] == expected


def test_optimizer_state_is_zero_at_every_cycle_start(cyclic_run):
    _, _, _, recorder = cyclic_run
    assert recorder.slot_max == [0.0, 0.0, 0.0]


def test_schedule_equals_closed_form(cyclic_run):
    _, _, record, recorder = cyclic_run
    settings = record["settings"]
    first, cycle = settings["first_steps"], settings["cycle_steps"]
    assert (first, cycle) == (6, 3)  # 48 examples / 16 = 3 steps per epoch
    steps = np.array([s for s, _ in recorder.lrs])
    np.testing.assert_array_equal(steps, np.arange(first + 2 * cycle))
    expected = restart_cosine_lr(steps, 0.1, cycle, first_cycle_steps=first, first_peak_lr=0.05)
    np.testing.assert_allclose([lr for _, lr in recorder.lrs], expected, rtol=1e-5, atol=1e-8)
    assert expected[first] == pytest.approx(0.1) and expected[0] == pytest.approx(0.05)


def test_record_scores_and_times(cyclic_run):
    _, _, record, _ = cyclic_run
    ensemble = record["ensemble"]
    for key in ("avg_member_accuracy", "accuracy", "nll", "calibrated_nll", "diversity"):
        assert np.isfinite(ensemble[key])
    member_acc = [m["accuracy"] for m in record["members"]]
    assert ensemble["avg_member_accuracy"] == pytest.approx(np.mean(member_acc))
    assert all(m["wall_s"] > 0 and m["cpu_s"] > 0 for m in record["members"])
    assert record["num_failed"] == 0


def test_local_and_global_de_starting_points(tiny):
    ds, source = tiny
    other = small_resnet((8, 8, 3), num_classes=4, stages=(1, 1), width=4, seed=2)
    assert not _same(other.get_weights(), source.get_weights())
    recorder = Recorder()
    members, record = transfer.local_de(source, ds, num_members=2, epochs=0.4, lr=0.05, **FAST, callbacks=[recorder])
    heads = [start[-2] for start in recorder.starts]
    for start in recorder.starts:
        assert _same(start[:-2], source.get_weights()[:-2])
    assert not np.array_equal(heads[0], heads[1])
    assert record["members"][0]["data_seed"] != record["members"][1]["data_seed"]
    assert not _same(members[0].get_weights(), members[1].get_weights())

    recorder = Recorder()
    _, record = transfer.global_de([source, lambda: other], ds, epochs=0.4, lr=0.05, **FAST, callbacks=[recorder])
    assert _same(recorder.starts[0][:-2], source.get_weights()[:-2])
    assert _same(recorder.starts[1][:-2], other.get_weights()[:-2])
    assert [m["start_from"] for m in record["members"]] == ["pretrained[0]", "pretrained[1]"]


@pytest.mark.parametrize("bn_update", [False, True])
def test_peft_star_sse_leaves_frozen_stages_bit_identical(tiny, bn_update):
    ds, source = tiny
    members, record = transfer.star_sse(
        source, ds, num_members=2, epochs=1, lr=0.05, fge_lr=0.1, fge_epochs=1,
        **FAST, trainable="last_k_stages", last_k=1, bn_update=bn_update,
    )
    first, spoke = members
    for layer in first.layers:
        a, b = layer.get_weights(), spoke.get_layer(layer.name).get_weights()
        if not a:
            continue
        if layer.name.startswith(("stem_", "stage1_")):
            assert _same(a, b), layer.name  # BN moving statistics included
        elif layer.name.startswith("stage2_block1_conv") or layer.name == "head":
            assert not _same(a, b), layer.name
    full, cycle = (m["trainable_params"] for m in record["members"])
    assert 0 < cycle < full


def test_set_trainable_head_and_bad_arguments(tiny):
    model = transfer_model(tiny[1], 3)
    head_params = transfer.set_trainable(model, "head")
    assert head_params == 3 * (8 + 1)  # width 4 doubles once
    assert [layer.name for layer in model.layers if layer.trainable] == ["head"]
    assert list(transfer.model_stages(model)) == [1, 2]
    with pytest.raises(ValueError, match="last_k"):
        transfer.set_trainable(model, "last_k_stages", last_k=3)
    with pytest.raises(ValueError, match="trainable"):
        transfer.set_trainable(model, "some")


def test_diverged_member_is_failed_and_excluded(tiny):
    ds, source = tiny
    messages = []
    members, record = transfer.star_sse(
        source, ds, num_members=2, epochs=1, lr=0.05, fge_lr=1e9, fge_epochs=1,
        **FAST, log=messages.append,
    )
    statuses = [m["status"] for m in record["members"]]
    assert statuses == ["ok", "failed"] and len(members) == 1
    assert "diverged" in record["members"][1]["message"] and record["members"][1]["accuracy"] is None
    assert any("diverged" in m for m in messages)
    assert record["num_failed"] == 1
    assert record["ensemble"]["accuracy"] == pytest.approx(record["members"][0]["accuracy"])
    assert record["ensemble"]["diversity"] == 0.0


def test_transfer_batches_are_seeded_and_cover_the_data():
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    y = np.arange(10)
    batches = transfer.TransferBatches(x, y, batch_size=4, num_steps=5, seed=0)
    seen = np.concatenate([batches[i][1] for i in range(len(batches))])
    assert len(seen) == 20 and sorted(seen[:10]) == list(range(10))
    again = transfer.TransferBatches(x, y, batch_size=4, num_steps=5, seed=0)
    np.testing.assert_array_equal(again.order, batches.order)
    assert transfer.steps_for(0.5, 10, 4) == 2 and transfer.steps_for(2, 10, 4) == 6


def test_small_resnet_and_transfer_model_structure():
    model = small_resnet((8, 8, 3), num_classes=5, depth=14, width=4, seed=0)
    assert model.output_shape == (None, 5)
    assert list(transfer.model_stages(model)) == [1, 2, 3]
    assert _same(model.get_weights(), small_resnet((8, 8, 3), num_classes=5, depth=14, width=4, seed=0).get_weights())
    target = transfer_model(model, 2, head_seed=0)
    assert target.get_layer("head").units == 2
    # The backbone was copied: changing the target leaves the source intact.
    target.get_layer("stem_conv").set_weights([np.zeros_like(w) for w in target.get_layer("stem_conv").get_weights()])
    assert np.any(model.get_layer("stem_conv").get_weights()[0] != 0)
    with pytest.raises(ValueError, match="depth"):
        small_resnet(depth=9)


def test_resnet50_backbone_structure():
    backbone = resnet50_backbone((32, 32, 3), weights=None)
    assert backbone.output_shape == (None, 2048)
    assert list(transfer.model_stages(backbone)) == [1, 2, 3, 4, 5]
    assert backbone.get_layer("imagenet_preprocess").trainable is False
    pixel = np.ones((1, 1, 1, 3), np.float32) * np.array([1.0, 0.5, 0.0], np.float32)
    layer = backbone.get_layer("imagenet_preprocess")
    out = keras.ops.convert_to_numpy(layer(pixel))[0, 0, 0]
    np.testing.assert_allclose(out, [0 - 103.939, 127.5 - 116.779, 255 - 123.68], rtol=1e-5)
    model = transfer_model(backbone, 10, copy=False)
    assert model.output_shape == (None, 10)


@pytest.mark.slow
def test_resnet50_one_train_step():
    start = time.time()
    model = transfer_model(resnet50_backbone((32, 32, 3), weights=None), 3, copy=False)
    model.compile(keras.optimizers.SGD(0.001, momentum=0.9), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    history = model.fit(x, np.array([0, 1]), epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert time.time() - start < 300


def test_set_trainable_keeps_layers_frozen_by_construction(tiny):
    # e.g. ResNet50's fixed ImageNet preprocessing: "all" must not unfreeze it.
    model = transfer_model(tiny[1], 3)
    fixed = model.layers[1]
    fixed.trainable = False
    for mode in ("head", "all", "last_k_stages"):
        transfer.set_trainable(model, mode, last_k=1)
        assert not fixed.trainable, mode
    assert transfer._snapshot(model).layers[1].trainable is False
    assert model.layers[-1].trainable  # the head is trainable in every mode


# === Fresh BatchNormalization statistics (`bn_update`) ===


def _moving_statistics(model):
    """Positions of the BatchNormalization moving means and variances in `get_weights()`."""
    moving = {id(v) for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
              for v in (layer.moving_mean, layer.moving_variance)}
    return [i for i, v in enumerate(model.weights) if id(v) in moving]


def _assert_fresh_statistics(plain, fresh, ds):
    """`fresh` is `plain` (the same trained model) with statistics recomputed on the training images."""
    moving = _moving_statistics(plain)
    a, b = plain.get_weights(), fresh.get_weights()
    assert [i for i in range(len(a)) if not np.array_equal(a[i], b[i])] == moving
    # The stem's statistics from its inputs, computed directly (no normalisation upstream).
    stem = keras.Model(fresh.input, fresh.get_layer("stem_bn").input)
    inputs = np.asarray(keras.ops.convert_to_numpy(stem(ds.x_train, training=True)), np.float64)
    bn = fresh.get_layer("stem_bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), inputs.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), inputs.var(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    # Every layer's, as the recomputation on a copy of the trained model.
    reference = keras.models.clone_model(plain)
    reference.set_weights(a)
    recompute_batchnorm_statistics(reference, ds.x_train, BATCH)
    for i in moving:
        np.testing.assert_allclose(b[i], reference.get_weights()[i], rtol=1e-5, atol=1e-6)


# Both methods share the option's code; the second runs with `-m slow`.
@pytest.mark.parametrize("method", ["star_sse", pytest.param("sse", marks=pytest.mark.slow)])
def test_bn_update_cyclic_members_hold_training_statistics_and_training_is_unchanged(method, tiny):
    _, plain_members, plain_record, plain_recorder = _plain_cyclic(method)
    _, members, record, recorder = _cyclic(method, tiny, bn_update=True)
    # The trained model continues from its own statistics: every cycle starts
    # where it would without the option, with the same schedule.
    assert len(recorder.starts) == len(plain_recorder.starts) == 3
    for a, b in zip(plain_recorder.starts, recorder.starts):
        assert _same(a, b)
    assert recorder.lrs == plain_recorder.lrs
    assert record["settings"]["bn_update"] is True and plain_record["settings"]["bn_update"] is False
    for plain, fresh, entry in zip(plain_members, members, record["members"]):
        _assert_fresh_statistics(plain, fresh, tiny[0])
        assert 0 < entry["bn_update_wall_s"] <= entry["wall_s"]
    assert all("bn_update_wall_s" not in entry for entry in plain_record["members"])


@pytest.mark.parametrize("method", ["local_de", pytest.param("global_de", marks=pytest.mark.slow)])
def test_bn_update_deep_ensemble_members_hold_training_statistics(method, tiny):
    ds, source = tiny
    runs = {}
    for bn_update in (False, True):
        keras.utils.set_random_seed(0)
        if method == "local_de":
            runs[bn_update] = transfer.local_de(source, ds, num_members=1, epochs=0.4, lr=0.05, **FAST, bn_update=bn_update)
        else:
            runs[bn_update] = transfer.global_de([source], ds, epochs=0.4, lr=0.05, **FAST, bn_update=bn_update)
    (plain,), _ = runs[False]
    (fresh,), record = runs[True]
    _assert_fresh_statistics(plain, fresh, ds)
    assert record["settings"]["bn_update"] is True


def test_member_is_a_function_of_its_seed_not_of_pythons_global_random(tiny):
    import random

    ds, source = tiny
    weights = []
    for state in (0, 1):
        keras.utils.set_random_seed(0)
        random.seed(state)
        (member,), _ = transfer.local_de(source, ds, num_members=1, epochs=1, lr=0.05, **FAST, seed=3)
        weights.append(member.get_weights())
    assert _same(*weights)


def test_bn_update_without_batchnorm_gives_identical_members(tiny):
    ds, _ = tiny
    image = keras.Input((8, 8, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv")(image))
    source = keras.Model(image, keras.layers.Dense(4, name="head")(features))
    runs = [transfer.local_de(source, ds, num_members=1, epochs=0.4, lr=0.05, **FAST, bn_update=b) for b in (False, True)]
    (plain,), plain_record = runs[0]
    (member,), record = runs[1]
    assert _same(plain.get_weights(), member.get_weights())
    assert record["members"][0]["accuracy"] == plain_record["members"][0]["accuracy"]


@pytest.mark.parametrize("method", ["local_de", "global_de", "sse", "star_sse"])
@pytest.mark.parametrize("bn_update", ["yes", 1, None])
def test_bn_update_must_be_a_bool(method, bn_update, tiny):
    ds, source = tiny
    args = dict(epochs=1, lr=0.05, **FAST, bn_update=bn_update)
    if method == "global_de":
        call = lambda: transfer.global_de([source], ds, **args)  # noqa: E731
    elif method == "local_de":
        call = lambda: transfer.local_de(source, ds, num_members=1, **args)  # noqa: E731
    else:
        call = lambda: getattr(transfer, method)(source, ds, num_members=2, fge_lr=0.1, fge_epochs=1, **args)  # noqa: E731
    with pytest.raises(ValueError, match=f"Argument `bn_update` must be a bool. Received: bn_update={bn_update!r}"):
        call()
