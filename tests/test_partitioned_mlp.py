import keras
import numpy as np
import pytest
import tensorflow as tf

from supernet import metrics
from supernet.layers import ByteDropout, GroupedDense
from supernet.losses import MemberwiseCrossentropy
from supernet.models import PartitionedMLP, build_supernet, mlp, mlp_params, partition_widths, scale_widths
from test_case import (
    assert_config_round_trip,
    assert_saved_model_predicts_same,
    assert_weights_equal,
    run_one_fit_step,
    seeded_data,
    weights_of,
)

D, C = 20, 5
UNIFORM = [16, 8]
RAGGED = [[16, 8], [8, 4], [12, 16]]


def _randomize_biases(model, seed=0):
    """Nonzero biases everywhere, so bias slicing bugs cannot hide behind zeros."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, (GroupedDense, keras.layers.Dense)):
            kernel, bias = layer.get_weights()
            if isinstance(layer, GroupedDense):
                mask = layer._mask[:, 0, :] if layer.ragged else np.ones_like(bias)
            else:
                mask = np.ones_like(bias)
            layer.set_weights([kernel, (0.3 * rng.normal(size=bias.shape) * mask).astype("float32")])


def _fused(hidden_units=UNIFORM, num_members=3, **kwargs):
    keras.utils.set_random_seed(0)
    model = PartitionedMLP(D, hidden_units, C, num_members=num_members, **kwargs)
    _randomize_biases(model)
    return model


def _predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


# === Fused model equals K separate MLPs ===


@pytest.mark.parametrize("hidden_units", [UNIFORM, RAGGED], ids=["uniform", "ragged"])
def test_members_export_reproduces_fused_predictions(hidden_units):
    x, _ = seeded_data(d=D, classes=C)
    model = _fused(hidden_units)
    members = model.members()
    assert len(members) == 3 and all(isinstance(m, keras.Sequential) for m in members)
    fused = _predict(model, x)
    assert fused.shape == (64, 3, C)
    widths = RAGGED if hidden_units is RAGGED else [UNIFORM] * 3
    for k, member in enumerate(members):
        dense = [layer for layer in member.layers if isinstance(layer, keras.layers.Dense)]
        assert [layer.units for layer in dense] == widths[k] + [C]
        np.testing.assert_allclose(_predict(member, x), fused[:, k], atol=1e-6)


def _sgd():
    return keras.optimizers.SGD(0.1, momentum=0.9)


def _adam():
    return keras.optimizers.Adam(0.01)


@pytest.mark.parametrize(
    "make_optimizer, hidden_units, l2",
    [
        (_sgd, UNIFORM, 0.0),
        (_sgd, RAGGED, 0.01),
        (_adam, UNIFORM, 0.01),
        (_adam, RAGGED, 0.0),
    ],
    ids=["sgd-uniform", "sgd-ragged-l2", "adam-uniform-l2", "adam-ragged"],
)
def test_training_steps_equal_separate_member_training(make_optimizer, hidden_units, l2):
    x, y = seeded_data(d=D, classes=C)
    model = _fused(hidden_units, l2=l2)
    members = model.members()
    initial = weights_of(members[0])
    # Eager steps: tracing a train function per model costs more than the step.
    model.compile(make_optimizer(), run_eagerly=True)
    run_one_fit_step(model, x, y, epochs=2)  # 2 steps: momentum/Adam state matters
    for member in members:
        member.compile(make_optimizer(), "sparse_categorical_crossentropy", run_eagerly=True)
        run_one_fit_step(member, x, y, epochs=2)
    trained = model.members()
    fused = _predict(model, x)
    for k, (member, exported) in enumerate(zip(members, trained)):
        for w_sep, w_fused in zip(weights_of(member), weights_of(exported)):
            np.testing.assert_allclose(w_fused, w_sep, atol=1e-5)
        np.testing.assert_allclose(fused[:, k], _predict(member, x), atol=1e-5)
    assert_weights_equal(initial, weights_of(trained[0]), equal=False)


def test_l2_penalty_is_sum_of_member_penalties():
    model = _fused(RAGGED, l2=0.01)
    fused_penalty = float(sum(keras.ops.convert_to_numpy(v) for v in model.losses))
    member_penalty = sum(
        float(sum(keras.ops.convert_to_numpy(v) for v in member.losses)) for member in model.members()
    )
    assert fused_penalty > 0
    assert fused_penalty == pytest.approx(member_penalty, rel=1e-5)


def test_compile_default_metrics_match_numpy():
    x, y = seeded_data(d=D, classes=C)
    model = _fused(RAGGED)
    model.compile(keras.optimizers.SGD(0.0))
    results = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    probs = _predict(model, x)
    losses = -np.log(probs[np.arange(len(y)), :, y]).sum(axis=1).mean()
    member_acc = np.mean([metrics.accuracy(y, probs[:, k]) for k in range(3)])
    vote_acc = metrics.accuracy(y, probs.mean(axis=1))
    assert results["loss"] == pytest.approx(losses, rel=1e-5)
    assert results["member_accuracy"] == pytest.approx(member_acc, abs=1e-6)
    assert results["vote_accuracy"] == pytest.approx(vote_acc, abs=1e-6)


# === No gradient crosses members ===


def test_perturbing_one_member_leaves_others_unchanged():
    x, _ = seeded_data(d=D, classes=C)
    model = _fused(RAGGED)
    before = _predict(model, x)
    rng = np.random.default_rng(5)
    for layer in model.hidden_layers + [model.get_layer("member_outputs")]:
        kernel, bias = layer.get_weights()
        kernel[0] += rng.normal(size=kernel[0].shape).astype("float32")
        bias[0] += 1.0
        layer.set_weights([kernel, bias])
    after = _predict(model, x)
    assert not np.allclose(after[:, 0], before[:, 0])
    np.testing.assert_array_equal(after[:, 1:], before[:, 1:])


def test_member_zero_loss_has_zero_gradient_for_other_members():
    x, y = seeded_data(d=D, classes=C)
    model = _fused(RAGGED)
    grouped = model.hidden_layers + [model.get_layer("member_outputs")]
    variables = [v for layer in grouped for v in (layer.kernel, layer.bias)]
    with tf.GradientTape() as tape:
        probs = model(x, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(y, probs[:, 0])
        loss = tf.reduce_mean(loss)
    grads = [g.numpy() for g in tape.gradient(loss, variables)]
    for g in grads:
        assert np.all(g[1:] == 0.0)
    assert all(np.any(g[0] != 0.0) for g in grads)


# === from_members ===


@pytest.mark.parametrize("widths", [[[8, 8]] * 3, [[8, 4], [16, 8], [4, 12]]], ids=["uniform", "ragged"])
def test_from_members_reproduces_member_predictions(widths):
    x, _ = seeded_data(d=D, classes=C)
    keras.utils.set_random_seed(1)
    members = [mlp(D, w, C, dropout=0.25, l2=0.001) for w in widths]
    for k, member in enumerate(members):
        _randomize_biases(member, seed=k)
    fused = PartitionedMLP.from_members(members)
    assert fused.num_members == 3
    assert fused.dropout_rates == [0.25, 0.25]
    assert fused.member_widths == widths
    out = _predict(fused, x)
    for k, member in enumerate(members):
        np.testing.assert_allclose(out[:, k], _predict(member, x), atol=1e-6)


def test_from_members_round_trips_through_members():
    x, _ = seeded_data(d=D, classes=C)
    model = _fused(RAGGED)
    refused = PartitionedMLP.from_members(model.members())
    np.testing.assert_allclose(_predict(refused, x), _predict(model, x), atol=1e-6)


# === partition_widths ===


@pytest.mark.parametrize(
    "widths, k, expected",
    [([1200, 2800, 2800], 6, [200, 466, 466]), ([10, 7], 1, [10, 7]), ([10, 7], 3, [3, 2])],
)
def test_partition_widths(widths, k, expected):
    assert partition_widths(widths, k) == expected


@pytest.mark.parametrize("widths, k", [([10], 0), ([4, 10], 5)])
def test_partition_widths_bad_arguments(widths, k):
    with pytest.raises(ValueError, match="num_members"):
        partition_widths(widths, k)


# === mlp_params / scale_widths ===


@pytest.mark.parametrize("hidden_units, k", [([7], 1), ([5, 3], 1), ([5, 3], 4), ([6, 4, 2], 3)])
def test_mlp_params_counts_the_built_models(hidden_units, k):
    expected = mlp_params(9, hidden_units, 4, num_members=k)
    merged = PartitionedMLP(9, hidden_units, 4, num_members=k, head="merged")
    merged.build((None, 9))
    assert merged.count_params() == expected
    members = [mlp(9, hidden_units, 4) for _ in range(k)]
    assert build_supernet(members).count_params() == expected
    if k == 1:
        assert members[0].count_params() == expected


def _nearest_count_by_enumeration(widths, target, input_dim, num_classes, k):
    """The count nearest `target` over every width vector round(s * w / k) can take."""
    # round(s * w / k) steps at s = (n + 0.5) * k / w: evaluate just past every step.
    steps = sorted({(n + 0.5) * k / w for w in widths for n in range(0, 400)})
    counts = [mlp_params(input_dim, [max(1, int(round(s * (1 + 1e-9) * w / k))) for w in widths], num_classes, k)
              for s in [steps[0] / 2, *steps]]
    return min(abs(c - target) for c in counts)


@pytest.mark.parametrize("widths, target, k", [([8, 4], 5_000, 1), ([8, 4], 5_000, 3), ([3, 7, 7], 20_000, 6), ([10], 123, 2)])
def test_scale_widths_finds_the_nearest_count(widths, target, k):
    result = scale_widths(widths, target, input_dim=30, num_classes=5, num_members=k)
    assert result.params == mlp_params(30, result.widths, 5, num_members=k)
    assert result.widths == [max(1, int(round(result.scale * w / k))) for w in widths]
    assert abs(result.params - target) == _nearest_count_by_enumeration(widths, target, 30, 5, k)


def test_scale_widths_matches_the_thesis_pairing():
    """Thesis Table 8's largest pair: 554-1292-1292 and 6 x 200-466-466, both ~2.84M parameters."""
    single = scale_widths([45, 105, 105], 2_837_000, input_dim=784, num_classes=10)
    members = scale_widths(single.widths, single.params, input_dim=784, num_classes=10, num_members=6)
    assert (single.widths, members.widths) == ([554, 1292, 1292], [200, 466, 466])
    assert abs(members.params / single.params - 1) < 0.001


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(widths=[], target_params=10), "widths"),
        (dict(widths=[4, 0], target_params=10), "widths"),
        (dict(widths=[4], target_params=0), "target_params"),
        (dict(widths=[4], target_params=10, num_members=0), "num_members"),
        (dict(widths=[4], target_params=10, input_dim=0), "input_dim"),
    ],
)
def test_scale_widths_bad_arguments(kwargs, match):
    kwargs = {"input_dim": 3, "num_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        scale_widths(kwargs.pop("widths"), kwargs.pop("target_params"), **kwargs)


# === Merged head ===


def test_byte_dropout_masks_change_only_the_dropout_layers():
    x, y = seeded_data(d=D, classes=C)
    floats = _fused(RAGGED, dropout=[0.1, 0.3])
    fast = _fused(RAGGED, dropout=[0.1, 0.3], dropout_masks="bytes")
    dropouts = [layer for layer in fast.layers if isinstance(layer, ByteDropout)]
    assert [layer.applied_rate for layer in dropouts] == [26 / 256, 77 / 256]
    np.testing.assert_array_equal(_predict(fast, x), _predict(floats, x))
    fast.compile(keras.optimizers.Adam(0.01))
    before = _predict(fast, x)
    run_one_fit_step(fast, x, y)
    assert not np.array_equal(_predict(fast, x), before)


def test_merged_head_shape_and_training():
    x, y = seeded_data(d=D, classes=C)
    model = _fused(RAGGED, head="merged")
    out = _predict(model, x)
    assert out.shape == (64, C)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=1e-5)
    head = model.get_layer("supernet_head")
    assert tuple(head.kernel.shape) == (3 * 16, C)
    model.compile(keras.optimizers.Adam(0.01))
    before = weights_of(model)
    losses = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history["loss"]
    assert_weights_equal(before, weights_of(model), equal=False)
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="merged"):
        model.member(0)


