"""Bad input gets a clear `ValueError` naming the argument and the received value.

One parametrized case per kind of bad input of the Reliability issue: wrong
shapes or dtypes, labels out of range, members that do not fit together,
K < 1, `downscale <= 0`, bad schedule arguments, empty or one-class data,
NaN or inf in inputs. Each message is checked for Keras's wording:
"Argument `name` must ... Received: name...". Every case fails before any
training step runs.
"""

import keras
import numpy as np
import pytest
from test_case import seeded_data

import supernet
from supernet import data, metrics, schedules, soups, training, transfer
from supernet.layers import GroupedDense
from supernet.models import mlp, small_resnet

X, Y = seeded_data(n=24, d=6, classes=3)
PROBS = np.full((24, 3), 1 / 3)


def _ds(x=X, y=Y, num_classes=3):
    """A Dataset; validation and test reuse the first samples."""
    return data.Dataset("t", x, y, x[:4], y[:4], x[:4], y[:4], num_classes, tuple(np.shape(x)[1:]), tuple(str(c) for c in range(num_classes)))


def _with(value, where=(0, 0)):
    x = X.copy()
    x[where] = value
    return x


def _fused(input_dim=6, num_classes=3):
    return supernet.PartitionedMLP(input_dim, [4], num_classes=num_classes, num_members=2)


def _image_ds(y):
    x = np.random.default_rng(0).uniform(size=(len(y), 8, 8, 3)).astype("float32")
    return _ds(x, y)


def _pretrained():
    return small_resnet((8, 8, 3), 3, stages=(1,), width=4, seed=0)


