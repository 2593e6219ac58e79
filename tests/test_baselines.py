"""Frozen-feature baselines: layer activations, linear probes, freezing the first n layers."""

import keras
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from supernet.baselines import fit_linear_probe, freeze_first, layer_features, layer_index, make_linear_probe
from supernet.models import thesis_cnn
from test_case import assert_weights_equal, seeded_data, weights_of


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((20,)),
            keras.layers.Dense(16, activation="relu", name="hidden_1"),
            keras.layers.Dropout(0.5, name="drop"),
            keras.layers.Dense(8, activation="relu", name="hidden_2"),
            keras.layers.Dense(5, activation="softmax", name="out"),
        ]
    )


def test_layer_features_equal_the_layers_by_hand():
    model = _mlp()
    x, _ = seeded_data(n=10)
    k1, b1 = weights_of(model.get_layer("hidden_1"))
    k2, b2 = weights_of(model.get_layer("hidden_2"))
    h1 = np.maximum(x @ k1 + b1, 0)
    np.testing.assert_allclose(layer_features(model, "hidden_1", x), h1, rtol=1e-5, atol=1e-6)
    # Inference mode: dropout is off, so layer 2 sees h1 unchanged.
    np.testing.assert_allclose(layer_features(model, 2, x), np.maximum(h1 @ k2 + b2, 0), rtol=1e-5, atol=1e-6)


def test_layer_features_flatten_or_pool_feature_maps():
    model = thesis_cnn(input_shape=(8, 8, 3), num_classes=3)
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    maps = keras.Model(model.inputs, model.get_layer("block2_pool").output).predict(x, verbose=0)
    assert maps.shape == (2, 2, 2, 64)
    np.testing.assert_allclose(layer_features(model, "block2_pool", x), maps.reshape(2, -1), rtol=1e-6)
    np.testing.assert_allclose(layer_features(model, "block2_pool", x, pool="avg"), maps.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(layer_features(model, "block2_pool", x, pool="max"), maps.max(axis=(1, 2)), rtol=1e-6)


@pytest.mark.parametrize("classifier, cls", [("logistic", LogisticRegression), ("svm", LinearSVC)])
def test_linear_probe_fits_the_sklearn_classifier(classifier, cls):
    x, y = seeded_data(n=300, d=20, classes=3)
    result = fit_linear_probe(x[:200], y[:200], x[200:], y[200:], classifier=classifier)
    assert isinstance(result["pipeline"][-1], cls)
    # Labels are a linear function of x: a linear probe nearly solves it.
    assert result["accuracy"] > 0.85 and result["train_accuracy"] > 0.9
    assert result["num_features"] == 20
    expected = np.mean(result["pipeline"].predict(x[200:]) == y[200:])
    assert result["accuracy"] == expected


def test_linear_probe_on_random_features_is_near_chance():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 5))
    y = rng.integers(0, 4, size=400)
    result = fit_linear_probe(features[:300], y[:300], features[300:], y[300:])
    assert result["accuracy"] < 0.45


def test_freeze_first_sets_flags_and_fine_tuning_keeps_frozen_weights():
    model = _mlp()
    trainable = freeze_first(model, "drop")  # hidden_1 and dropout frozen
    assert [layer.trainable for layer in model.layers] == [False, False, True, True]
    assert trainable == 16 * 8 + 8 + 8 * 5 + 5
    x, y = seeded_data(n=40)
    frozen, rest = weights_of(model.get_layer("hidden_1")), weights_of(model.get_layer("hidden_2"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    assert_weights_equal(frozen, weights_of(model.get_layer("hidden_1")))
    assert_weights_equal(rest, weights_of(model.get_layer("hidden_2")), equal=False)
    assert freeze_first(model, 0) == sum(int(np.prod(w.shape)) for w in model.weights)


def test_freeze_first_keeps_frozen_batchnorm_statistics():
    model = thesis_cnn(input_shape=(8, 8, 3), num_classes=3)
    freeze_first(model, "block1_pool")
    bn = weights_of(model.get_layer("block1_bn1"))
    x = np.random.default_rng(0).random((8, 8, 8, 3)).astype("float32")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
    assert_weights_equal(bn, weights_of(model.get_layer("block1_bn1")))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: freeze_first(m, 99), "`n`"),
        (lambda m: freeze_first(m, "nope"), "no layer"),
        (lambda m: layer_index(m, 10), "`layer`"),
        (lambda m: layer_features(m, 0, np.zeros((1, 20)), pool="sum"), "pool"),
        (lambda m: make_linear_probe("tree"), "classifier"),
        (lambda m: make_linear_probe(C=0), "`C`"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(_mlp())
