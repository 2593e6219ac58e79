"""BatchNormalization moving statistics recomputed from data.

A network whose weights were not the ones its moving statistics were
accumulated for (a weight average, a snapshot taken while the statistics
still lag behind its weights) predicts better once every BatchNormalization
layer holds the statistics of its inputs under those weights. Used by the
soups (`supernet.soups`), `SnapshotEnsemble(bn_data=...)` and the
`bn_update` option of `supernet.transfer`'s trainers.
"""

import keras
import numpy as np

__all__ = ["batchnorm_layers", "recompute_batchnorm_statistics"]


def batchnorm_layers(model):
    """BatchNormalization layers of `model`, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(batchnorm_layers(layer))
    return found


def recompute_batchnorm_statistics(model, x, batch_size=256):
    """Sets every BatchNormalization's moving statistics to dataset statistics.

    Method: every layer's `momentum` is set to 0, so after a forward pass in
    training mode its `moving_mean` / `moving_variance` hold exactly that
    batch's mean and (biased) variance of the layer's inputs. One pass over
    `x` in batches collects these per layer, weighted by batch size, and
    the moving statistics are set to the pooled values:
    `mean = sum_b n_b m_b / n` and
    `var = sum_b n_b (v_b + m_b^2) / n - mean^2` (law of total variance).
    Each layer thus ends with the exact mean and population variance of its
    inputs over all of `x`, its inputs being computed as in training (layers
    upstream normalised by batch statistics, as in SWA's `bn_update`).
    Momenta and `trainable` flags are restored afterwards; frozen
    BatchNormalization layers are unfrozen during the pass because Keras 3
    runs them in inference mode. Dropout is active during the pass, as in
    training. Other weights are not changed.

    Args:
        model: a `keras.Model`.
        x: array `(n, ...)` of training inputs.
        batch_size: int >= 1 (larger batches make `v_b` less noisy but
            the pooled result is exact for any batch size).

    Returns:
        `model`, updated in place.

    Reference:
        Izmailov et al. 2018 (SWA, BatchNorm update); Wortsman et al. 2022
        (model soups).
    """
    if batch_size < 1 or len(x) == 0:
        raise ValueError(f"Need a non-empty `x` and `batch_size` >= 1. Received: len(x)={len(x)}, batch_size={batch_size}")
    layers = batchnorm_layers(model)
    if not layers:
        return model
    saved = [(layer.momentum, layer.trainable) for layer in layers]
    sums = [None] * len(layers)
    total = 0
    try:
        for layer in layers:
            layer.momentum = 0.0
            layer.trainable = True
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            n = len(batch)
            model(batch, training=True)
            for i, layer in enumerate(layers):
                mean = np.asarray(keras.ops.convert_to_numpy(layer.moving_mean), np.float64)
                var = np.asarray(keras.ops.convert_to_numpy(layer.moving_variance), np.float64)
                part = np.stack([n * mean, n * (var + mean**2)])
                sums[i] = part if sums[i] is None else sums[i] + part
            total += n
    finally:
        for layer, (momentum, trainable) in zip(layers, saved):
            layer.momentum = momentum
            layer.trainable = trainable
    for layer, acc in zip(layers, sums):
        mean = acc[0] / total
        var = np.maximum(acc[1] / total - mean**2, 0.0)
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(var.astype(layer.moving_variance.dtype))
    return model
