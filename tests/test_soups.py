"""Model soups and BatchNormalization recomputation, against loops and closed forms."""

import keras
import numpy as np
import pytest

from supernet import soups


def _dense_bn(seed, units=4, inputs=3, classes=3):
    x = keras.Input((inputs,))
    h = keras.layers.Dense(units, kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name="dense")(x)
    h = keras.layers.BatchNormalization(name="bn")(h)
    y = keras.layers.Dense(classes, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 100), name="head")(h)
    return keras.Model(x, y)


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    x = (np.eye(3)[y] * 2.0 + rng.normal(0, 1.0, (90, 3))).astype(np.float32)
    return x, y


def test_uniform_soup_of_identical_models_is_the_model(blobs):
    x, _ = blobs
    model = _dense_bn(0)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    soup = soups.uniform_soup([model, copy, model])
    assert all(np.array_equal(a, b) for a, b in zip(soup.get_weights(), model.get_weights()))
    np.testing.assert_allclose(soup.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_soup_weights_are_the_mean_over_members():
    models = [_dense_bn(seed) for seed in range(3)]
    for k, model in enumerate(models):  # distinct BN statistics too
        bn = model.get_layer("bn")
        bn.moving_mean.assign(np.full(4, float(k), np.float32))
    soup = soups.uniform_soup(models)
    for i, weight in enumerate(soup.get_weights()):
        total = np.zeros_like(weight, dtype=np.float64)
        for model in models:
            total += model.get_weights()[i]
        np.testing.assert_allclose(weight, total / len(models), rtol=1e-6, atol=1e-7)
    assert soup.soup_info["ingredients"] == [0, 1, 2]


@pytest.mark.parametrize("batch_size", [16, 90, 7])
def test_batchnorm_recompute_gives_dataset_statistics(blobs, batch_size):
    x, _ = blobs
    model = _dense_bn(1)
    bn = model.get_layer("bn")
    bn.trainable = False  # frozen layers are recomputed too
    kernel, bias = model.get_layer("dense").get_weights()
    inputs = x.astype(np.float64) @ kernel + bias
    soups.recompute_batchnorm_statistics(model, x, batch_size=batch_size)
    np.testing.assert_allclose(bn.moving_mean.numpy(), inputs.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), inputs.var(axis=0), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.99 and bn.trainable is False
    # Other weights are untouched.
    np.testing.assert_array_equal(model.get_layer("dense").get_weights()[0], kernel)


def _val_accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), axis=-1) == y))


@pytest.mark.slow
def test_greedy_soup_never_worse_than_best_ingredient(blobs):
    x, y = blobs
    # One decent model and two random ones: a uniform soup would be hurt.
    good = _dense_bn(0)
    good.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", run_eagerly=True)
    good.fit(x, y, epochs=15, batch_size=30, verbose=0)
    models = [_dense_bn(5), good, _dense_bn(6)]
    x_val, y_val = x[::2], y[::2]
    soup = soups.greedy_soup(models, x_val, y_val, x_train=x[1::2], batch_size=32)
    best_single = max(_val_accuracy(m, x_val, y_val) for m in models)
    assert soup.soup_info["val_accuracy"] >= best_single
    assert _val_accuracy(soup, x_val, y_val) == pytest.approx(soup.soup_info["val_accuracy"])
    assert soup.soup_info["ingredients"][0] == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="non-empty list"):
        soups.uniform_soup([])
    with pytest.raises(ValueError, match="same architecture"):
        soups.uniform_soup([_dense_bn(0), _dense_bn(0, units=5)])
