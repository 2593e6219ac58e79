import keras
import numpy as np
import pytest
from scipy import special

from supernet.layers import ByteDropout, FrozenModel, GroupedDense, SwapMemberAxis
from test_case import (
    assert_config_round_trip,
    assert_saved_model_predicts_same,
    assert_weights_equal,
    run_one_fit_step,
    seeded_data,
    weights_of,
)

_NUMPY_ACTIVATIONS = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": special.expit,
    "softmax": lambda z: special.softmax(z, axis=-1),
}


def _randomize(layer, seed):
    """Random kernel and bias (the default zero bias would hide bias bugs)."""
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.weights])


def _loop_reference(x, kernel, bias, units, input_units, activation):
    """Each member as its own numpy Dense layer, padded to max(units)."""
    k_members = kernel.shape[0]
    out = np.zeros((x.shape[0], k_members, kernel.shape[2]))
    for k in range(k_members):
        n_in = x.shape[-1] if input_units is None else input_units[k]
        x_k = x if x.ndim == 2 else x[:, k]
        z = x_k[:, :n_in] @ kernel[k, :n_in, : units[k]] + bias[k, : units[k]]
        out[:, k, : units[k]] = _NUMPY_ACTIVATIONS[activation](z)
    return out


# === GroupedDense ===


@pytest.mark.parametrize("grouped_input", [False, True], ids=["shared", "grouped"])
@pytest.mark.parametrize("activation", ["linear", "relu", "softmax"])
def test_grouped_dense_equals_loop_over_members(grouped_input, activation):
    x, _ = seeded_data(n=8, d=6)
    if grouped_input:
        x = np.random.default_rng(1).normal(size=(8, 3, 6)).astype("float32")
    layer = GroupedDense(num_members=3, units=4, activation=activation)
    layer.build(x.shape)
    _randomize(layer, seed=2)
    kernel, bias = weights_of(layer)
    assert kernel.shape == (3, 6, 4) and bias.shape == (3, 4)
    expected = _loop_reference(x, kernel, bias, [4] * 3, None, activation)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), expected, atol=1e-5)


@pytest.mark.parametrize(
    "activation",
    [
        "linear",
        "relu",
        "tanh",
        "sigmoid",
        "softmax",
    ],
)
def test_grouped_dense_ragged_equals_loop_and_padding_is_zero(activation):
    units, input_units = [2, 4, 3], [5, 3, 6]
    x = np.random.default_rng(0).normal(size=(8, 3, 6)).astype("float32")
    layer = GroupedDense(3, units, input_units=input_units, activation=activation)
    layer.build(x.shape)
    _randomize(layer, seed=3)  # nonzero padded entries: the mask must hide them
    kernel, bias = weights_of(layer)
    out = keras.ops.convert_to_numpy(layer(x))
    expected = _loop_reference(x, kernel, bias, units, input_units, activation)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    for k, n_out in enumerate(units):
        assert np.all(out[:, k, n_out:] == 0.0)


