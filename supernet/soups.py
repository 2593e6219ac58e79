"""Model soups: one network whose weights average those of fine-tuned members.

A soup costs one forward pass at test time instead of `M`. Averaging only
works for members in one basin of the loss landscape, e.g. fine-tuned from
the same pre-trained checkpoint (local DE, SSE, StarSSE); members of a
global deep ensemble usually give a useless soup.

Averaged BatchNormalization moving statistics do not describe the
activations of the averaged network, so both soups can recompute them on
training data (`recompute_batchnorm_statistics`, from `supernet.batchnorm`).
"""

import keras
import numpy as np

from supernet import metrics
from supernet._validation import check_finite_weights
from supernet.batchnorm import recompute_batchnorm_statistics
from supernet.transfer import predict_probs

__all__ = ["average_weights", "greedy_soup", "recompute_batchnorm_statistics", "uniform_soup"]


def _check_models(models):
    models = list(models)
    if not models or not all(isinstance(m, keras.Model) for m in models):
        raise ValueError(f"Argument `models` must be a non-empty list of keras.Model. Received: {models!r}")
    shapes = [tuple(np.shape(w) for w in m.get_weights()) for m in models]
    if any(s != shapes[0] for s in shapes):
        raise ValueError(
            "Argument `models` must all have the same architecture (the same weight shapes). "
            f"Received: models with {sorted({len(s) for s in shapes})} weight counts and differing shapes"
        )
    return check_finite_weights("models", models)


def average_weights(models):
    """Arithmetic mean of the models' weights (`get_weights` order).

    Integer variables (none in standard layers) are averaged and rounded
    back to their dtype.

    Returns:
        list of numpy arrays.
    """
    models = _check_models(models)
    averaged = []
    for weights in zip(*(m.get_weights() for m in models)):
        mean = np.mean([np.asarray(w, np.float64) for w in weights], axis=0)
        dtype = np.asarray(weights[0]).dtype
        averaged.append(np.round(mean).astype(dtype) if np.issubdtype(dtype, np.integer) else mean.astype(dtype))
    return averaged


def _soup_model(models, weights):
    soup = keras.models.clone_model(models[0])
    soup.set_weights(weights)
    return soup


def uniform_soup(models, x_train=None, batch_size=256):
    """Uniform soup: a model whose weights are the mean of the members'.

    Args:
        models: list of `keras.Model`s of one architecture (e.g. the
            members returned by `supernet.transfer.star_sse`).
        x_train: optional training inputs; if given, the soup's
            BatchNormalization statistics are recomputed on them
            (`recompute_batchnorm_statistics`), otherwise the averaged
            moving statistics are kept.
        batch_size: batch size of the recomputation.

    Returns:
        A new uncompiled `keras.Model` (a clone of `models[0]`).

    Example:
    >>> soup = uniform_soup(members, x_train=ds.x_train)  # doctest: +SKIP

    Reference:
        Wortsman et al. 2022, "Model soups", Sec. 2 (uniform soup).
    """
    models = _check_models(models)
    soup = _soup_model(models, average_weights(models))
    if x_train is not None:
        recompute_batchnorm_statistics(soup, x_train, batch_size)
    soup.soup_info = {"ingredients": list(range(len(models)))}
    return soup


def _accuracy(model, x, y, batch_size):
    probs = predict_probs(model, x, batch_size)
    if not np.all(np.isfinite(probs)):
        return -1.0
    return metrics.accuracy(y, probs / probs.sum(axis=-1, keepdims=True))


def greedy_soup(models, x_val, y_val, x_train=None, batch_size=256, log=None):
    """Greedy soup: add members by held-out accuracy while it does not drop.

    Members are sorted by held-out accuracy, best first. Starting from the
    best one, each next member is tried: the candidate soup averages the
    current ingredients and it (uniformly), its BatchNormalization
    statistics are recomputed on `x_train` if given, and the member is kept
    iff the candidate's held-out accuracy is >= the current soup's
    (Wortsman et al.'s rule). The result is therefore never worse on the
    held-out data than the best single member.

    Args:
        models: list of `keras.Model`s of one architecture.
        x_val, y_val: held-out inputs and integer labels (not the test set).
        x_train: optional training inputs for the BatchNormalization
            recomputation.
        batch_size: batch size of predictions and recomputation.
        log: optional `fn(str)` for progress lines.

    Returns:
        A new uncompiled `keras.Model`, with `soup_info` =
        `{"ingredients": [indices into models], "val_accuracy": float,
        "member_val_accuracy": [float]}`.

    Reference:
        Wortsman et al. 2022, "Model soups", Algorithm 1 (greedy soup).
    """
    models = _check_models(models)
    if len(x_val) == 0:
        raise ValueError("`greedy_soup` needs held-out data. Received: len(x_val)=0")
    member_acc = [_accuracy(m, x_val, y_val, batch_size) for m in models]
    order = [int(i) for i in np.argsort(-np.asarray(member_acc), kind="stable")]
    ingredients = [order[0]]
    soup = _soup_model(models, models[order[0]].get_weights())
    best = member_acc[order[0]]
    for i in order[1:]:
        candidate = _soup_model(models, average_weights([models[j] for j in ingredients + [i]]))
        if x_train is not None:
            recompute_batchnorm_statistics(candidate, x_train, batch_size)
        acc = _accuracy(candidate, x_val, y_val, batch_size)
        kept = acc >= best
        if log is not None:
            log(f"  greedy soup: + member {i + 1}: held-out acc {acc:.4f} vs {best:.4f} -> {'kept' if kept else 'skipped'}")
        if kept:
            ingredients.append(i)
            soup, best = candidate, acc
    soup.soup_info = {"ingredients": ingredients, "val_accuracy": float(best), "member_val_accuracy": [float(a) for a in member_acc]}
    return soup
