"""Evaluation metrics for single models and ensembles, in pure NumPy.

Every function here works on plain arrays, so it can score predictions from
any backend (or from saved `.npy` files) without building a Keras model.

Conventions used throughout:

- `y_true`: 1-D integer array of labels, shape `(num_samples,)`.
- `probs`: class probabilities, shape `(num_samples, num_classes)`; every
  row is non-negative and sums to 1.
- `member_probs`: probabilities of `M` ensemble members, shape
  `(M, num_samples, num_classes)`.
- `member_probs_or_preds`: either `member_probs` as above or predicted
  labels of `M` members, shape `(M, num_samples)`.

Predicted labels are `argmax(probs, axis=-1)`; when a row has several equal
maxima the lowest class index wins (NumPy's `argmax` rule).
"""

import numpy as np
from scipy import optimize
from scipy import special

__all__ = [
    "accuracy",
    "nll",
    "per_sample_cross_entropy",
    "logit_margin",
    "loss_statistics",
    "brier_score",
    "expected_calibration_error",
    "fit_temperature",
    "calibrated_nll",
    "temperature_scale",
    "disagreement",
    "pairwise_disagreement",
    "diversity",
    "agreement_matrix",
    "mean_off_diagonal",
    "linear_cka",
    "knn_accuracy",
    "softmax_vote",
    "majority_vote",
    "log_prob_average",
    "ensemble_metrics",
    "MemberAccuracy",
    "SoftmaxVoteAccuracy",
]

# Probability rows may be float32/float16 softmax outputs; this only has to
# catch logits or unnormalized scores passed by mistake.
_SUM_ATOL = 1e-3

# Search range for the temperature. Wide enough for any realistic network
# (the optimum sits at a bound only for degenerate, perfectly separated data).
_MIN_TEMPERATURE = 1e-3
_MAX_TEMPERATURE = 1e3


# === Input validation ===


def _check_finite(array, name):
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"Argument `{name}` must contain only finite values (no NaN or "
            f"inf). Received: {name} with "
            f"{int(np.sum(~np.isfinite(array)))} non-finite entries"
        )


def _as_probs(probs, name="probs"):
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ValueError(
            f"Argument `{name}` must be a non-empty 2-D array of shape "
            f"(num_samples, num_classes). Received: {name}.shape={probs.shape}"
        )
    return _check_prob_values(probs, name)


def _check_prob_values(probs, name):
    if not np.issubdtype(probs.dtype, np.number) or np.iscomplexobj(probs):
        raise ValueError(
            f"Argument `{name}` must be a real numeric array. "
            f"Received: {name}.dtype={probs.dtype}"
        )
    probs = probs.astype(np.float64)
    _check_finite(probs, name)
    if np.any(probs < 0):
        raise ValueError(
            f"Argument `{name}` must be non-negative probabilities. "
            f"Received: {name} with min value {probs.min()}"
        )
    sums = probs.sum(axis=-1)
    if np.any(np.abs(sums - 1.0) > _SUM_ATOL):
        worst = sums.flat[np.argmax(np.abs(sums - 1.0))]
        raise ValueError(
            f"Argument `{name}` must have rows that sum to 1 (probabilities, "
            f"not logits). Received: a row of {name} summing to {worst}"
        )
    return probs


def _stack_members(values, name):
    """`np.asarray`, with a clear error for members of different shapes."""
    if isinstance(values, (list, tuple)):
        shapes = [np.shape(v) for v in values]
        if len(set(shapes)) > 1:
            raise ValueError(
                f"Argument `{name}` must hold members of one shape (members with different "
                f"class counts or sample counts cannot be combined). Received: member shapes {shapes}"
            )
    return np.asarray(values)


def _as_member_probs(member_probs, name="member_probs"):
    member_probs = _stack_members(member_probs, name)
    if member_probs.ndim != 3 or 0 in member_probs.shape:
        raise ValueError(
            f"Argument `{name}` must be a non-empty 3-D array of shape "
            f"(num_members, num_samples, num_classes). "
            f"Received: {name}.shape={member_probs.shape}"
        )
    return _check_prob_values(member_probs, name)