CASES = {
    # === Shapes and dtypes ===
    "probs-1d": (lambda: metrics.accuracy(Y, PROBS[:, 0]), r"Argument `probs` must be .*2-D.*Received: probs.shape=\(24,\)"),
    "member-probs-2d": (lambda: metrics.softmax_vote(PROBS), r"Argument `member_probs` must be .*3-D.*Received: member_probs.shape=\(24, 3\)"),
    "labels-2d": (lambda: supernet.fit_head(supernet.build_supernet([mlp(6, [4], 3)]), X, np.zeros((24, 3)), epochs=1), r"Argument `y` must be a 1-D array.*Received: y.shape=\(24, 3\)"),
    "labels-length": (lambda: supernet.fit_head(supernet.build_supernet([mlp(6, [4], 3)]), X, Y[:5], epochs=1), r"Argument `y` must have one label per sample \(24\). Received: len\(y\)=5"),
    "dataset-vs-model-input-shape": (lambda: training.fit_members(_fused(input_dim=5), _ds(), epochs=1), r"Argument `ds` must have inputs of the model's shape \(5,\). Received: ds.x_train.shape=\(24, 6\)"),
    "labels-not-integers": (lambda: metrics.accuracy(Y + 0.5, PROBS), r"Argument `y_true` must hold integer class labels"),
    "inputs-not-numeric": (lambda: training.fit_members(_fused(), _ds(x=X.astype(str)), epochs=1), r"Argument `ds.x_train` must be a numeric array. Received: ds.x_train with dtype=<U"),
    # === Labels out of range ===
    "labels-too-large": (lambda: metrics.accuracy(np.full(24, 5), PROBS), r"Argument `y_true` must hold labels >= 0 and < 3. Received: y_true with min=5, max=5"),
    "labels-negative": (lambda: _ds(y=Y - 1), r"Argument `y_train` must hold labels >= 0 and < 3. Received: y_train with min=-1"),
    "dataset-labels-too-large": (lambda: _ds(y=Y + 1), r"Argument `y_train` must hold labels >= 0 and < 3. Received: y_train with min=1, max=3"),
    "head-labels-too-large": (lambda: supernet.fit_head(supernet.build_supernet([mlp(6, [4], 3)]), X, Y + 1, epochs=1), r"Argument `y` must hold labels >= 0 and < 3. Received: y with min=1, max=3"),
    "validation-labels-too-large": (lambda: supernet.build_supernet([mlp(6, [4], 3)], downscale="auto", validation_data=(X, Y + 3)), r"Argument `validation_data\[1\]` must hold labels >= 0 and < 3. Received: validation_data\[1\] with min=3, max=5"),
    # === Members that do not fit together ===
    "members-class-counts": (lambda: supernet.build_supernet([mlp(6, [4], 3), mlp(6, [4], 4)]), r"Argument `members` must all predict the same number of classes. Received: members with num_classes=\[3, 4\]"),
    "members-input-shapes": (lambda: supernet.build_supernet([mlp(6, [4], 3), mlp(7, [4], 3)]), r"Argument `members` must all have the same input shape. Received: members with input shapes \[\(6,\), \(7,\)\]"),
    "soup-architectures": (lambda: soups.uniform_soup([mlp(6, [4], 3), mlp(6, [5], 3)]), r"Argument `models` must all have the same architecture.*Received: models"),
    "vote-members-class-counts": (lambda: metrics.softmax_vote([PROBS, np.full((24, 4), 0.25)]), r"Argument `member_probs` must hold members of one shape.*Received: member shapes \[\(24, 3\), \(24, 4\)\]"),
    "majority-vote-members-class-counts": (lambda: metrics.majority_vote([PROBS, np.full((24, 4), 0.25)]), r"Argument `member_probs_or_preds` must hold members of one shape.*Received: member shapes"),
    "dataset-vs-model-classes": (lambda: training.fit_members(_fused(num_classes=2), _ds(), epochs=1), r"Argument `ds` must have as many classes as the model \(2\). Received: ds.num_classes=3"),
    # === K < 1 ===
    "partitioned-mlp-K0": (lambda: supernet.PartitionedMLP(6, [4], 3, num_members=0), r"Argument `num_members` must be an int >= 1. Received: num_members=0"),
    "partition-widths-K0": (lambda: supernet.partition_widths([8], 0), r"Argument `num_members` must be >= 1. Received: num_members=0"),
    "grouped-dense-K0": (lambda: GroupedDense(0, 4), r"Argument `num_members` must be an int >= 1. Received: num_members=0"),
    "local-de-K0": (lambda: transfer.local_de(_pretrained(), _image_ds(Y), num_members=0, epochs=1, lr=0.01), r"Argument `num_members` must be an int >= 1. Received: num_members=0"),
    "star-sse-K-negative": (lambda: transfer.star_sse(_pretrained(), _image_ds(Y), num_members=-2, epochs=1, lr=0.01, fge_lr=0.01, fge_epochs=1), r"Argument `num_members` must be an int >= 1. Received: num_members=-2"),
    "members-empty": (lambda: supernet.build_supernet([]), r"Argument `members` must contain at least one model. Received: members=\[\]"),
    # === downscale <= 0 ===
    "downscale-0": (lambda: supernet.build_supernet([mlp(6, [4], 3)], downscale=0), r"Argument `downscale` must be > 0 or 'auto'. Received: downscale=0"),
    "downscale-negative": (lambda: supernet.build_supernet([mlp(6, [4], 3)], downscale=-2.0), r"Argument `downscale` must be > 0 or 'auto'. Received: downscale=-2.0"),
    "downscale-nan": (lambda: supernet.build_supernet([mlp(6, [4], 3)], downscale=float("nan")), r"Argument `downscale` must be > 0 or 'auto'. Received: downscale=nan"),
    # === Schedules ===
    "fge-cycle-length-0": (lambda: schedules.FGECyclic(0.1, 0.01, cycle_steps=0), r"Argument `cycle_steps` must be an integer >= 2. Received: cycle_steps=0"),
    "restarts-cycle-length-0": (lambda: schedules.CosineRestarts(0.1, cycle_steps=0), r"Argument `cycle_steps` must be an integer >= 1. Received: cycle_steps=0"),
    "restarts-first-cycle-negative": (lambda: schedules.CosineRestarts(0.1, cycle_steps=4, first_cycle_steps=-1), r"Argument `first_cycle_steps` must be an integer >= 1. Received: first_cycle_steps=-1"),
    "snapshot-lr-negative": (lambda: schedules.SnapshotCosine(-0.1, 10, 2), r"Argument `initial_lr` must be >= 0. Received: initial_lr=-0.1"),
    "fge-lr-min-negative": (lambda: schedules.FGECyclic(0.1, -0.01, cycle_steps=4), r"Argument `lr_min` must be >= 0. Received: lr_min=-0.01"),
    "restarts-lr-nan": (lambda: schedules.CosineRestarts(float("nan"), cycle_steps=4), r"Argument `peak_lr` must be >= 0. Received: peak_lr=nan"),
    "more-cycles-than-steps": (lambda: schedules.SnapshotCosine(0.1, total_steps=3, num_cycles=5), r"Argument `num_cycles` must be <= `total_steps`. Received: num_cycles=5, total_steps=3"),
    "more-cycles-than-steps-closed-form": (lambda: schedules.snapshot_cosine_lr(0, 0.1, 3, 5), r"Argument `num_cycles` must be <= `total_steps`. Received: num_cycles=5, total_steps=3"),
    # === Empty or one-class data ===
    "train-empty": (lambda: training.fit_members(_fused(), _ds(X[:0], Y[:0]), epochs=1), r"Argument `ds.x_train` must hold at least one sample. Received: ds.x_train.shape=\(0, 6\)"),
    "train-one-class": (lambda: training.fit_members(_fused(), _ds(y=np.zeros(24, "int64")), epochs=1), r"Argument `ds.y_train` must contain at least 2 distinct classes. Received: ds.y_train with only class\(es\) \[0\]"),
    "head-one-class": (lambda: supernet.fit_head(supernet.build_supernet([mlp(6, [4], 3)]), X, np.full(24, 2), epochs=1), r"Argument `y` must contain at least 2 distinct classes. Received: y with only class\(es\) \[2\]"),
    "transfer-one-class": (lambda: transfer.local_de(_pretrained(), _image_ds(np.ones(24, "int64")), num_members=1, epochs=1, lr=0.01), r"Argument `ds.y_train` must contain at least 2 distinct classes"),
    "supermodel-empty": (lambda: training.supermodel([mlp(6, [4], 3)], _ds(X[:0], Y[:0]), downscale=1.0), r"Argument `ds.x_train` must hold at least one sample"),
    "metrics-empty": (lambda: metrics.accuracy(Y[:0], PROBS[:0]), r"Argument `probs` must be a non-empty 2-D array.*Received: probs.shape=\(0, 3\)"),
    # === NaN or inf in inputs ===
    "train-inputs-nan": (lambda: training.fit_members(_fused(), _ds(x=_with(np.nan)), epochs=1), r"Argument `ds.x_train` must contain only finite values \(no NaN or inf\). Received: ds.x_train with 1 non-finite entries"),
    "train-inputs-inf": (lambda: training.fit_members(_fused(), _ds(x=_with(np.inf, (5, 2))), epochs=1), r"Argument `ds.x_train` must contain only finite values \(no NaN or inf\). Received: ds.x_train with 1 non-finite entries"),
    "head-inputs-inf": (lambda: supernet.fit_head(supernet.build_supernet([mlp(6, [4], 3)]), _with(-np.inf), Y, epochs=1), r"Argument `x` must contain only finite values \(no NaN or inf\). Received: x with 1 non-finite entries"),
    "validation-inputs-nan": (lambda: supernet.build_supernet([mlp(6, [4], 3)], downscale="auto", validation_data=(_with(np.nan), Y)), r"Argument `validation_data\[0\]` must contain only finite values.*Received: validation_data\[0\] with 1 non-finite entries"),
    "probs-nan": (lambda: metrics.nll(Y, np.full((24, 3), np.nan)), r"Argument `probs` must contain only finite values \(no NaN or inf\). Received: probs with 72 non-finite entries"),
    "member-probs-inf": (lambda: metrics.softmax_vote(np.full((2, 24, 3), np.inf)), r"Argument `member_probs` must contain only finite values \(no NaN or inf\). Received: member_probs with 144 non-finite entries"),
    # === Model builders ===
    "mlp-one-class": (lambda: mlp(6, [4], 1), r"Argument `num_classes` must be an int >= 2. Received: num_classes=1"),
    "mlp-input-dim-0": (lambda: mlp(0, [4], 3), r"Argument `input_dim` must be an int >= 1. Received: input_dim=0"),
    "mlp-width-0": (lambda: mlp(6, [4, 0], 3), r"Argument `hidden_units` must list positive widths. Received: hidden_units=\[4, 0\]"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_raises_a_clear_value_error(case):
    call, message = CASES[case]
    keras.utils.set_random_seed(0)
    with pytest.raises(ValueError, match=message):
        call()


def test_a_valid_call_of_each_trainer_passes_the_checks():
    # The same helpers accept good data: the checks reject only what they name.
    keras.utils.set_random_seed(0)
    result = training.fit_members(_fused(), _ds(), epochs=1, batch_size=8)
    assert len(result["history"]["loss"]) == 1
    head = supernet.build_supernet([mlp(6, [4], 3)], downscale="auto", validation_data=(X, Y))
    assert len(supernet.fit_head(head, X, Y, epochs=1, verbose=0).history["loss"]) == 1