@pytest.mark.parametrize("input_layout", ["shared", "batch_major", "member_major"])
@pytest.mark.parametrize("output_layout", ["batch_major", "member_major"])
@pytest.mark.parametrize("ragged", [False, True], ids=["equal", "ragged"])
@pytest.mark.parametrize("activation", ["relu", "softmax"])
def test_grouped_dense_layouts_equal_loop_over_members(input_layout, output_layout, ragged, activation):
    units, input_units = ([2, 4, 3], [5, 3, 6]) if ragged else ([4] * 3, None)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6) if input_layout == "shared" else (8, 3, 6)).astype("float32")
    if input_layout == "shared":
        input_units = None
    layer = GroupedDense(
        3, units, input_units=input_units, activation=activation,
        input_layout="batch_major" if input_layout == "shared" else input_layout,
        output_layout=output_layout,
    )
    inputs = np.swapaxes(x, 0, 1) if input_layout == "member_major" else x
    layer.build(inputs.shape)
    _randomize(layer, seed=4)
    kernel, bias = weights_of(layer)
    out = keras.ops.convert_to_numpy(layer(inputs))
    assert out.shape == layer.compute_output_shape(inputs.shape)
    if output_layout == "member_major":
        out = np.swapaxes(out, 0, 1)
    expected = _loop_reference(x, kernel, bias, units, input_units, activation)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_member_major_gradients_equal_batch_major():
    x, _ = seeded_data(n=8, d=6)
    layers = {}
    for layout in ("batch_major", "member_major"):
        first = GroupedDense(3, [4, 2, 3], output_layout=layout, activation="relu")
        second = GroupedDense(3, 5, input_units=[4, 2, 3], input_layout=layout, activation="softmax")
        first.build(x.shape)
        second.build(first.compute_output_shape(x.shape))
        _randomize(first, seed=5)
        _randomize(second, seed=6)
        layers[layout] = (first, second)

    import tensorflow as tf  # the test backend; the library itself stays backend-agnostic

    grads = {}
    for layout, (first, second) in layers.items():
        with tf.GradientTape() as tape:
            out = second(first(x))
            loss = keras.ops.sum(keras.ops.log(out[:, :, 0] + 1e-3))
        grads[layout] = [g.numpy() for g in tape.gradient(loss, first.trainable_weights + second.trainable_weights)]
    for a, b in zip(grads["batch_major"], grads["member_major"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_swap_member_axis():
    x = np.arange(24, dtype="float32").reshape(3, 2, 4)
    layer = SwapMemberAxis()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), np.swapaxes(x, 0, 1))
    assert layer.compute_output_shape((3, None, 4)) == (None, 3, 4)
    assert_config_round_trip(layer)


def test_grouped_dense_ragged_padding_stays_zero_after_fit_step():
    x, y = seeded_data(n=16, d=6, classes=4)
    units = [2, 4, 3]
    model = keras.Sequential(
        [
            keras.Input((6,)),
            GroupedDense(3, units, activation="relu", kernel_regularizer="l2", name="g0"),
            GroupedDense(3, 4, input_units=units, activation="softmax", name="g1"),
        ]
    )
    model.compile(keras.optimizers.Adam(0.1), "sparse_categorical_crossentropy")
    y_members = np.repeat(y[:, None], 3, axis=1)
    before = weights_of(model)
    run_one_fit_step(model, x, y_members)
    after = weights_of(model)
    assert_weights_equal(before, after, equal=False)
    kernel0, bias0 = after[0], after[1]
    kernel1 = after[2]
    for k, n in enumerate(units):
        assert np.all(kernel0[k, :, n:] == 0.0)
        assert np.all(bias0[k, n:] == 0.0)
        assert np.all(kernel1[k, n:, :] == 0.0)
        assert np.any(kernel0[k, :, :n] != before[0][k, :, :n])  # active part trained


def test_grouped_dense_kernel_initialized_per_member_with_zero_padding():
    layer = GroupedDense(2, [3, 5], kernel_initializer="ones")
    layer.build((None, 4))
    kernel = weights_of(layer)[0]
    assert np.all(kernel[0, :, :3] == 1.0) and np.all(kernel[0, :, 3:] == 0.0)
    assert np.all(kernel[1] == 1.0)


def test_grouped_dense_output_shape():
    layer = GroupedDense(3, [2, 5, 4])
    assert layer.compute_output_shape((7, 6)) == (7, 3, 5)
    assert tuple(layer(np.zeros((7, 6), "float32")).shape) == (7, 3, 5)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(num_members=3, units=4),
        dict(
            num_members=2,
            units=[3, 5],
            input_units=[6, 2],
            activation="tanh",
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=keras.regularizers.L2(0.01),
            bias_regularizer="l1",
        ),
        dict(num_members=2, units=3, input_layout="member_major", output_layout="member_major"),
    ],
)
def test_grouped_dense_config_round_trip(kwargs):
    layer = GroupedDense(**kwargs, name="gd")
    clone = assert_config_round_trip(layer)
    assert clone.units == layer.units and clone.input_units == layer.input_units
    assert (clone.input_layout, clone.output_layout) == (layer.input_layout, layer.output_layout)


