"""Bootstrapped members: reproducible resamples; fused training equals K separate trainings."""

import keras
import numpy as np
import pytest

from supernet import data, training
from supernet.bootstrap import bootstrap_indices, bootstrap_weights, out_of_bag
from supernet.models import PartitionedMLP
from test_case import assert_weights_equal, seeded_data, weights_of


def test_resamples_are_reproducible_per_seed_and_member():
    first = bootstrap_indices(50, 4, seed=3)
    np.testing.assert_array_equal(first, bootstrap_indices(50, 4, seed=3))
    assert not np.array_equal(first, bootstrap_indices(50, 4, seed=4))
    # Member k's resample does not depend on how many members there are.
    np.testing.assert_array_equal(first[:2], bootstrap_indices(50, 2, seed=3))
    assert len({tuple(row) for row in first}) == 4  # members differ


def test_weights_count_the_indices():
    idx = bootstrap_indices(30, 3, seed=1, sample_size=45)
    w = bootstrap_weights(30, 3, seed=1, sample_size=45)
    assert w.shape == (30, 3) and w.dtype == np.float32
    for k in range(3):
        np.testing.assert_array_equal(w[:, k], np.bincount(idx[k], minlength=30))
    assert w.sum(axis=0).tolist() == [45.0] * 3


def test_out_of_bag_fraction_is_about_one_over_e():
    w = bootstrap_weights(20000, 2, seed=0)
    fraction = out_of_bag(w).mean(axis=0)
    np.testing.assert_allclose(fraction, (1 - 1 / 20000) ** 20000, atol=0.01)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_samples=0, num_members=2), "num_samples"),
        (dict(num_samples=5, num_members=0), "num_members"),
        (dict(num_samples=5, num_members=2, sample_size=0), "sample_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_indices(**kwargs)


def _fused(seed=0):
    keras.utils.set_random_seed(seed)
    return PartitionedMLP(20, [8, 6], num_classes=5, num_members=3)


def test_fused_with_bootstrap_weights_equals_separate_members():
    """One SGD step of the fused model with (n, K) weights == K separate fits."""
    x, y = seeded_data(n=40)
    weights = bootstrap_weights(len(x), 3, seed=11)
    fused = _fused()
    members = fused.members()
    fused.compile(optimizer=keras.optimizers.SGD(0.5))
    fused.fit(x, y, sample_weight=weights, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    for k, member in enumerate(members):
        member.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        member.fit(x, y, sample_weight=weights[:, k], batch_size=len(x), epochs=1, shuffle=False, verbose=0)
        trained = fused.member(k)
        for a, b in zip(weights_of(trained), weights_of(member)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The members really were trained on different data: without weights the result differs.
    plain = _fused()
    plain.compile(optimizer=keras.optimizers.SGD(0.5))
    plain.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    assert not np.allclose(weights_of(plain.member(0))[0], weights_of(fused.member(0))[0], atol=1e-5)


def test_weights_equal_the_resampled_dataset():
    """A full-batch step on x[idx] equals one on x weighted by the counts."""
    x, y = seeded_data(n=40)
    idx = bootstrap_indices(len(x), 1, seed=2)[0]
    w = bootstrap_weights(len(x), 1, seed=2)[:, 0]
    results = []
    for inputs, labels, sample_weight in ((x[idx], y[idx], None), (x, y, w)):
        model = _fused().member(0)
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        model.fit(inputs, labels, sample_weight=sample_weight, batch_size=len(inputs), epochs=1, shuffle=False, verbose=0)
        results.append(weights_of(model))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fit_members_passes_per_member_weights():
    ds = data.synthetic(num_classes=5, input_shape=(20,), num_train=60, num_test=10, validation_size=10)
    model = _fused()
    before = [weights_of(m) for m in model.members()]
    weights = bootstrap_weights(len(ds.x_train), 3, seed=0)
    weights[:, 1] = 0.0  # member 1 sees no data: Adam leaves it untouched
    training.fit_members(model, ds, epochs=1, batch_size=25, sample_weight=weights)
    after = [weights_of(m) for m in model.members()]
    assert_weights_equal(before[1], after[1])
    assert_weights_equal(before[0], after[0], equal=False)
    assert_weights_equal(before[2], after[2], equal=False)


def test_resampled_dataset_for_sequential_trainers():
    from supernet.bootstrap import resampled_dataset

    ds = data.synthetic(num_classes=3, input_shape=(4,), num_train=30, num_test=6, validation_size=6)
    idx = bootstrap_indices(len(ds.x_train), 2, seed=5)
    member_ds = resampled_dataset(ds, idx[1])
    np.testing.assert_array_equal(member_ds.x_train, ds.x_train[idx[1]])
    np.testing.assert_array_equal(member_ds.y_train, ds.y_train[idx[1]])
    assert member_ds.x_val is ds.x_val and member_ds.x_test is ds.x_test
    with pytest.raises(ValueError, match="indices"):
        resampled_dataset(ds, np.array([len(ds.x_train)]))
