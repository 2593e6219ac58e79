"""Frozen-feature baselines: linear classifiers on a trained net's activations.

The DeCAF recipe (Donahue et al. 2014): run a trained network up to a chosen
layer, take its activations as fixed features, and fit a linear classifier
(scikit-learn's `LogisticRegression` or `LinearSVC`) on them. Against it
stands fine-tuning: keep the trained weights as the initialisation, freeze
the first `n` layers (`freeze_first`) and train the rest on the new task.

- `layer_features(model, layer, x)`: activations of one layer, flattened.
- `fit_linear_probe(f_train, y_train, f_test, y_test, classifier=...)`:
  standardise the features, fit the classifier, return accuracies.
- `freeze_first(model, n)`: trainable flags for fine-tuning above layer `n`.
"""

import numbers
import time

import keras
import numpy as np

__all__ = ["CLASSIFIERS", "fit_linear_probe", "freeze_first", "layer_features", "layer_index", "make_linear_probe"]

CLASSIFIERS = ("logistic", "svm")


def layer_index(model, layer):
    """Position of `layer` (a name or an int index) in `model.layers`."""
    names = [l.name for l in model.layers]
    if isinstance(layer, str):
        if layer not in names:
            raise ValueError(f"Model {model.name!r} has no layer {layer!r}. Received: layer={layer!r}; layers: {names}")
        return names.index(layer)
    if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not -len(names) <= layer < len(names):
        raise ValueError(
            f"Argument `layer` must be a layer name or an int index in [-{len(names)}, {len(names)}). Received: layer={layer}"
        )
    return int(layer) % len(names)


def layer_features(model, layer, x, batch_size=256, pool=None):
    """Activations of one layer of a trained model, one flat row per input.

    The model runs in inference mode (dropout off, BatchNormalization with
    its moving statistics), as for any frozen feature extractor.

    Args:
        model: a built functional or Sequential `keras.Model`.
        layer: the layer's name or index in `model.layers`.
        x: inputs, as for `model.predict`.
        batch_size: batch size of the forward pass.
        pool: `None` (flatten all activations, DeCAF), `"avg"` or `"max"`
            (global pooling over all axes but the last, e.g. over the
            spatial positions of a feature map: one value per channel).

    Returns:
        float32 array `(num_samples, num_features)`.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="hidden"), keras.layers.Dense(2)])
    >>> layer_features(model, "hidden", np.zeros((5, 4))).shape
    (5, 3)

    Reference:
        Donahue et al. 2014, "DeCAF: A Deep Convolutional Activation Feature
        for Generic Visual Recognition", ICML.
    """
    if pool not in (None, "avg", "max"):
        raise ValueError(f"Argument `pool` must be None, 'avg' or 'max'. Received: pool={pool!r}")
    target = model.layers[layer_index(model, layer)]
    extractor = keras.Model(model.inputs, target.output)
    features = np.asarray(extractor.predict(x, batch_size=batch_size, verbose=0), dtype=np.float32)
    if pool is not None and features.ndim > 2:
        axes = tuple(range(1, features.ndim - 1))
        features = features.mean(axis=axes) if pool == "avg" else features.max(axis=axes)
    return features.reshape(len(features), -1)


def make_linear_probe(classifier="logistic", C=1.0, max_iter=1000, seed=0):
    """A scikit-learn pipeline: `StandardScaler` then a linear classifier.

    Args:
        classifier: `"logistic"` (`LogisticRegression`, multinomial, L2) or
            `"svm"` (`LinearSVC`, one-vs-rest, squared hinge).
        C: inverse L2 regularisation strength (> 0).
        max_iter: solver iterations.
        seed: `random_state` of the solver.

    Returns:
        An unfitted `sklearn.pipeline.Pipeline`.
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"Argument `classifier` must be one of {CLASSIFIERS}. Received: classifier={classifier!r}")
    if isinstance(C, bool) or not isinstance(C, (int, float)) or C <= 0:
        raise ValueError(f"Argument `C` must be a number > 0. Received: C={C}")
    # Imported here so `import supernet` does not pay for scikit-learn.
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if classifier == "logistic":
        model = LogisticRegression(C=C, max_iter=max_iter, random_state=seed)
    else:
        model = LinearSVC(C=C, max_iter=max_iter, random_state=seed)
    return make_pipeline(StandardScaler(), model)


def fit_linear_probe(train_features, y_train, test_features, y_test, classifier="logistic", C=1.0, max_iter=1000, seed=0):
    """Fit a linear classifier on frozen features and score it.

    Args:
        train_features, test_features: `(n, d)` arrays (`layer_features`).
        y_train, y_test: integer labels.
        classifier, C, max_iter, seed: as in `make_linear_probe`.

    Returns:
        dict: `accuracy` (test), `train_accuracy`, `num_features`, `fit_s`
        (wall seconds of the fit) and the fitted `pipeline` (not JSON-able;
        drop it before storing).

    Example:
    >>> f = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0, 0, 1, 1])
    >>> fit_linear_probe(f, y, f, y)["accuracy"]
    1.0
    """
    train_features, test_features = np.asarray(train_features), np.asarray(test_features)
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            "Arguments `train_features` and `test_features` must be 2-D with the same number of columns. "
            f"Received: shapes {train_features.shape} and {test_features.shape}"
        )
    pipeline = make_linear_probe(classifier, C=C, max_iter=max_iter, seed=seed)
    start = time.perf_counter()
    pipeline.fit(train_features, np.asarray(y_train))
    fit_s = time.perf_counter() - start
    return {
        "accuracy": float(np.mean(pipeline.predict(test_features) == np.asarray(y_test))),
        "train_accuracy": float(np.mean(pipeline.predict(train_features) == np.asarray(y_train))),
        "num_features": int(train_features.shape[1]),
        "fit_s": fit_s,
        "pipeline": pipeline,
    }


def freeze_first(model, n):
    """Freeze the first `n` layers of `model.layers`; make the rest trainable.

    Fine-tuning "with the first n layers frozen": layers `0 .. n-1` keep
    their trained weights (a frozen BatchNormalization also runs in
    inference mode, so its statistics stay fixed), layers `n ..` are
    trained. `n=0` fine-tunes everything. Re-compile the model afterwards:
    Keras reads the flags at `compile`.

    Args:
        model: a `keras.Model`.
        n: int in `[0, len(model.layers)]`, or a layer name to freeze up to
            and including that layer.

    Returns:
        int, the number of trainable parameters left.

    Example:
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    >>> freeze_first(model, 1)  # only the last Dense: 3 * 2 + 2
    8
    """
    if isinstance(n, str):
        n = layer_index(model, n) + 1
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 <= n <= len(model.layers):
        raise ValueError(f"Argument `n` must be an int in [0, {len(model.layers)}] or a layer name. Received: n={n}")
    model.trainable = True
    for i, layer in enumerate(model.layers):
        layer.trainable = i >= n
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_weights))
