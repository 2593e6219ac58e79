import functools
import json
import warnings

import keras
import numpy as np
import pytest
from test_case import assert_saved_model_predicts_same, assert_weights_equal, run_one_fit_step, seeded_data, weights_of

import supernet
from supernet import callbacks, metrics, schedules
from supernet.models import Ensemble, PartitionedMLP, mlp
from supernet.models.ensemble import COMBINERS, combine_member_probs

D, C, K = 8, 3, 4
X, Y = seeded_data(n=48, d=D, classes=C, seed=1)

# The functions of `supernet.metrics` each combiner must reproduce, on
# `(K, n, C)` member probabilities.
REFERENCE = {
    "softmax": metrics.softmax_vote,
    "log_prob": metrics.log_prob_average,
    "majority": lambda member_probs: np.eye(C)[metrics.majority_vote(member_probs)],
}


def _members(num_members=K, seed=0):
    """Seeded MLPs with dropout (which must stay off) and disagreeing random weights."""
    keras.utils.set_random_seed(seed)
    members = [mlp(D, [16], C, dropout=0.5, name=f"m{k}") for k in range(num_members)]
    rng = np.random.default_rng(seed)
    for member in members:
        member.set_weights([rng.normal(size=w.shape).astype("float32") for w in member.get_weights()])
    return members


def _fused():
    return PartitionedMLP.from_members(_members())