def _as_labels(labels, name, num_classes=None):
    """Validates a label array (any shape) and returns it as int64."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise ValueError(
            f"Argument `{name}` must not be empty. "
            f"Received: {name}.shape={labels.shape}"
        )
    if np.issubdtype(labels.dtype, np.bool_) or not (
        np.issubdtype(labels.dtype, np.integer)
        or np.issubdtype(labels.dtype, np.floating)
    ):
        raise ValueError(
            f"Argument `{name}` must hold integer class labels. "
            f"Received: {name}.dtype={labels.dtype}"
        )
    if np.issubdtype(labels.dtype, np.floating):
        _check_finite(labels, name)
        if np.any(labels != np.round(labels)):
            raise ValueError(
                f"Argument `{name}` must hold integer class labels. "
                f"Received: non-integer values in {name}"
            )
    labels = labels.astype(np.int64)
    if np.any(labels < 0) or (
        num_classes is not None and np.any(labels >= num_classes)
    ):
        upper = "" if num_classes is None else f" and < {num_classes}"
        raise ValueError(
            f"Argument `{name}` must hold labels >= 0{upper}. "
            f"Received: {name} with min={labels.min()}, max={labels.max()}"
        )
    return labels


def _as_y_true(y_true, num_samples, num_classes, name="y_true"):
    y_true = np.asarray(y_true)
    if y_true.ndim != 1:
        raise ValueError(
            f"Argument `{name}` must be a 1-D array of integer labels. "
            f"Received: {name}.shape={y_true.shape}"
        )
    if y_true.shape[0] != num_samples:
        raise ValueError(
            f"Argument `{name}` must have one label per sample "
            f"({num_samples} samples). Received: {name}.shape={y_true.shape}"
        )
    return _as_labels(y_true, name, num_classes=num_classes)


def _labels_and_probs(y_true, probs):
    probs = _as_probs(probs)
    y_true = _as_y_true(y_true, probs.shape[0], probs.shape[1])
    return y_true, probs


def _as_predictions(preds_or_probs, name):
    """Returns (num_samples,) labels from labels or a (n, C) prob matrix."""
    array = np.asarray(preds_or_probs)
    if array.ndim == 1:
        return _as_labels(array, name)
    if array.ndim == 2:
        return np.argmax(_as_probs(array, name), axis=-1)
    raise ValueError(
        f"Argument `{name}` must be a 1-D array of labels or a 2-D array of "
        f"probabilities. Received: {name}.shape={array.shape}"
    )


def _as_member_predictions(member_probs_or_preds, name):
    """Returns (M, num_samples) labels from member labels or member probs."""
    array = _stack_members(member_probs_or_preds, name)
    if array.ndim == 2:
        return _as_labels(array, name)
    if array.ndim == 3:
        return np.argmax(_as_member_probs(array, name), axis=-1)
    raise ValueError(
        f"Argument `{name}` must be a 2-D array of member labels "
        f"(num_members, num_samples) or a 3-D array of member probabilities "
        f"(num_members, num_samples, num_classes). "
        f"Received: {name}.shape={array.shape}"
    )


def _as_logits(log_probs, name="log_probs"):
    log_probs = np.asarray(log_probs)
    if log_probs.ndim != 2 or 0 in log_probs.shape:
        raise ValueError(
            f"Argument `{name}` must be a non-empty 2-D array of shape "
            f"(num_samples, num_classes). Received: {name}.shape={log_probs.shape}"
        )
    log_probs = log_probs.astype(np.float64)
    _check_finite(log_probs, name)
    return log_probs


def _safe_log(probs, eps):
    return np.log(np.maximum(probs, eps))


def _tempered_nll(y_true, logits, temperature):
    scaled = logits / temperature
    log_norm = special.logsumexp(scaled, axis=-1)
    picked = scaled[np.arange(len(y_true)), y_true]
    return float(np.mean(log_norm - picked))


# === Single-model metrics ===


def accuracy(y_true, probs):
    """Fraction of samples whose arg-max class equals the label.

    Args:
        y_true: int array of shape `(num_samples,)`.
        probs: array of shape `(num_samples, num_classes)`.

    Returns:
        Float in `[0, 1]`.

    Example:

    >>> accuracy([0, 1], [[0.9, 0.1], [0.8, 0.2]])
    0.5
    """
    y_true, probs = _labels_and_probs(y_true, probs)
    return float(np.mean(np.argmax(probs, axis=-1) == y_true))


def per_sample_cross_entropy(y_true, probs, eps=1e-12):
    """Cross-entropy `-log p[y]` of every sample (natural log).

    Args:
        y_true: int array of shape `(num_samples,)`.
        probs: array of shape `(num_samples, num_classes)`.
        eps: probabilities are clipped to at least `eps` before the log, so
            a confidently wrong prediction costs `-log(eps)` (27.6 for the
            default) instead of infinity.

    Returns:
        Float array of shape `(num_samples,)`.

    Example:

    >>> per_sample_cross_entropy([0], [[0.5, 0.5]]).round(4)
    array([0.6931])

    Reference:
        Per-example losses behind thesis Table 5 and Fig. 13.
    """
    if not eps > 0:
        raise ValueError(f"Argument `eps` must be > 0. Received: eps={eps}")
    y_true, probs = _labels_and_probs(y_true, probs)
    picked = probs[np.arange(len(y_true)), y_true]
    return -_safe_log(picked, eps)


def logit_margin(y_true, logits):
    """Per-sample logit gap `l_y - max_{i != y} l_i` (> 0 iff `y` is the unique arg-max).

    Args:
        y_true: `(num_samples,)` integer labels.
        logits: `(num_samples, num_classes)` logits, or log-probabilities
            (the gap is invariant to shifting a row, so `log(probs)` gives
            the same margins as the logits behind a softmax).

    Returns:
        float64 array `(num_samples,)`.

    Example:
    >>> logit_margin(np.array([0, 1]), np.array([[2.0, 0.5, 1.0], [0.0, 1.0, 3.0]])).tolist()
    [1.0, -2.0]

    Reference:
        Shokorov 2021 (MIPT), slide "what is the gap in the logits?".
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(
            "Argument `logits` must be a 2-D array (num_samples, num_classes) with at least 2 classes. "
            f"Received: logits.shape={logits.shape}"
        )
    _check_finite(logits, "logits")
    y_true = _as_y_true(y_true, logits.shape[0], logits.shape[1])
    rows = np.arange(len(y_true))
    true = logits[rows, y_true]
    others = logits.copy()
    others[rows, y_true] = -np.inf
    return true - others.max(axis=1)


