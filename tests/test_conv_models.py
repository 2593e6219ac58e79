import keras
import numpy as np
import pytest

from supernet.models.thesis_cnn import thesis_cnn
from supernet.models.vgg16 import vgg16
from test_case import assert_saved_model_predicts_same, run_one_fit_step, weights_of

# Thesis Table 2, row by row: (class, filters or units, activation).
CONV, BN, POOL, DROP = (
    keras.layers.Conv2D,
    keras.layers.BatchNormalization,
    keras.layers.MaxPooling2D,
    keras.layers.Dropout,
)
TABLE_2 = (
    [CONV, BN, CONV, BN, POOL, DROP] * 3 + [keras.layers.Flatten, keras.layers.Dense]
)


def _images(n, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 32, 32, 3)).astype("float32")
    y = rng.integers(0, num_classes, size=n).astype("int32")
    return x, y


@pytest.fixture(scope="module")
def cnn():
    keras.utils.set_random_seed(0)
    return thesis_cnn()


def test_thesis_cnn_matches_table_2(cnn):
    assert [type(layer) for layer in cnn.layers] == TABLE_2
    convs = [layer for layer in cnn.layers if isinstance(layer, CONV)]
    assert [c.filters for c in convs] == [32, 32, 64, 64, 128, 128]
    assert {c.kernel_size for c in convs} == {(3, 3)}
    assert {c.activation.__name__ for c in convs} == {"elu"}
    assert [layer.rate for layer in cnn.layers if isinstance(layer, DROP)] == [0.2, 0.3, 0.4]
    assert {layer.pool_size for layer in cnn.layers if isinstance(layer, POOL)} == {(2, 2)}
    # Each convolution feeds its own BatchNormalization.
    assert all(isinstance(cnn.layers[cnn.layers.index(c) + 1], BN) for c in convs)
    head = cnn.layers[-1]
    assert head.units == 10 and head.activation.__name__ == "softmax"
    assert cnn.get_layer("flatten").output.shape == (None, 4 * 4 * 128)


def test_thesis_cnn_l2_on_every_convolution(cnn):
    convs = [layer for layer in cnn.layers if isinstance(layer, CONV)]
    assert all(isinstance(c.kernel_regularizer, keras.regularizers.L2) for c in convs)
    assert all(np.isclose(c.kernel_regularizer.l2, 1e-4) for c in convs)
    assert cnn.layers[-1].kernel_regularizer is None
    assert len(cnn.losses) == 6
    kernel = keras.ops.convert_to_numpy(convs[0].kernel)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(cnn.losses[0]), 1e-4 * np.sum(kernel**2), rtol=1e-5
    )
    assert thesis_cnn(l2=0).losses == []


@pytest.mark.parametrize("num_classes", [10, 100])
def test_thesis_cnn_builds(num_classes):
    model = thesis_cnn(num_classes=num_classes)
    assert model.output_shape == (None, num_classes)
    convs = sum(9 * c_in * c_out + c_out for c_in, c_out in [(3, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)])
    batchnorm = 4 * (32 + 32 + 64 + 64 + 128 + 128)  # gamma, beta, moving mean, var
    dense = (4 * 4 * 128 + 1) * num_classes
    assert model.count_params() == convs + batchnorm + dense


def test_thesis_cnn_one_fit_step_and_save_load(cnn, tmp_path):
    x, y = _images(16, 10)
    # Eager: tracing the train step would dominate this one-step test.
    cnn.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
    before = weights_of(cnn)
    history = run_one_fit_step(cnn, x, y)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, weights_of(cnn)))
    assert_saved_model_predicts_same(cnn, x[:4], tmp_path)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"l2": -1.0}, "l2"),
        ({"input_shape": (4, 4, 3)}, "input_shape"),
        ({"bn_momentum": 1.0}, "bn_momentum"),
        ({"bn_momentum": 0.0}, "bn_momentum"),
    ],
)
def test_thesis_cnn_bad_args(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        thesis_cnn(**kwargs)


@pytest.mark.parametrize("build", [thesis_cnn, lambda **kw: vgg16(dense_units=8, **kw)])
@pytest.mark.parametrize("momentum", [None, 0.9])
def test_bn_momentum_reaches_every_batchnorm(build, momentum):
    model = build() if momentum is None else build(bn_momentum=momentum)
    norms = [layer for layer in model.layers if isinstance(layer, BN)]
    assert norms and {layer.momentum for layer in norms} == {0.99 if momentum is None else momentum}


@pytest.fixture(scope="module")
def vgg():
    keras.utils.set_random_seed(0)
    return vgg16(num_classes=100, dense_units=64)


def test_vgg16_has_13_convolutions_with_batchnorm_and_relu(vgg):
    convs = [layer for layer in vgg.layers if isinstance(layer, CONV)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256, 256] + [512] * 6
    for conv in convs:
        i = vgg.layers.index(conv)
        assert isinstance(vgg.layers[i + 1], BN)
        assert vgg.layers[i + 2].activation.__name__ == "relu"
        assert isinstance(conv.kernel_regularizer, keras.regularizers.L2)
    assert sum(isinstance(layer, POOL) for layer in vgg.layers) == 5
    assert vgg.get_layer("flatten").output.shape == (None, 512)
    head = vgg.layers[-1]
    assert head.units == 100 and head.activation.__name__ == "softmax"
    assert [layer.rate for layer in vgg.layers if isinstance(layer, DROP)] == [0.5, 0.5]


def test_vgg16_one_train_step(vgg):
    # Its `.keras` round trip is in test_serialization.
    x, y = _images(4, 100)
    vgg.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", run_eagerly=True)
    before = weights_of(vgg)
    history = run_one_fit_step(vgg, x, y)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, weights_of(vgg)))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"input_shape": (16, 16, 3)}, "input_shape"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_classes": 0}, "num_classes"),
        ({"bn_momentum": -0.1}, "bn_momentum"),
    ],
)
def test_vgg16_bad_args(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        vgg16(**kwargs)


def test_thesis_cnn_mixed_precision_keeps_float32_weights_and_softmax(tmp_path):
    keras.utils.set_random_seed(0)
    model = thesis_cnn(input_shape=(8, 8, 3), num_classes=3, dtype="mixed_bfloat16")
    assert {layer.compute_dtype for layer in model.layers[:-1]} == {"bfloat16"}
    assert model.layers[-1].compute_dtype == "float32"
    assert {w.dtype for w in model.weights} == {"float32"}
    x, _ = _images(4, 3)
    x = x[:, :8, :8]
    probs = model.predict(x, verbose=0)
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert_saved_model_predicts_same(model, x, tmp_path)
    # The default follows the global policy, here float32.
    assert {layer.compute_dtype for layer in thesis_cnn(input_shape=(8, 8, 3)).layers} == {"float32"}