def _snapshots(directory=None):
    """`SnapshotEnsemble.models()` of a short run: K models sharing one name."""
    keras.utils.set_random_seed(0)
    model = mlp(D, [16], C, dropout=0.5)
    schedule = schedules.SnapshotCosine(0.1, total_steps=K * 2, num_cycles=K)
    model.compile(keras.optimizers.SGD(schedule), "sparse_categorical_crossentropy")
    snapshots = callbacks.SnapshotEnsemble(schedule, directory=directory)
    model.fit(X, Y, batch_size=len(X) // 2, epochs=K, shuffle=False, callbacks=[snapshots], verbose=0)
    return snapshots.models()


MEMBER_KINDS = {
    "list": _members,
    "fused": _fused,
    "snapshots": _snapshots,
    "fused-and-plain": lambda: [_fused(), *_members(num_members=1, seed=5)],
}


def _loop_member_probs(members):
    """`(K, n, C)` probabilities from predicting with every member in turn."""
    members = [members] if isinstance(members, keras.Model) else members
    probs = []
    for member in members:
        if isinstance(member, PartitionedMLP):
            probs.extend(m.predict(X, verbose=0) for m in member.members())
        else:
            probs.append(member.predict(X, verbose=0))
    return np.stack(probs)


def _assert_matches_reference(output, member_probs, combiner):
    expected = REFERENCE[combiner](member_probs)
    assert output.shape == (len(X), C)
    np.testing.assert_array_equal(np.argmax(output, axis=-1), np.argmax(expected, axis=-1))
    if combiner == "majority":
        np.testing.assert_array_equal(output, expected)
    else:
        np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(output.sum(axis=-1), 1.0, rtol=1e-5)


@functools.cache
def _members_and_loop_probs(kind):
    """Members of `kind` and their loop probabilities, built once: `Ensemble` copies its members, never changes them."""
    members = MEMBER_KINDS[kind]()
    return members, _loop_member_probs(members)


@pytest.mark.parametrize("kind", sorted(MEMBER_KINDS))
@pytest.mark.parametrize("combiner", COMBINERS)
def test_ensemble_equals_metrics_combiner_over_the_member_loop(combiner, kind):
    members, member_probs = _members_and_loop_probs(kind)
    model = Ensemble(members, combiner=combiner)
    assert model.num_members == len(member_probs) and model.num_classes == C
    _assert_matches_reference(model.predict(X, verbose=0), member_probs, combiner)


def test_fused_ensemble_equals_combiner_of_its_member_axis():
    fused = _fused()
    member_probs = np.moveaxis(fused.predict(X, verbose=0), 1, 0)  # (batch, K, C) -> (K, batch, C)
    for combiner in COMBINERS:
        _assert_matches_reference(Ensemble(fused, combiner=combiner).predict(X, verbose=0), member_probs, combiner)


def test_majority_breaks_ties_as_majority_vote():
    _, member_probs = _members_and_loop_probs("list")
    votes = np.stack([np.bincount(row, minlength=C) for row in np.argmax(member_probs, axis=-1).T])
    tied = (votes == votes.max(axis=1, keepdims=True)).sum(axis=1) > 1
    assert tied.any(), "the data must contain tied votes for this test to mean anything"
    # Two tie rules side by side: summed probability picks class 2, then the lowest index picks 0.
    hand = np.array(
        [
            [[0.5, 0.3, 0.2], [0.6, 0.4, 0.0]],
            [[0.1, 0.2, 0.7], [0.0, 0.4, 0.6]],
        ],
        "float32",
    )
    combined = keras.ops.convert_to_numpy(combine_member_probs(np.moveaxis(hand, 0, 1), "majority"))
    np.testing.assert_array_equal(np.argmax(combined, axis=-1), [2, 0])
    np.testing.assert_array_equal(np.argmax(combined, axis=-1), metrics.majority_vote(hand))


def test_members_are_frozen_copies_in_inference_mode():
    members = _members()
    before = weights_of(members[0])
    model = Ensemble(members)
    assert model.trainable_weights == [] and all(m.trainable for m in members)
    assert [m.name for m in model.members] == [f"member_{k}" for k in range(K)]
    # Dropout 0.5 in every member: a training-mode call would differ.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(X, training=True)), model.predict(X, verbose=0), rtol=1e-6)
    members[0].set_weights([np.zeros_like(w) for w in before])
    assert_weights_equal(before, weights_of(model.members[0]))


def test_train_members_trains_the_copies_only():
    members = _snapshots()  # clones sharing one name still build one graph
    before = weights_of(members[0])
    model = Ensemble(members, train_members=True)
    assert len(model.trainable_weights) == sum(len(m.trainable_weights) for m in members)
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    run_one_fit_step(model, X, Y)
    assert_weights_equal(before, weights_of(members[0]))
    assert_weights_equal(before, weights_of(model.members[0]), equal=False)


@pytest.mark.parametrize("combiner", COMBINERS)
def test_evaluate_reports_keras_accuracy_of_the_vote(combiner):
    members, member_probs = _members_and_loop_probs("list")
    expected = REFERENCE[combiner](member_probs)
    model = Ensemble(members, combiner=combiner)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    result = model.evaluate(X, Y, batch_size=16, verbose=0, return_dict=True)
    assert result["accuracy"] == pytest.approx(metrics.accuracy(Y, expected), abs=1e-6)
    assert 0.0 < result["accuracy"] < 1.0
    if combiner == "majority":
        assert np.isfinite(result["loss"])
    else:
        assert result["loss"] == pytest.approx(metrics.nll(Y, expected), rel=1e-4)


# Each combiner once, each member kind at least once.
@pytest.mark.parametrize("combiner, kind", [("softmax", "list"), ("log_prob", "fused"), ("majority", "fused")])
def test_keras_file_round_trip_predicts_the_same(combiner, kind, tmp_path):
    model = Ensemble(_members_and_loop_probs(kind)[0], combiner=combiner, eps=1e-9, name="voters")
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loaded = assert_saved_model_predicts_same(model, X, tmp_path)
    assert isinstance(loaded, Ensemble) and loaded.name == "voters"
    assert loaded.trainable_weights == []  # still frozen after loading
    assert json.dumps(loaded.get_config(), sort_keys=True) == json.dumps(model.get_config(), sort_keys=True)
    assert loaded.evaluate(X, Y, verbose=0) == model.evaluate(X, Y, verbose=0)


@pytest.mark.parametrize("source", ["snapshots-on-disk", "fitted-with-adam"])
def test_compiled_members_leave_their_optimizers_behind(source, tmp_path):
    if source == "snapshots-on-disk":
        members = _snapshots(directory=str(tmp_path / "snapshots"))  # from `load_model`
    else:
        members = _members(num_members=2)
        for member in members:
            member.compile("adam", "sparse_categorical_crossentropy")
            run_one_fit_step(member, X, Y)
    assert all(m.compiled for m in members)
    model = Ensemble(members)
    assert not any(m.compiled for m in model.members)
    _assert_matches_reference(model.predict(X, verbose=0), _loop_member_probs(members), "softmax")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # e.g. "Skipping variable loading for optimizer"
        assert_saved_model_predicts_same(model, X, tmp_path)


def test_config_round_trip():
    model = Ensemble(_members(num_members=2), combiner="log_prob", eps=1e-6)
    clone = Ensemble.from_config(model.get_config())
    assert clone.get_config() == model.get_config() and clone.trainable_weights == []
    assert (clone.combiner, clone.eps, clone.train_members) == ("log_prob", 1e-6, False)


def test_exported_at_the_top_level():
    assert supernet.Ensemble is Ensemble and "Ensemble" in supernet.__all__


def _single(input_dim=D, num_classes=C):
    return mlp(input_dim, [4], num_classes)


BAD_INPUTS = {
    "empty": (lambda: Ensemble([]), r"Argument `members` must be a non-empty list of Keras models\. Received: members=\[\]"),
    "not-a-model": (lambda: Ensemble([_single(), "model"]), r"Argument `members` must hold only keras\.Model instances\. Received: members\[1\] of type str"),
    "not-built": (lambda: Ensemble([keras.Sequential([keras.layers.Dense(C)])]), r"Argument `members` must hold built models"),
    "input-shapes": (lambda: Ensemble([_single(), _single(input_dim=D + 1)]), r"Argument `members` must all have the same input shape\. Received: .*\[\(8,\), \(9,\)\]"),
    "class-counts": (lambda: Ensemble([_single(), _single(num_classes=C + 1)]), r"Argument `members` must all predict the same known number of classes\. Received: .*\[3, 4\]"),
    "fused-class-counts": (lambda: Ensemble([PartitionedMLP(D, [4], 4, num_members=2), _single()]), r"same known number of classes\. Received: .*\[4, 3\]"),
    "combiner": (lambda: Ensemble([_single()], combiner="mean"), r"Argument `combiner` must be one of \('softmax', 'log_prob', 'majority'\)\. Received: combiner='mean'"),
    "eps": (lambda: Ensemble([_single()], eps=0.0), r"Argument `eps` must be a float in \(0, 1\)\. Received: eps=0\.0"),
    "train_members": (lambda: Ensemble([_single()], train_members="yes"), r"Argument `train_members` must be a bool"),
    "diverged": (lambda: Ensemble([_diverged()]), r"Argument `members` must hold models with finite weights"),
}


def _diverged():
    member = _single()
    member.set_weights([np.full_like(w, np.nan) for w in member.get_weights()])
    return member


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_raise_in_keras_voice(case):
    build, message = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=message):
        build()