@pytest.mark.parametrize(
    "kwargs, input_shape, argument",
    [
        (dict(num_members=0, units=4), None, "num_members"),
        (dict(num_members=3, units=[4, 4]), None, "units"),
        (dict(num_members=2, units=[4, 0]), None, "units"),
        (dict(num_members=2, units=4, input_units=[1]), None, "input_units"),
        (dict(num_members=2, units=4), (2, 2, 3, 5), "input_shape"),
        (dict(num_members=2, units=4), (2, 3, 5), "num_members"),
        (dict(num_members=2, units=4, input_units=[3, 9]), (2, 2, 5), "input_units"),
        (dict(num_members=2, units=4, input_layout="members_first"), None, "input_layout"),
        (dict(num_members=2, units=4, output_layout="kbo"), None, "output_layout"),
        (dict(num_members=2, units=4, input_layout="member_major"), (5, 3, 5), "num_members"),
    ],
)
def test_grouped_dense_bad_arguments(kwargs, input_shape, argument):
    with pytest.raises(ValueError, match=argument):
        layer = GroupedDense(**kwargs)
        if input_shape is not None:
            layer(np.zeros(input_shape, "float32"))


# === FrozenModel ===


def _dropout_member(d=6, classes=3):
    return keras.Sequential(
        [
            keras.Input((d,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dropout(0.9, seed=0),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )


def test_frozen_model_dropout_inactive_with_training_true():
    x, _ = seeded_data(n=8, d=6)
    member = _dropout_member()
    reference = keras.ops.convert_to_numpy(member(x, training=False))
    assert not np.allclose(keras.ops.convert_to_numpy(member(x, training=True)), reference)
    frozen = FrozenModel(member)
    for training in (True, False):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(frozen(x, training=training)), reference
        )


def test_frozen_model_weights_not_trainable_and_unchanged_by_fit():
    x, y = seeded_data(n=16, d=6, classes=3)
    member = _dropout_member()
    model = keras.Sequential(
        [keras.Input((6,)), FrozenModel(member), keras.layers.Dense(3, activation="softmax")]
    )
    frozen = model.layers[0]
    assert frozen.trainable_weights == []
    assert len(frozen.non_trainable_weights) == len(member.weights) == 4
    assert len(model.trainable_weights) == 2
    before = weights_of(member)
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    run_one_fit_step(model, x, y)
    assert_weights_equal(before, weights_of(member))


def test_frozen_model_batchnorm_statistics_fixed():
    x, y = seeded_data(n=16, d=6, classes=3)
    member = keras.Sequential(
        [keras.Input((6,)), keras.layers.BatchNormalization(), keras.layers.Dense(3)]
    )
    model = keras.Sequential(
        [keras.Input((6,)), FrozenModel(member), keras.layers.Dense(3, activation="softmax")]
    )
    model.compile("sgd", "sparse_categorical_crossentropy")
    before = weights_of(member)
    run_one_fit_step(model, 5.0 + x, y)  # shifted data would move the moving mean
    assert_weights_equal(before, weights_of(member))


def test_frozen_model_config_and_save_load(tmp_path):
    x, _ = seeded_data(n=8, d=6)
    member = _dropout_member()
    model = keras.Sequential([keras.Input((6,)), FrozenModel(member, name="frozen")])
    config = model.layers[0].get_config()
    clone = FrozenModel.from_config(config)
    assert clone.model.trainable is False
    assert [type(layer) for layer in clone.model.layers] == [type(layer) for layer in member.layers]
    loaded = assert_saved_model_predicts_same(model, x, tmp_path)
    assert loaded.layers[0].trainable_weights == []
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x, training=True)), model.predict(x, verbose=0)
    )