# === Serialization ===


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(hidden_units=UNIFORM, num_members=3),
        dict(hidden_units=RAGGED, dropout=[0.1, 0.2], l2=[0.0, 0.01, 0.02], seed=3),
        dict(hidden_units=UNIFORM, num_members=2, head="merged", activation="tanh"),
        dict(hidden_units=UNIFORM, num_members=2, dropout=0.2, dropout_masks="bytes"),
    ],
    ids=["uniform", "ragged", "merged", "byte-dropout"],
)
def test_config_round_trip(kwargs):
    model = PartitionedMLP(D, num_classes=C, **kwargs)
    clone = assert_config_round_trip(model)
    assert clone.member_widths == model.member_widths
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in model.weights]


@pytest.mark.parametrize("kwargs", [dict(), dict(head="merged", dropout=0.2)], ids=["members", "merged"])
def test_save_load_identical_predictions(kwargs, tmp_path):
    x, y = seeded_data(d=D, classes=C)
    model = _fused(RAGGED, **kwargs)
    model.compile(keras.optimizers.Adam(0.01))
    run_one_fit_step(model, x, y)
    loaded = assert_saved_model_predicts_same(model, x, tmp_path)
    assert isinstance(loaded, PartitionedMLP)
    assert loaded.get_config() == model.get_config()
    if model.head == "members":
        assert isinstance(loaded.loss, MemberwiseCrossentropy)
    if not model.dropout:  # dropout masks would differ between the two copies
        # The restored optimizer state continues training identically.
        run_one_fit_step(model, x, y)
        run_one_fit_step(loaded, x, y)
        np.testing.assert_allclose(_predict(loaded, x), _predict(model, x), atol=1e-6)


