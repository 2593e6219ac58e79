"""Soak: train and merge 20 members in one process with bounded memory.

Marked `slow` (not run by default or in CI): `pytest -m slow tests/test_soak.py`.
Each round trains one more member, merges all members so far into a
SuperNet (copied head, re-trained for one epoch), scores it, and builds a
uniform soup of all members. The resident set size (RSS) is read after each
round; after a warm-up of 3 rounds (TensorFlow's graph caches and thread
pools) it must grow by less than `PER_MEMBER_MB` per member on average and
never jump by more than `JUMP_MB` between two rounds. The members are kept
alive on purpose (they are the ensemble), so some growth per member is
expected; what must not grow is the merging itself: `EXTRA_MERGES` more
merges of the same 20 members must add less than `PER_MERGE_MB` each.

Measured (2 busy CPU cores, TF 2.21, Keras 3.15.1): RSS 848 MB after member
1, 1107 MB after member 20 (13.6 MB per member after warm-up, largest step
17.5 MB), then 3.3 MB per extra merge.
"""

import gc

import keras
import numpy as np
import pytest

import supernet
from supernet import data, metrics, soups
from supernet.models import mlp

NUM_MEMBERS = 20
EXTRA_MERGES = 5
WARM_UP = 3
# Measured on the 2-core CPU box (TF 2.21, Keras 3.15): ~13 MB per member,
# of which ~8 MB are the traced train/predict functions a kept, compiled
# Keras model holds; see the README's Reliability section.
PER_MEMBER_MB = 20.0
JUMP_MB = 40.0
# Re-merging the same 20 members must not accumulate memory (measured:
# ~3 MB per merge of 20 members, residue of TensorFlow's tracing).
PER_MERGE_MB = 8.0


def _rss_mb():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * 4096 / 2**20


def _merge(members, ds):
    head = supernet.build_supernet(members, downscale="auto", validation_data=(ds.x_val, ds.y_val))
    supernet.fit_head(head, ds.x_train, ds.y_train, epochs=1, verbose=0)
    accuracy = metrics.accuracy(ds.y_test, head.predict(ds.x_test, verbose=0))
    soups.uniform_soup(members)
    del head
    gc.collect()
    return accuracy


def soak(num_members=NUM_MEMBERS, extra_merges=EXTRA_MERGES, log=None):
    """RSS in MB after each round (train one more member, merge all); then after extra merges.

    Returns:
        `(rss_per_member, rss_per_extra_merge)`, lists of MB.
    """
    ds = data.digits(validation_size=0.2, seed=0)
    members, rss, rss_merges = [], [], []
    for k in range(num_members):
        keras.utils.set_random_seed(k)
        member = mlp(ds.input_shape[0], [64, 64], ds.num_classes, name=f"member_{k}")
        member.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        member.fit(ds.x_train, ds.y_train, epochs=2, batch_size=64, verbose=0)
        members.append(member)
        accuracy = _merge(members, ds)
        rss.append(_rss_mb())
        if log is not None:
            log(f"member {k + 1}: SuperNet acc {accuracy:.4f}, RSS {rss[-1]:.1f} MB")
    for i in range(extra_merges):
        accuracy = _merge(members, ds)
        rss_merges.append(_rss_mb())
        if log is not None:
            log(f"extra merge {i + 1} of all {num_members}: SuperNet acc {accuracy:.4f}, RSS {rss_merges[-1]:.1f} MB")
    return rss, rss_merges


@pytest.mark.slow
def test_twenty_members_train_and_merge_with_bounded_memory():
    rss, rss_merges = soak()
    steps = np.diff(rss[WARM_UP - 1 :])
    per_member = (rss[-1] - rss[WARM_UP - 1]) / (len(rss) - WARM_UP)
    per_merge = (rss_merges[-1] - rss[-1]) / len(rss_merges)
    print(
        f"RSS after each member (MB): {[round(r, 1) for r in rss]}; mean growth after warm-up "
        f"{per_member:.2f} MB/member; extra merges: {[round(r, 1) for r in rss_merges]} ({per_merge:.2f} MB/merge)"
    )
    assert per_member < PER_MEMBER_MB, rss
    assert steps.max() < JUMP_MB, rss
    assert per_merge < PER_MERGE_MB, rss_merges


if __name__ == "__main__":
    soak(log=print)