def nll(y_true, probs, eps=1e-12):
    """Mean negative log-likelihood (categorical cross-entropy, natural log).

    Args:
        y_true: int array of shape `(num_samples,)`.
        probs: array of shape `(num_samples, num_classes)`.
        eps: lower clip of the probabilities, see `per_sample_cross_entropy`.

    Returns:
        Float, `mean(-log p[y])`.

    Example:

    >>> round(nll([0, 1], [[0.5, 0.5], [0.5, 0.5]]), 4)
    0.6931
    """
    return float(np.mean(per_sample_cross_entropy(y_true, probs, eps=eps)))


def loss_statistics(y_true, probs):
    """Summary of the per-sample cross-entropy, as in thesis Table 5.

    A mean loss can be dominated by a few confidently wrong samples; the
    90th/95th percentiles show whether most samples have small losses.

    Args:
        y_true: int array of shape `(num_samples,)`.
        probs: array of shape `(num_samples, num_classes)`.

    Returns:
        Dict with floats `mean`, `std` (population, `ddof=0`), `p90` and
        `p95` (`np.percentile`, linear interpolation) of the losses.

    Example:

    >>> stats = loss_statistics([0, 0], [[0.5, 0.5], [1.0, 0.0]])
    >>> sorted(stats)
    ['mean', 'p90', 'p95', 'std']

    Reference:
        Bukowski & Dzwinel (2020), SuperNet thesis, Table 5.
    """
    losses = per_sample_cross_entropy(y_true, probs)
    return {
        "mean": float(np.mean(losses)),
        "std": float(np.std(losses, ddof=0)),
        "p90": float(np.percentile(losses, 90)),
        "p95": float(np.percentile(losses, 95)),
    }


def brier_score(y_true, probs):
    """Multi-class Brier score: mean over samples of `sum_c (p_c - 1[c=y])^2`.

    Args:
        y_true: int array of shape `(num_samples,)`.
        probs: array of shape `(num_samples, num_classes)`.

    Returns:
        Float in `[0, 2]`; 0 for perfect one-hot predictions.

    Example:

    >>> brier_score([0], [[0.5, 0.5]])
    0.5

    Reference:
        Brier (1950), "Verification of forecasts expressed in terms of
        probability".
    """
    y_true, probs = _labels_and_probs(y_true, probs)
    one_hot = np.eye(probs.shape[1])[y_true]
    return float(np.mean(np.sum((probs - one_hot) ** 2, axis=-1)))


