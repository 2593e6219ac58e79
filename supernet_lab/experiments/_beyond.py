"""Glue shared by the "beyond the thesis" experiments.

Only orchestration: fused-member training and scoring, class subsets,
inference-cost timing, histogram counts for the records. The math lives in
`supernet/`.
"""

import time

import numpy as np

from supernet import metrics, training
from supernet.models import PartitionedMLP


def train_members(config, ds, log, **kwargs):
    """A fused `PartitionedMLP` of `config`'s members (a `MembersConfig`), trained on `ds`.

    `kwargs` go to `supernet.training.fit_members` (e.g. `loss`, `patience`).
    Returns `(model, fit)`, `fit` being what `fit_members` returns.
    """
    model = PartitionedMLP(
        ds.input_shape[0], list(config.hidden_units), ds.num_classes,
        num_members=config.num_members, dropout=config.dropout, seed=config.seed,
    )
    fit = training.fit_members(
        model, ds, epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate, log=log, **kwargs
    )
    return model, fit


def class_task(x, y, classes):
    """The samples of `classes`, relabelled `0..len(classes) - 1` in that order."""
    keep = np.isin(y, classes)
    relabel = {c: i for i, c in enumerate(classes)}
    return x[keep], np.array([relabel[int(c)] for c in y[keep]], dtype=np.int64)


def inference_costs(models, x, *, repeats=5, batch_size=1024):
    """Parameters and wall microseconds per sample of `predict`, per model.

    The models are timed in interleaved rounds and each keeps its best
    round, so a burst of load from other processes hits all of them alike.

    Args:
        models: `{key: keras.Model}`.
        x: inputs.

    Returns:
        `{key: {"params", "us_per_sample"}}`.
    """
    for model in models.values():
        model.predict(x[:batch_size], batch_size=batch_size, verbose=0)  # trace once, untimed
    best = {key: float("inf") for key in models}
    for _ in range(repeats):
        for key, model in models.items():
            start = time.perf_counter()
            model.predict(x, batch_size=batch_size, verbose=0)
            best[key] = min(best[key], time.perf_counter() - start)
    return {key: {"params": int(model.count_params()), "us_per_sample": 1e6 * best[key] / len(x)} for key, model in models.items()}


def member_probs(model, x, batch_size=1024):
    """`(K, n, C)` member probabilities of a fused `(n, K, C)` model."""
    return np.moveaxis(np.asarray(model.predict(x, verbose=0, batch_size=batch_size)), 1, 0)


def ensemble_scores(y, probs):
    """`metrics.ensemble_metrics` of `(K, n, C)` member probabilities, JSON-able."""
    result = metrics.ensemble_metrics(y, probs)
    result["avg_member_calibrated_nll"] = float(np.mean([metrics.calibrated_nll(y, p) for p in probs]))
    return result


def histogram_counts(values, edges):
    """Counts of `values` over `edges`, values clipped into the outer bins."""
    edges = np.asarray(edges, dtype=float)
    clipped = np.clip(np.asarray(values, dtype=float), edges[0], np.nextafter(edges[-1], edges[0]))
    return np.histogram(clipped, bins=edges)[0].astype(int).tolist()