@pytest.mark.parametrize("seed", [None, 5])
def test_grouped_dense_members_start_from_different_weights(seed):
    # Keras initializers return identical values on every call: each member
    # must get its own seed, or the "ensemble" starts as K copies of one net.
    layer = GroupedDense(4, 6, kernel_initializer=keras.initializers.GlorotUniform(seed=seed))
    layer.build((None, 5))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    for a in range(4):
        for b in range(a + 1, 4):
            assert not np.allclose(kernel[a], kernel[b])
    limit = np.sqrt(6 / (5 + 6))  # Glorot fans of ONE member, not of the fused tensor
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.5 * limit


# === ByteDropout ===


def _byte_dropout_output(rate, shape=(64, 1001), seed=1):
    layer = ByteDropout(rate, seed=seed)
    return layer, keras.ops.convert_to_numpy(layer(np.ones(shape, "float32"), training=True))


def test_byte_dropout_passes_inputs_unchanged_outside_training():
    x = np.random.default_rng(0).normal(size=(5, 7)).astype("float32")
    layer = ByteDropout(0.3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.5, 0.9])
def test_byte_dropout_drops_each_byte_of_a_word_at_the_applied_rate(rate):
    layer, y = _byte_dropout_output(rate)
    assert layer.applied_rate == round(rate * 256) / 256
    dropped = (y == 0).reshape(-1)
    # Every byte of the random words, not only the low ones, must be uniform:
    # units i, i+4, i+8, ... read byte i % 4 of their words.
    n = dropped.size // 4
    for position in range(4):
        fraction = dropped[position::4].mean()
        assert abs(fraction - layer.applied_rate) < 5 * np.sqrt(layer.applied_rate * (1 - layer.applied_rate) / n)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - layer.applied_rate), rtol=1e-6)


def test_byte_dropout_masks_of_one_word_are_independent():
    layer, y = _byte_dropout_output(0.5, shape=(256, 1024))
    dropped = (y == 0).reshape(-1, 4)  # the 4 units whose bytes share one random word
    p = layer.applied_rate
    for a, b in [(0, 1), (1, 2), (2, 3), (0, 3)]:
        both = np.mean(dropped[:, a] & dropped[:, b])
        assert abs(both - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / len(dropped))


def test_byte_dropout_keeps_the_expected_value():
    _, y = _byte_dropout_output(0.2, shape=(512, 1000))
    assert abs(y.mean() - 1.0) < 0.01


def test_byte_dropout_gradient_is_the_mask_times_the_scale():
    import tensorflow as tf  # the test backend; the library itself stays backend-agnostic

    layer = ByteDropout(0.25, seed=3)
    x = tf.Variable(np.random.default_rng(0).uniform(1.0, 2.0, size=(32, 40)).astype("float32"))
    with tf.GradientTape() as tape:
        y = layer(x, training=True)
        total = tf.reduce_sum(y)
    gradient = tape.gradient(total, x).numpy()
    np.testing.assert_allclose(gradient, y.numpy() / x.numpy(), rtol=1e-6)
    assert np.any(gradient == 0)
    np.testing.assert_allclose(gradient[gradient != 0], 4 / 3, rtol=1e-6)


def test_byte_dropout_masks_follow_the_seed():
    first, second = ByteDropout(0.5, seed=7), ByteDropout(0.5, seed=7)
    x = np.ones((16, 33), "float32")
    a, b = (keras.ops.convert_to_numpy(layer(x, training=True)) for layer in (first, second))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, keras.ops.convert_to_numpy(first(x, training=True)))


@pytest.mark.parametrize("rate", [-0.1, 0.0, 1.0, 0.001, 0.999])
def test_byte_dropout_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        ByteDropout(rate)


def test_byte_dropout_config_round_trip_and_fit_step():
    clone = assert_config_round_trip(ByteDropout(0.2, seed=4, name="bytes"))
    assert clone.applied_rate == 51 / 256
    x, y = seeded_data(n=16, d=6, classes=3)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8), ByteDropout(0.5), keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.1), "sparse_categorical_crossentropy")
    before = weights_of(model)
    run_one_fit_step(model, x, y, batch_size=6)  # a partial last batch: masks of a dynamic shape
    assert_weights_equal(before, weights_of(model), equal=False)