def expected_calibration_error(y_true, probs, num_bins=15):
    """Expected calibration error with equal-width confidence bins.

    Confidence is the max probability of each row. Samples go to `num_bins`
    equal-width bins over `[0, 1]`, right-closed: bin `b` holds
    confidences in `(b / num_bins, (b + 1) / num_bins]` (the first bin also
    holds 0). ECE is `sum_b (|B_b| / n) * |acc(B_b) - conf(B_b)|`.

    Args:
        y_true: int array of shape `(num_samples,)`.
        probs: array of shape `(num_samples, num_classes)`.
        num_bins: positive int, number of bins.

    Returns:
        Float in `[0, 1]`.

    Example:

    >>> expected_calibration_error([0, 1], [[0.9, 0.1], [0.9, 0.1]], 10)
    0.4

    Reference:
        Guo et al. (2017), "On Calibration of Modern Neural Networks", Eq. 3.
    """
    if isinstance(num_bins, bool) or not isinstance(
        num_bins, (int, np.integer)
    ) or num_bins < 1:
        raise ValueError(
            f"Argument `num_bins` must be a positive int. "
            f"Received: num_bins={num_bins}"
        )
    y_true, probs = _labels_and_probs(y_true, probs)
    confidence = np.max(probs, axis=-1)
    correct = (np.argmax(probs, axis=-1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bins = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(bins, minlength=num_bins)
    conf_sums = np.bincount(bins, weights=confidence, minlength=num_bins)
    correct_sums = np.bincount(bins, weights=correct, minlength=num_bins)
    # |sum(acc) - sum(conf)| / n == (|B| / n) * |acc(B) - conf(B)|.
    gaps = np.abs(correct_sums - conf_sums)[counts > 0]
    return float(np.sum(gaps) / len(y_true))


# === Temperature scaling ===


def temperature_scale(probs, temperature):
    """Rescales probabilities by a temperature: `softmax(log(probs) / T)`.

    Zero probabilities stay exactly zero. `T > 1` softens, `T < 1` sharpens.

    Args:
        probs: array of shape `(num_samples, num_classes)`.
        temperature: float > 0.

    Returns:
        Array of shape `(num_samples, num_classes)` whose rows sum to 1.

    Example:

    >>> temperature_scale([[0.8, 0.2]], 1e6).round(3)
    array([[0.5, 0.5]])

    Reference:
        Guo et al. (2017), "On Calibration of Modern Neural Networks".
    """
    if not np.isscalar(temperature) or not np.isfinite(temperature) or not (
        temperature > 0
    ):
        raise ValueError(
            f"Argument `temperature` must be a finite float > 0. "
            f"Received: temperature={temperature}"
        )
    probs = _as_probs(probs)
    with np.errstate(divide="ignore"):
        scaled = np.log(probs) / float(temperature)
    # Each row has an entry >= 1 / num_classes, so logsumexp is finite.
    return np.exp(scaled - special.logsumexp(scaled, axis=-1, keepdims=True))


def fit_temperature(y_true, log_probs):
    """Finds the temperature minimising the NLL of `softmax(log_probs / T)`.

    The NLL is unimodal in `log T` (it is convex in `1 / T`), so a bounded
    scalar search over `log T` in `[log 1e-3, log 1e3]` finds the global
    optimum. The result is never worse than `T = 1` on the fitting data: if
    the search ends at a point with higher NLL than `T = 1` (only possible
    within the solver's tolerance), 1.0 is returned. When the NLL does not
    depend on `T` (e.g. all rows constant) the result is 1.0.

    Args:
        y_true: int array of shape `(num_samples,)`.
        log_probs: finite array of shape `(num_samples, num_classes)`:
            logits or log-probabilities (clip probabilities before the log).

    Returns:
        Float temperature in `[1e-3, 1e3]`. `T > 1` means the predictions
        were overconfident, `T < 1` underconfident.

    Example:

    >>> logits = [[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 0.0]]
    >>> fit_temperature([0, 1, 1, 0], logits) > 1.0  # 1 of 4 confidently wrong
    True

    Reference:
        Guo et al. (2017), "On Calibration of Modern Neural Networks", Sec. 4.2.
    """
    logits = _as_logits(log_probs)
    y_true = _as_y_true(y_true, logits.shape[0], logits.shape[1])

    def objective(log_t):
        return _tempered_nll(y_true, logits, np.exp(log_t))

    result = optimize.minimize_scalar(
        objective,
        bounds=(np.log(_MIN_TEMPERATURE), np.log(_MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    baseline = objective(0.0)
    if not np.isfinite(result.fun) or result.fun >= baseline:
        return 1.0
    return float(np.exp(result.x))


def calibrated_nll(y_true, probs, num_splits=5, seed=0, eps=1e-12):
    """NLL at the optimal temperature, estimated by test-time cross-validation.

    Following Ashukha et al. (2020), the test set is split at random into
    two halves; a temperature is fitted on one half and the NLL of the
    rescaled predictions is measured on the other, and vice versa, so every
    sample is scored out-of-fold exactly once. The result is the average
    over `num_splits` random splits. Plain NLL penalises over/under-
    confidence that a single scalar could fix, which makes it unfair for
    comparing ensembles; the calibrated NLL removes that.

    For an ensemble pass the averaged probabilities (`softmax_vote`): the
    temperature then rescales `log` of the averaged probabilities,
    `softmax(log(p) / T)`.

    Args:
        y_true: int array of shape `(num_samples,)`, `num_samples >= 2`.
        probs: array of shape `(num_samples, num_classes)`.
        num_splits: positive int, number of random two-way splits.
        seed: int seed of the splits.
        eps: probabilities are clipped to at least `eps` before the log, so
            exact zeros (float underflow) stay finite and can be rescued by
            the temperature.

    Returns:
        Float, mean out-of-fold NLL after temperature scaling.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> probs = rng.dirichlet(np.ones(3), size=20)
    >>> y = rng.integers(0, 3, size=20)
    >>> calibrated_nll(y, probs) > 0
    True

    Reference:
        Ashukha et al. (2020), "Pitfalls of In-Domain Uncertainty Estimation
        and Ensembling in Deep Learning", Sec. 4 ("calibrated
        log-likelihood").
    """
    if isinstance(num_splits, bool) or not isinstance(
        num_splits, (int, np.integer)
    ) or num_splits < 1:
        raise ValueError(
            f"Argument `num_splits` must be a positive int. "
            f"Received: num_splits={num_splits}"
        )
    if not eps > 0:
        raise ValueError(f"Argument `eps` must be > 0. Received: eps={eps}")
    y_true, probs = _labels_and_probs(y_true, probs)
    num_samples = len(y_true)
    if num_samples < 2:
        raise ValueError(
            f"Argument `probs` must hold at least 2 samples to split in two "
            f"halves. Received: probs.shape={probs.shape}"
        )
    logits = _safe_log(probs, eps)
    rng = np.random.default_rng(seed)
    split_nlls = []
    for _ in range(num_splits):
        order = rng.permutation(num_samples)
        half = num_samples // 2
        folds = (order[:half], order[half:])
        total = 0.0
        for fit_idx, eval_idx in (folds, folds[::-1]):
            temperature = fit_temperature(y_true[fit_idx], logits[fit_idx])
            total += len(eval_idx) * _tempered_nll(
                y_true[eval_idx], logits[eval_idx], temperature
            )
        split_nlls.append(total / num_samples)
    return float(np.mean(split_nlls))


# === Agreement and diversity ===


def disagreement(preds_a, preds_b):
    """Fraction of samples on which two models predict different labels.

    Args:
        preds_a: labels of shape `(num_samples,)` or probabilities of shape
            `(num_samples, num_classes)` (reduced with arg-max).
        preds_b: same as `preds_a`, for the second model.

    Returns:
        Float in `[0, 1]`.

    Example:

    >>> disagreement([0, 1, 2, 3], [0, 1, 0, 0])
    0.5
    """
    a = _as_predictions(preds_a, "preds_a")
    b = _as_predictions(preds_b, "preds_b")
    if a.shape != b.shape:
        raise ValueError(
            f"Arguments `preds_a` and `preds_b` must cover the same number of "
            f"samples. Received: {a.shape[0]} and {b.shape[0]} samples"
        )
    return float(np.mean(a != b))


def pairwise_disagreement(member_probs_or_preds):
    """Disagreement between every pair of ensemble members.

    Args:
        member_probs_or_preds: member labels of shape
            `(num_members, num_samples)` or member probabilities of shape
            `(num_members, num_samples, num_classes)`.

    Returns:
        Symmetric float array of shape `(num_members, num_members)` with
        values in `[0, 1]` and a zero diagonal.

    Example:

    >>> pairwise_disagreement([[0, 1], [0, 0]])
    array([[0. , 0.5],
           [0.5, 0. ]])

    Reference:
        Sadrtdinov et al. (2023), StarSSE, "Pairwise diversity" tables.
    """
    preds = _as_member_predictions(
        member_probs_or_preds, "member_probs_or_preds"
    )
    # A row at a time keeps memory at O(M * n) instead of O(M^2 * n).
    return np.stack([np.mean(row != preds, axis=-1) for row in preds])


def agreement_matrix(member_probs_or_preds):
    """Percentage of samples that each pair of members classifies the same.

    Args:
        member_probs_or_preds: member labels of shape
            `(num_members, num_samples)` or member probabilities of shape
            `(num_members, num_samples, num_classes)`.

    Returns:
        Symmetric float array of shape `(num_members, num_members)` in
        `[0, 100]` with a diagonal of exactly 100;
        `agreement_matrix(x) == 100 * (1 - pairwise_disagreement(x))`.

    Example:

    >>> agreement_matrix([[0, 1], [0, 0]])
    array([[100.,  50.],
           [ 50., 100.]])

    Reference:
        Bukowski & Dzwinel (2020), SuperNet thesis, Figs. 20 and 21 ("the
        percentage of the same classifications").
    """
    return 100.0 * (1.0 - pairwise_disagreement(member_probs_or_preds))


def mean_off_diagonal(matrix):
    """Mean of the off-diagonal entries of a square matrix.

    Summarises a pairwise matrix such as `agreement_matrix` by the mean over
    all ordered pairs of distinct members, leaving out each member's
    comparison with itself.

    Args:
        matrix: square array-like of shape `(n, n)` with `n >= 2`.

    Returns:
        Python float.

    Example:

    >>> mean_off_diagonal([[100.0, 50.0], [70.0, 100.0]])
    60.0

    Reference:
        Bukowski & Dzwinel (2020), SuperNet thesis, Figs. 20 and 21 (mean
        percentage of the same classifications between two nets).
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or len(matrix) < 2:
        raise ValueError(f"Argument `matrix` must be square with at least 2 rows. Received: shape={matrix.shape}")
    mask = ~np.eye(len(matrix), dtype=bool)
    return float(matrix[mask].mean())


def diversity(y_true, member_probs):
    """Normalised diversity: mean pairwise disagreement / mean member error.

    `100 * mean_{i<j} D(i, j) / mean_m err(m)`, where `D` is the
    disagreement and `err(m) = 1 - accuracy(m)`. Dividing by the error
    makes ensembles of weak and strong models comparable: two models with
    10% error that never err on the same sample score 200.

    Edge cases: a single member gives 0.0. If every member is perfect, all
    members predict `y_true`, so the disagreement is 0 as well and the
    result is defined as 0.0 (the ratio can never be "x / 0" with x > 0).

    Args:
        y_true: int array of shape `(num_samples,)`.
        member_probs: member probabilities of shape
            `(num_members, num_samples, num_classes)`, or member labels of
            shape `(num_members, num_samples)`.

    Returns:
        Float >= 0 (a percentage-like number, as in the StarSSE tables).

    Example:

    >>> diversity([0, 0, 0, 0], [[0, 0, 0, 1], [0, 0, 1, 0]])
    200.0

    Reference:
        Sadrtdinov et al. (2023), "To Stay or Not to Stay in the Pre-train
        Basin", StarSSE tables ("div.").
    """
    preds = _as_member_predictions(member_probs, "member_probs")
    num_classes = None
    if np.asarray(member_probs).ndim == 3:
        num_classes = np.asarray(member_probs).shape[-1]
    y_true = _as_y_true(y_true, preds.shape[1], num_classes)
    num_members = preds.shape[0]
    if num_members < 2:
        return 0.0
    pairwise = pairwise_disagreement(preds)
    upper = np.triu_indices(num_members, k=1)
    mean_disagreement = float(np.mean(pairwise[upper]))
    mean_error = float(np.mean(preds != y_true[None, :]))
    if mean_error == 0.0:
        return 0.0
    return 100.0 * mean_disagreement / mean_error


def linear_cka(x, y):
    """Linear centered kernel alignment between two representations.

    With column-centered `X` and `Y`,
    `CKA = ||Y^T X||_F^2 / (||X^T X||_F * ||Y^T Y||_F)`. It is 1 for
    identical representations and invariant to orthogonal transforms and
    isotropic scaling of either one.

    Args:
        x: array of shape `(num_samples, d1)`.
        y: array of shape `(num_samples, d2)`, same samples as `x`.

    Returns:
        Float in `[0, 1]`.

    Example:

    >>> x = np.random.default_rng(0).normal(size=(50, 4))
    >>> round(linear_cka(x, 3.0 * x), 6)
    1.0

    Reference:
        Kornblith et al. (2019), "Similarity of Neural Network
        Representations Revisited", Eq. 5 (linear kernel).
    """
    arrays = []
    for name, value in (("x", x), ("y", y)):
        value = np.asarray(value, dtype=np.float64)
        if value.ndim != 2 or 0 in value.shape:
            raise ValueError(
                f"Argument `{name}` must be a non-empty 2-D array of shape "
                f"(num_samples, num_features). Received: {name}.shape="
                f"{value.shape}"
            )
        _check_finite(value, name)
        arrays.append(value - value.mean(axis=0, keepdims=True))
    x, y = arrays
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"Arguments `x` and `y` must have the same number of samples. "
            f"Received: x.shape={x.shape}, y.shape={y.shape}"
        )
    if x.shape[0] >= max(x.shape[1], y.shape[1]):
        cross = np.sum((y.T @ x) ** 2)
        norm_x = np.linalg.norm(x.T @ x)
        norm_y = np.linalg.norm(y.T @ y)
    else:
        # Same quantities via n x n Gram matrices: ||Y^T X||_F^2 = <K_X, K_Y>.
        gram_x, gram_y = x @ x.T, y @ y.T
        cross = np.sum(gram_x * gram_y)
        norm_x = np.linalg.norm(gram_x)
        norm_y = np.linalg.norm(gram_y)
    if norm_x == 0 or norm_y == 0:
        raise ValueError(
            "Arguments `x` and `y` must not be constant across samples "
            "(CKA is undefined for a zero-variance representation). "
            f"Received: ||X^T X||={norm_x}, ||Y^T Y||={norm_y}"
        )
    return float(cross / (norm_x * norm_y))


def knn_accuracy(embedding, labels, k=5):
    """Leave-one-out k-nearest-neighbour accuracy of an embedding.

    Each point is classified by a majority vote of its `k` nearest other
    points (Euclidean, the point itself excluded); the result is the
    fraction classified correctly. Tie rule: among the classes with the
    most votes, the one that occurs first in distance order (the class of
    the nearest tied neighbour) wins. For `k=5` this is the thesis's
    "5-nn metric" of how well classes separate in an embedding.

    Args:
        embedding: array of shape `(num_samples, num_features)`.
        labels: int array of shape `(num_samples,)`.
        k: int, `1 <= k < num_samples`.

    Returns:
        Float in `[0, 1]`.

    Example:

    >>> emb = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    >>> knn_accuracy(emb, [0, 0, 0, 1, 1, 1], k=2)
    1.0

    Reference:
        Bukowski & Dzwinel (2020), SuperNet thesis, Figs. 3, 14 and 15
        ("5-nn metric", after Dzwinel et al. 2019, arXiv:1902.01108).
    """
    from sklearn.neighbors import NearestNeighbors

    embedding = np.asarray(embedding, dtype=np.float64)
    if embedding.ndim != 2 or 0 in embedding.shape:
        raise ValueError(
            f"Argument `embedding` must be a non-empty 2-D array of shape "
            f"(num_samples, num_features). Received: "
            f"embedding.shape={embedding.shape}"
        )
    _check_finite(embedding, "embedding")
    num_samples = embedding.shape[0]
    labels = _as_y_true(labels, num_samples, None, name="labels")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not (
        1 <= k < num_samples
    ):
        raise ValueError(
            f"Argument `k` must be an int with 1 <= k < num_samples "
            f"({num_samples}). Received: k={k}"
        )
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.reshape(-1)
    num_codes = int(codes.max()) + 1
    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(embedding)
    _, index = neighbours.kneighbors(embedding)
    # With duplicate points the query point need not come first; drop it
    # wherever it is, or the farthest neighbour if it is absent.
    rows = np.arange(num_samples)
    is_self = index == rows[:, None]
    drop = np.where(is_self.any(axis=1), np.argmax(is_self, axis=1), k)
    keep = np.ones_like(index, dtype=bool)
    keep[rows, drop] = False
    neighbour_codes = codes[index[keep].reshape(num_samples, k)]

    votes = np.zeros((num_samples, num_codes))
    first_rank = np.full((num_samples, num_codes), k)
    for rank in reversed(range(k)):
        np.add.at(votes, (rows, neighbour_codes[:, rank]), 1)
        first_rank[rows, neighbour_codes[:, rank]] = rank
    # Votes differ by >= 1 and ranks by < k + 1, so votes dominate.
    predicted = np.argmax(votes * (k + 1) - first_rank, axis=1)
    return float(np.mean(predicted == codes))


# === Combiners ===


def softmax_vote(member_probs):
    """Ensemble by averaging member probabilities ("soft voting").

    Args:
        member_probs: array of shape `(num_members, num_samples, num_classes)`.

    Returns:
        Array of shape `(num_samples, num_classes)`.

    Example:

    >>> softmax_vote([[[1.0, 0.0]], [[0.5, 0.5]]])
    array([[0.75, 0.25]])
    """
    return np.mean(_as_member_probs(member_probs), axis=0)


def majority_vote(member_probs_or_preds, num_classes=None):
    """Ensemble by plurality vote of the members' predicted labels.

    Tie rules:

    - given probabilities `(M, n, C)`: among the classes with the most
      votes, the one with the highest probability summed over members wins
      (then the lowest class index if that ties too);
    - given labels `(M, n)`: the lowest class index among the tied classes
      wins.

    Args:
        member_probs_or_preds: member probabilities of shape
            `(num_members, num_samples, num_classes)`, or member labels of
            shape `(num_members, num_samples)`.
        num_classes: optional int. For labels, the number of classes
            (default `max label + 1`); for probabilities it must equal
            `num_classes` of the array if given.

    Returns:
        Int array of shape `(num_samples,)`.

    Example:

    >>> majority_vote([[0, 1], [2, 1], [2, 0]])
    array([2, 1])
    """
    array = _stack_members(member_probs_or_preds, "member_probs_or_preds")
    if num_classes is not None and (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, (int, np.integer))
        or num_classes < 1
    ):
        raise ValueError(
            f"Argument `num_classes` must be a positive int or None. "
            f"Received: num_classes={num_classes}"
        )
    if array.ndim == 3:
        probs = _as_member_probs(array, "member_probs_or_preds")
        if num_classes is not None and num_classes != probs.shape[-1]:
            raise ValueError(
                f"Argument `num_classes` must match the last axis of "
                f"`member_probs_or_preds` ({probs.shape[-1]}). "
                f"Received: num_classes={num_classes}"
            )
        preds = np.argmax(probs, axis=-1)
        votes = _count_votes(preds, probs.shape[-1])
        tied = votes == votes.max(axis=-1, keepdims=True)
        summed = probs.sum(axis=0)
        return np.argmax(np.where(tied, summed, -np.inf), axis=-1)
    preds = _as_member_predictions(array, "member_probs_or_preds")
    if num_classes is None:
        num_classes = int(preds.max()) + 1
    elif preds.max() >= num_classes:
        raise ValueError(
            f"Argument `member_probs_or_preds` must hold labels < "
            f"num_classes={num_classes}. Received: max label {preds.max()}"
        )
    # argmax returns the first maximum, i.e. the lowest tied class index.
    return np.argmax(_count_votes(preds, num_classes), axis=-1)


def _count_votes(preds, num_classes):
    num_samples = preds.shape[1]
    votes = np.zeros((num_samples, num_classes), dtype=np.int64)
    for member_preds in preds:
        votes[np.arange(num_samples), member_preds] += 1
    return votes


def log_prob_average(member_probs, eps=1e-12):
    """Ensemble by averaging log-probabilities (normalised geometric mean).

    `softmax(mean_m log p_m)`. Compared with `softmax_vote` it rewards
    classes that every member finds plausible and punishes any confident
    veto.

    Args:
        member_probs: array of shape `(num_members, num_samples, num_classes)`.
        eps: probabilities are clipped to at least `eps` before the log.

    Returns:
        Array of shape `(num_samples, num_classes)` whose rows sum to 1.

    Example:

    >>> log_prob_average([[[0.9, 0.1]], [[0.1, 0.9]]])
    array([[0.5, 0.5]])
    """
    if not eps > 0:
        raise ValueError(f"Argument `eps` must be > 0. Received: eps={eps}")
    mean_log = np.mean(_safe_log(_as_member_probs(member_probs), eps), axis=0)
    return np.exp(mean_log - special.logsumexp(mean_log, axis=-1, keepdims=True))


_COMBINERS = {"softmax": softmax_vote, "log_prob": log_prob_average}


def ensemble_metrics(y_true, member_probs, combiner="softmax"):
    """Scores an ensemble and its members in one call.

    Args:
        y_true: int array of shape `(num_samples,)`, `num_samples >= 2`.
        member_probs: array of shape `(num_members, num_samples, num_classes)`.
        combiner: `"softmax"` (average probabilities, `softmax_vote`),
            `"log_prob"` (`log_prob_average`), or a callable mapping
            `member_probs` to `(num_samples, num_classes)` probabilities.

    Returns:
        Dict with `member_accuracy` (list of floats), `avg_member_accuracy`,
        `avg_member_nll`, and the ensemble's `accuracy`, `nll`,
        `calibrated_nll`, `ece`, `brier`, plus `diversity` of the members.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> member_probs = rng.dirichlet(np.ones(3), size=(4, 30))
    >>> y = rng.integers(0, 3, size=30)
    >>> result = ensemble_metrics(y, member_probs)
    >>> len(result["member_accuracy"])
    4

    Reference:
        The columns of the StarSSE tables ("avg. acc.", "div.", "ens.
        acc.") and of the thesis's ensemble tables.
    """
    if callable(combiner):
        combine = combiner
    elif combiner in _COMBINERS:
        combine = _COMBINERS[combiner]
    else:
        raise ValueError(
            f"Argument `combiner` must be one of {sorted(_COMBINERS)} or a "
            f"callable. Received: combiner={combiner!r}"
        )
    member_probs = _as_member_probs(member_probs)
    y_true = _as_y_true(y_true, member_probs.shape[1], member_probs.shape[2])
    probs = _as_probs(combine(member_probs), "combiner(member_probs)")
    member_accuracy = [accuracy(y_true, p) for p in member_probs]
    return {
        "member_accuracy": member_accuracy,
        "avg_member_accuracy": float(np.mean(member_accuracy)),
        "avg_member_nll": float(np.mean([nll(y_true, p) for p in member_probs])),
        "accuracy": accuracy(y_true, probs),
        "nll": nll(y_true, probs),
        "calibrated_nll": calibrated_nll(y_true, probs),
        "ece": expected_calibration_error(y_true, probs),
        "brier": brier_score(y_true, probs),
        "diversity": diversity(y_true, member_probs),
    }


# ---------------------------------------------------------------------------
# Keras wrappers: only what `fit()` on a fused `(batch, K, C)` output needs.
# ---------------------------------------------------------------------------

import keras  # noqa: E402
from keras import ops  # noqa: E402


@keras.saving.register_keras_serializable(package="supernet")
class MemberAccuracy(keras.metrics.Mean):
    """Mean accuracy of the members of a `(batch, K, C)` fused output."""

    def __init__(self, name="member_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.reshape(y_true, (-1, 1)), "int32")
        hits = ops.cast(ops.argmax(y_pred, axis=-1) == y_true, self.dtype)
        return super().update_state(ops.mean(hits, axis=1), sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

@keras.saving.register_keras_serializable(package="supernet")
class SoftmaxVoteAccuracy(keras.metrics.Mean):
    """Accuracy of the softmax vote (mean member probability) of a fused output."""

    def __init__(self, name="vote_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        vote = ops.argmax(ops.mean(y_pred, axis=1), axis=-1)
        hits = ops.cast(vote == y_true, self.dtype)
        return super().update_state(hits, sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

