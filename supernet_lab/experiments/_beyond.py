"""Glue shared by the "beyond the thesis" experiments.

Only orchestration: inference-cost timing, fused-member scoring, histogram
counts for the records and report cells. The math lives in `supernet/`.
"""

import time

import numpy as np

from supernet import metrics, reports


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


def grouped(records, paths):
    """Per preset: `(runs, cell, mean, n)` over the runs of that preset.

    `cell(path, scale=1.0, digits=2)` formats mean ± std, `mean(path)` is the
    mean over seeds (None when missing) and `n` the number of seeds.
    """
    for preset in sorted({r["preset"] for r in records}):
        runs = [r for r in records if r["preset"] == preset]
        group = reports.aggregate(runs, by=["preset"], metrics=list(paths))[0]
        stats, n = group["metrics"], group["n_runs"]

        def cell(path, scale=1.0, digits=2, stats=stats):
            s = stats[path]
            return reports.format_mean_std(s["mean"], s["std"], s["n"], scale=scale, digits=digits)

        def mean(path, stats=stats):
            return stats[path]["mean"]

        yield preset, runs, cell, mean, n