# === Bad arguments ===


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(num_members=0), "num_members"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(dropout=[0.1]), "dropout"),
        (dict(l2=-1.0), "l2"),
        (dict(head="x"), "head"),
        (dict(dropout_masks="ints"), "dropout_masks"),
        (dict(hidden_units=[]), "hidden_units"),
        (dict(hidden_units=[[8], [8, 8]]), "depth"),
        (dict(num_classes=1), "num_classes"),
        (dict(input_dim=0), "input_dim"),
    ],
)
def test_bad_arguments(kwargs, argument):
    args = dict(input_dim=D, hidden_units=UNIFORM, num_classes=C)
    args.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        PartitionedMLP(**args)


def test_from_members_bad_arguments():
    with pytest.raises(ValueError, match="members"):
        PartitionedMLP.from_members([])
    with pytest.raises(ValueError, match="depth"):
        PartitionedMLP.from_members([mlp(D, [8], C), mlp(D, [8, 8], C)])
    with pytest.raises(ValueError, match="num_classes"):
        PartitionedMLP.from_members([mlp(D, [8], C), mlp(D, [8], C + 1)])
    with pytest.raises(ValueError, match="input_dim"):
        PartitionedMLP.from_members([mlp(D, [8], C), mlp(D + 1, [8], C)])
    linear = keras.Sequential([keras.Input((D,)), keras.layers.Dense(8), keras.layers.Dense(C)])
    with pytest.raises(ValueError, match="softmax"):
        PartitionedMLP.from_members([linear])


def test_member_index_out_of_range():
    model = _fused()
    for index in (-1, 3):
        with pytest.raises(ValueError, match="index"):
            model.member(index)
