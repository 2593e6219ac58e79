"""Bootstrapped ensemble members: per-member resamples of the training set.

Each of `K` members sees its own bootstrap resample: `n` indices drawn with
replacement from the `n` training samples (about 63.2% distinct, the rest
out of bag). Two equivalent forms:

- `bootstrap_indices`: `(K, n)` index arrays, to build each member's
  resampled dataset (`x[indices[k]]`, or `resampled_dataset(ds, indices[k])`)
  for trainers that fit one model at a time (`model.fit`, or
  `supernet.transfer`'s trainers given the resampled `Dataset`).
- `bootstrap_weights`: `(n, K)` counts, how often each sample occurs in each
  member's resample. As a `sample_weight` of a fused model compiled with a
  `supernet.losses` loss (e.g. `PartitionedMLP` with
  `MemberwiseCrossentropy`, or `supernet.training.fit_members(...,
  sample_weight=...)`) member `k`'s loss on each batch is weighted by column
  `k`: every epoch, each member's summed gradient equals the one it would
  get from its resampled dataset.

Both draw from one seeded NumPy generator: the same seed gives the same
resamples, and `bootstrap_weights(...)[:, k]` counts exactly the indices of
`bootstrap_indices(...)[k]`.
"""

import dataclasses
import numbers

import numpy as np

__all__ = ["bootstrap_indices", "bootstrap_weights", "out_of_bag", "resampled_dataset"]


def _check(num_samples, num_members, sample_size):
    for name, value in (("num_samples", num_samples), ("num_members", num_members)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"Argument `{name}` must be an int >= 1. Received: {name}={value}")
    if sample_size is None:
        return int(num_samples)
    if not isinstance(sample_size, numbers.Integral) or isinstance(sample_size, bool) or sample_size < 1:
        raise ValueError(f"Argument `sample_size` must be None or an int >= 1. Received: sample_size={sample_size}")
    return int(sample_size)


def bootstrap_indices(num_samples, num_members, seed=0, sample_size=None):
    """Index resamples, drawn with replacement, one row per member.

    Args:
        num_samples: int, size `n` of the training set.
        num_members: int `K`, number of resamples.
        seed: int seeding the NumPy generator; member `k`'s row depends only
            on `seed` and `k` (not on `num_members`).
        sample_size: size of each resample; `None` (default) means `n`, the
            classical bootstrap.

    Returns:
        int64 array `(num_members, sample_size)` of indices in `[0, n)`.

    Example:
    >>> idx = bootstrap_indices(5, 2, seed=0)
    >>> idx.shape, bool(np.all((idx >= 0) & (idx < 5)))
    ((2, 5), True)

    Reference:
        Efron 1979; Nixon et al. 2020, "Why are bootstrapped deep ensembles
        not better?"; Shokorov 2021 (MIPT), "Bootstrapping neural-network
        ensembles".
    """
    size = _check(num_samples, num_members, sample_size)
    # One child generator per member, so member k's resample does not change
    # when more members are added.
    children = np.random.SeedSequence(seed).spawn(int(num_members))
    return np.stack([np.random.default_rng(child).integers(0, num_samples, size=size) for child in children])


def bootstrap_weights(num_samples, num_members, seed=0, sample_size=None, dtype="float32"):
    """Per-member sample weights: how often each sample is in each resample.

    Args:
        num_samples, num_members, seed, sample_size: as in `bootstrap_indices`
            (same seed, same resamples).
        dtype: dtype of the returned weights.

    Returns:
        array `(num_samples, num_members)` of counts; column `k` sums to
        `sample_size` (or `n`). Pass it as `sample_weight` to a fused
        model's `fit` (see the module docstring).

    Example:
    >>> w = bootstrap_weights(100, 3, seed=1)
    >>> w.shape, w.sum(axis=0).tolist()
    ((100, 3), [100.0, 100.0, 100.0])
    """
    indices = bootstrap_indices(num_samples, num_members, seed, sample_size)
    counts = np.stack([np.bincount(row, minlength=num_samples) for row in indices], axis=1)
    return counts.astype(dtype)


def out_of_bag(weights):
    """Boolean mask `(num_samples, num_members)`: sample not in member's resample.

    Args:
        weights: counts from `bootstrap_weights`.

    Returns:
        `weights == 0`; on average a fraction `(1 - 1/n)^n ~ 0.368` per member.
    """
    weights = np.asarray(weights)
    if weights.ndim != 2:
        raise ValueError(
            "Argument `weights` must be a 2-D array (num_samples, num_members) of counts. "
            f"Received: weights.shape={weights.shape}"
        )
    return weights == 0


def resampled_dataset(ds, indices):
    """A `supernet.data.Dataset` whose training split is `x_train[indices]`.

    Validation and test splits are kept, so a member trained on the
    resample is scored like any other.

    Args:
        ds: a `supernet.data.Dataset`.
        indices: 1-D int array, e.g. one row of `bootstrap_indices`.

    Returns:
        A new `Dataset` (the arrays are copies of the selected rows).

    Example:
    >>> from supernet import data
    >>> ds = data.digits()
    >>> idx = bootstrap_indices(len(ds.x_train), 2, seed=0)
    >>> resampled_dataset(ds, idx[1]).x_train.shape == ds.x_train.shape
    True
    """
    indices = np.asarray(indices)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(
            f"Argument `indices` must be a 1-D int array. Received: shape={indices.shape}, dtype={indices.dtype}"
        )
    if len(indices) and (indices.min() < 0 or indices.max() >= len(ds.x_train)):
        raise ValueError(
            f"Argument `indices` must lie in [0, {len(ds.x_train)}). Received: min={indices.min()}, max={indices.max()}"
        )
    return dataclasses.replace(ds, x_train=ds.x_train[indices], y_train=ds.y_train[indices])
