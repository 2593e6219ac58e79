import contextlib

import keras
import numpy as np
import pytest
from scipy import special

from supernet import metrics
from supernet.layers import FrozenModel
from supernet.models import PartitionedMLP, build_supernet, fit_head, mlp, supernet_features
from test_case import (
    assert_saved_model_predicts_same,
    assert_weights_equal,
    run_one_fit_step,
    seeded_data,
    weights_of,
)

D, C, K = 20, 5, 3
RAGGED = [[8], [4], [12]]


def _randomize(model, seed, scale=1.0):
    """Random kernels and biases (trained members have nonzero biases)."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [(scale * rng.normal(size=w.shape)).astype("float32") for w in model.get_weights()]
    )


def _sequential_members(dropout=0.0, scale=1.0):
    keras.utils.set_random_seed(0)
    members = [mlp(D, [8], C, dropout=dropout, name=f"m{k}") for k in range(K)]
    for k, member in enumerate(members):
        _randomize(member, seed=k, scale=scale)
    return members


def _fused_members():
    keras.utils.set_random_seed(0)
    members = [mlp(D, w, C) for w in RAGGED]
    for k, member in enumerate(members):
        _randomize(member, seed=k)
    return PartitionedMLP.from_members(members)


def _as_sequential(members):
    """Plain per-member Sequential views of either kind of member input."""
    return members.members() if isinstance(members, PartitionedMLP) else members


def _closed_form_logits(members, x):
    """`sum_k h_k @ W_k + mean_k b_k`, computed per member in float64 numpy."""
    logits, biases = 0.0, []
    for member in _as_sequential(members):
        dense = [layer for layer in member.layers if isinstance(layer, keras.layers.Dense)]
        h = x.astype("float64")
        for layer in dense[:-1]:
            kernel, bias = layer.get_weights()
            h = np.maximum(h @ kernel + bias, 0.0)
        kernel, bias = dense[-1].get_weights()
        logits = logits + h @ kernel
        biases.append(bias)
    return logits + np.mean(biases, axis=0)


def _probs(model, x):
    return model.predict(x, verbose=0, batch_size=len(x))


@pytest.fixture(params=["sequential", "fused"])
def members(request):
    return _sequential_members() if request.param == "sequential" else _fused_members()


# === Copied head: closed form ===


@pytest.mark.parametrize("downscale", [1.0, 4.0])
def test_copied_head_equals_closed_form(members, downscale):
    x, _ = seeded_data(d=D, classes=C)
    model = build_supernet(members, init="copy", downscale=downscale)
    expected = special.softmax(_closed_form_logits(members, x) / downscale, axis=-1)
    np.testing.assert_allclose(_probs(model, x), expected, atol=1e-5)
    assert model.supernet_info == {"init": "copy", "downscale": downscale, "num_members": K}


def test_auto_downscale_is_fitted_temperature(members):
    x_val, y_val = seeded_data(n=64, d=D, classes=C, seed=1)
    model = build_supernet(members, downscale="auto", validation_data=(x_val, y_val))
    logits = _closed_form_logits(members, x_val)
    expected_t = metrics.fit_temperature(y_val, logits)
    assert expected_t > 1.0  # summed logits of K random members are overconfident
    factor = model.supernet_info["downscale"]
    assert factor == pytest.approx(expected_t, rel=1e-3)
    np.testing.assert_allclose(
        _probs(model, x_val), special.softmax(logits / factor, axis=-1), atol=1e-5
    )


def test_auto_downscale_minimises_validation_nll():
    members = _sequential_members()
    x_val, y_val = seeded_data(n=64, d=D, classes=C, seed=1)
    nll = {}
    for downscale in (1.0, float(K), "auto"):
        model = build_supernet(members, downscale=downscale, validation_data=(x_val, y_val))
        nll[downscale] = metrics.nll(y_val, _probs(model, x_val))
    assert nll["auto"] <= nll[1.0] + 1e-6
    assert nll["auto"] <= nll[float(K)] + 1e-6
    assert nll["auto"] < nll[1.0]  # the choice mattered on this problem


def test_random_init_is_seeded_and_not_copied():
    x, _ = seeded_data(d=D, classes=C)
    members = _sequential_members()
    a = build_supernet(members, init="random", seed=7)
    b = build_supernet(members, init="random", seed=7)
    head_a = weights_of(a.get_layer("supernet_head"))
    assert_weights_equal(head_a, weights_of(b.get_layer("supernet_head")))
    assert np.all(head_a[1] == 0.0)
    copied = special.softmax(_closed_form_logits(members, x), axis=-1)
    assert not np.allclose(_probs(a, x), copied, atol=1e-3)


# === Frozen members ===


def test_fit_changes_only_the_head(members):
    x, y = seeded_data(d=D, classes=C)
    model = build_supernet(members, downscale=2.0)
    member_weights = [weights_of(m) for m in _as_sequential_members_of(members)]
    own_members = _frozen_copies(model)
    own_before = [weights_of(layer) for layer in own_members]
    head_before = weights_of(model.get_layer("supernet_head"))
    assert len(model.trainable_weights) == 2
    model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert_weights_equal(head_before, weights_of(model.get_layer("supernet_head")), equal=False)
    # The SuperNet's own copies of the members are frozen ...
    for before, layer in zip(own_before, own_members):
        assert_weights_equal(before, weights_of(layer))
    # ... and the caller's members are untouched.
    for before, member in zip(member_weights, _as_sequential_members_of(members)):
        assert_weights_equal(before, weights_of(member))


def _as_sequential_members_of(members):
    """The caller's member models (the SuperNet holds copies of them)."""
    return [members] if isinstance(members, PartitionedMLP) else members


def _frozen_copies(model):
    copies = [layer for layer in model.layers if isinstance(layer, FrozenModel)]
    assert copies, "a SuperNet with frozen members wraps them in FrozenModel"
    return copies


@pytest.mark.parametrize("kind", ["sequential", "fused"])
def test_dropout_inside_members_inactive_in_training_mode(kind):
    x, _ = seeded_data(d=D, classes=C)
    if kind == "sequential":
        members = _sequential_members(dropout=0.5)
    else:
        members = PartitionedMLP(D, [8, 8], C, num_members=K, dropout=0.5, seed=0)
    model = build_supernet(members, downscale=2.0)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(x, training=True)),
        keras.ops.convert_to_numpy(model(x, training=False)),
    )
    trainable = build_supernet(_sequential_members(dropout=0.5), train_members=True)
    assert not np.allclose(
        keras.ops.convert_to_numpy(trainable(x, training=True)),
        keras.ops.convert_to_numpy(trainable(x, training=False)),
    )
    assert not any(isinstance(layer, FrozenModel) for layer in trainable.layers)


def test_fit_head_equals_full_model_fit():
    # Full-batch steps: fit_head does not expose `shuffle`, so only one batch per
    # epoch makes the two batch orders identical. Both paths compute the same
    # float32 ops, but the features are computed in different graphs (a cached
    # predict vs inside the train step), so equality is to float tolerance.
    x, y = seeded_data(d=D, classes=C)
    members = _sequential_members()
    full = build_supernet(members, downscale=2.0)
    cached = build_supernet(members, downscale=2.0)
    assert_weights_equal(
        weights_of(full.get_layer("supernet_head")), weights_of(cached.get_layer("supernet_head"))
    )
    full.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    full.fit(x, y, batch_size=len(x), epochs=3, shuffle=False, verbose=0)
    history = fit_head(cached, x, y, batch_size=len(x), epochs=3, optimizer=keras.optimizers.SGD(0.1), verbose=0)
    assert len(history.history["loss"]) == 3
    full_head = weights_of(full.get_layer("supernet_head"))
    cached_head = weights_of(cached.get_layer("supernet_head"))
    for a, b in zip(full_head, cached_head):
        np.testing.assert_allclose(b, a, atol=1e-6)
    np.testing.assert_allclose(_probs(cached, x), _probs(full, x), atol=1e-6)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_fit_head_on_precomputed_features_equals_fit_head_on_inputs():
    x, y = seeded_data(d=D, classes=C)
    members = _sequential_members()
    on_inputs = build_supernet(members, downscale=2.0)
    on_features = build_supernet(members, downscale=2.0)
    features = supernet_features(on_features).predict(x, verbose=0)
    kwargs = dict(batch_size=len(x), epochs=3, verbose=0)
    a = fit_head(on_inputs, x, y, validation_data=(x, y), optimizer=keras.optimizers.SGD(0.1), **kwargs)
    b = fit_head(on_features, features, y, validation_data=(features, y), optimizer=keras.optimizers.SGD(0.1),
                 on_features=True, **kwargs)
    for key in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(b.history[key], a.history[key], rtol=1e-5)
    np.testing.assert_allclose(_probs(on_features, x), _probs(on_inputs, x), atol=1e-6)
    with pytest.raises(ValueError, match="on_features"):
        fit_head(on_features, x, y, epochs=1, verbose=0, on_features=True)


def test_head_l2_on_kernel_and_bias_adds_their_penalty_to_the_loss():
    x, y = seeded_data(d=D, classes=C)
    plain = build_supernet(_sequential_members(), downscale=2.0)
    penalised = build_supernet(_sequential_members(), downscale=2.0, l2=0.01, bias_l2=0.1)
    kernel, bias = weights_of(penalised.get_layer("supernet_head"))
    for model in (plain, penalised):
        model.compile(loss="sparse_categorical_crossentropy")
    penalty = 0.01 * np.sum(kernel.astype("float64") ** 2) + 0.1 * np.sum(bias.astype("float64") ** 2)
    np.testing.assert_allclose(
        penalised.evaluate(x, y, verbose=0) - plain.evaluate(x, y, verbose=0), penalty, rtol=1e-4
    )


def test_build_supernet_leaves_caller_members_trainable():
    x, y = seeded_data(d=D, classes=C)
    members = _sequential_members()
    counts = [len(m.trainable_weights) for m in members]
    build_supernet(members, downscale=2.0)
    member = members[0]
    before = weights_of(member)
    member.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", run_eagerly=True)
    run_one_fit_step(member, x, y)
    after = weights_of(member)
    assert not np.array_equal(before[0], after[0])  # hidden kernel trains
    assert [len(m.trainable_weights) for m in members] == counts


def test_fit_head_rejects_trainable_members():
    x, y = seeded_data(d=D, classes=C)
    model = build_supernet(_sequential_members(), train_members=True)
    with pytest.raises(ValueError, match="frozen"):
        fit_head(model, x, y, epochs=1, verbose=0)


# === Any Keras classifier ===

FEATURES, CLASSES, DOWNSCALE = 8, 3, 2.5
# The output shapes a member may have; the Dense layer named "out" is the one
# the head copies.
OUTPUTS = {
    "dense-softmax": lambda: [keras.layers.Dense(CLASSES, activation="softmax", name="out")],
    "activation-softmax": lambda: [keras.layers.Dense(CLASSES, name="out"), keras.layers.Activation("softmax")],
    "softmax-layer": lambda: [keras.layers.Dense(CLASSES, name="out"), keras.layers.Softmax()],
    "logits": lambda: [keras.layers.Dense(CLASSES, name="out")],
}


def _classifier(output, seed):
    """A random MLP on FEATURES inputs whose output has the shape OUTPUTS[output]."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((FEATURES,)), keras.layers.Dense(6, activation="relu"), *OUTPUTS[output]()],
        name=f"{output}_{seed}",
    )
    _randomize(model, seed)
    return model


def _mixed_precision_member(seed):
    """A member built as Keras's mixed-precision guide says: a float32 softmax layer last."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((FEATURES,))
    x = keras.layers.Dense(6, activation="relu")(inputs)
    x = keras.layers.Dense(CLASSES, name="out")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)
    model = keras.Model(inputs, outputs, name=f"mixed_{seed}")
    _randomize(model, seed)
    return model


def _copied_head_probs(members, x, downscale):
    """`softmax((sum_k z_k - sum_k b_k + mean_k b_k) / f)` from the members' own
    penultimate features h_k, with z_k = h_k W_k + b_k from their "out" layers."""
    logits, biases = 0.0, []
    for member in members:
        out = member.get_layer("out")
        h = keras.Model(member.inputs, out.input).predict(x, verbose=0, batch_size=len(x))
        kernel, bias = out.get_weights()
        logits = logits + h.astype("float64") @ kernel + bias
        biases.append(bias)
    logits = logits - np.sum(biases, axis=0) + np.mean(biases, axis=0)
    return special.softmax(logits / downscale, axis=-1)


@pytest.mark.parametrize(
    "outputs",
    [[name] * K for name in OUTPUTS] + [list(OUTPUTS)],
    ids=list(OUTPUTS) + ["one-of-each"],
)
def test_copied_head_of_any_classifier_equals_closed_form(outputs):
    x, _ = seeded_data(d=FEATURES, classes=CLASSES)
    members = [_classifier(output, seed) for seed, output in enumerate(outputs)]
    model = build_supernet(members, init="copy", downscale=DOWNSCALE)
    expected = special.softmax(_closed_form_logits(members, x) / DOWNSCALE, axis=-1)
    np.testing.assert_allclose(_probs(model, x), expected, atol=1e-5)
    np.testing.assert_allclose(_probs(model, x), _copied_head_probs(members, x, DOWNSCALE), atol=1e-5)


MIXED_POLICIES = ["mixed_float16", "mixed_bfloat16"]


@contextlib.contextmanager
def _global_policy(name):
    keras.mixed_precision.set_global_policy(name)
    try:
        yield keras.mixed_precision.global_policy()
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", MIXED_POLICIES)
def test_mixed_precision_members(policy):
    x, y = seeded_data(d=FEATURES, classes=CLASSES)
    with _global_policy(policy) as mixed:
        members = [_mixed_precision_member(seed) for seed in range(K)]
        assert members[0].get_layer("out").compute_dtype == mixed.compute_dtype
        model = build_supernet(members, downscale=DOWNSCALE)
        head = model.get_layer("supernet_head")
        assert head.compute_dtype == "float32"
        assert model.outputs[0].dtype == "float32"
        probs = _probs(model, x)
        assert probs.dtype == np.float32
        # The same half-precision features as the members: only float32
        # rounding remains, which a head computing in half precision exceeds.
        np.testing.assert_allclose(probs, _copied_head_probs(members, x, DOWNSCALE), atol=1e-5)
        full_precision = special.softmax(_closed_form_logits(members, x) / DOWNSCALE, axis=-1)
        np.testing.assert_allclose(probs, full_precision, atol=5e-2)
        # The frozen half-precision members still run inside training.
        own_before = [weights_of(layer) for layer in _frozen_copies(model)]
        head_before = weights_of(head)
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        history = run_one_fit_step(model, x, y)
        assert np.isfinite(history.history["loss"][0])
        assert_weights_equal(head_before, weights_of(head), equal=False)
        for before, layer in zip(own_before, _frozen_copies(model)):
            assert_weights_equal(before, weights_of(layer))


@pytest.mark.parametrize("policy", MIXED_POLICIES)
def test_float32_members_merged_under_a_mixed_global_policy(policy):
    # The layers the SuperNet adds must not cast a float32 member's input or
    # features down to the global policy's half precision.
    x, _ = seeded_data(d=FEATURES, classes=CLASSES)
    members = [_classifier(output, seed) for seed, output in enumerate(OUTPUTS)]
    with _global_policy(policy):
        model = build_supernet(members, downscale=DOWNSCALE)
        expected = special.softmax(_closed_form_logits(members, x) / DOWNSCALE, axis=-1)
        np.testing.assert_allclose(_probs(model, x), expected, atol=1e-5)


def _ending_in(*layers, input_shape=(FEATURES,)):
    return keras.Sequential([keras.Input(input_shape), *layers], name="not_a_classifier")


@pytest.mark.parametrize(
    "make_member, found",
    [
        (
            lambda: _ending_in(keras.layers.Dense(CLASSES, activation="sigmoid", name="out")),
            "Dense layer 'out' with activation='sigmoid'",
        ),
        (
            lambda: _ending_in(keras.layers.Dense(CLASSES, activation="relu", name="out")),
            "Dense layer 'out' with activation='relu'",
        ),
        (
            lambda: _ending_in(
                keras.layers.Dense(CLASSES, activation="relu", name="out"),
                keras.layers.Activation("softmax", name="probs"),
            ),
            "Activation layer 'probs' with activation='softmax' after Dense layer 'out' with activation='relu'",
        ),
        (
            lambda: _ending_in(
                keras.layers.Conv2D(CLASSES, 3, activation="softmax", name="conv"), input_shape=(4, 4, 1)
            ),
            "Conv2D layer 'conv' with activation='softmax'",
        ),
        (
            lambda: _ending_in(
                keras.layers.Dense(CLASSES, name="out"),
                keras.layers.Lambda(keras.activations.softmax, name="lambda"),
            ),
            "Lambda layer 'lambda'",
        ),
        (
            lambda: _ending_in(keras.layers.Dense(CLASSES, name="out"), keras.layers.Softmax(axis=0, name="probs")),
            "Softmax layer 'probs' with axis=0",
        ),
    ],
    ids=["sigmoid-dense", "relu-dense", "softmax-after-relu", "conv", "lambda", "softmax-over-batch"],
)
def test_rejects_members_that_are_not_classifiers(make_member, found):
    with pytest.raises(ValueError, match="Argument `members` must hold classifiers") as info:
        build_supernet([make_member()])
    message = str(info.value)
    assert f"Received: members[0] ('not_a_classifier') ending in {found}" in message
    for accepted in (
        "a Dense layer with softmax activation",
        "followed by Activation('softmax') or Softmax()",
        "a Dense layer with linear activation emitting logits",
    ):
        assert accepted in message


# === Serialization ===


def test_save_load_identical_predictions(members, tmp_path):
    x, y = seeded_data(d=D, classes=C)
    model = build_supernet(members, downscale=2.0)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    run_one_fit_step(model, x, y)
    loaded = assert_saved_model_predicts_same(model, x, tmp_path)
    assert len(loaded.trainable_weights) == 2


@pytest.mark.parametrize("output", ["logits", "activation-softmax"])
def test_save_load_of_any_classifier(output, tmp_path):
    x, _ = seeded_data(d=FEATURES, classes=CLASSES)
    model = build_supernet([_classifier(output, seed) for seed in range(K)], downscale=DOWNSCALE)
    loaded = assert_saved_model_predicts_same(model, x, tmp_path)
    assert loaded.supernet_info == model.supernet_info


# === Bad arguments ===


@pytest.mark.parametrize(
    "make_members, kwargs, match",
    [
        (lambda: [], {}, "members"),
        (lambda: [mlp(D, [8], C), mlp(D, [8], C + 1)], {}, "classes"),
        (lambda: [mlp(D, [8], C), mlp(D + 1, [8], C)], {}, "input shape"),
        (lambda: [mlp(D, [8], C)], dict(downscale=0), "downscale"),
        (lambda: [mlp(D, [8], C)], dict(downscale=-1), "downscale"),
        (lambda: [mlp(D, [8], C)], dict(downscale=float("nan")), "downscale"),
        (lambda: [mlp(D, [8], C)], dict(downscale="auto"), "validation_data"),
        (lambda: [mlp(D, [8], C)], dict(downscale="auto", init="random", validation_data=(0, 0)), "init"),
        (lambda: [mlp(D, [8], C)], dict(init="bogus"), "init"),
        (lambda: [mlp(D, [8], C)], dict(l2=-0.1), "l2"),
        (lambda: [mlp(D, [8], C)], dict(bias_l2=float("nan")), "bias_l2"),
    ],
    ids=[
        "no-members",
        "classes",
        "input-shape",
        "downscale-0",
        "downscale-neg",
        "downscale-nan",
        "auto-no-validation",
        "auto-random-init",
        "init-bogus",
        "l2-neg",
        "bias-l2-nan",
    ],
)
def test_bad_arguments(make_members, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_supernet(make_members(), **kwargs)


# === Convolutional members ===


def _conv_member(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(C, activation="softmax"),
        ],
        name=f"conv{seed}",
    )


def test_conv_members_supernet_keeps_batchnorm_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    y = rng.integers(0, C, size=32)
    members = [_conv_member(seed) for seed in (1, 2)]
    for k, member in enumerate(members):
        bn = member.layers[1]
        # Nontrivial moving statistics, far from this data's batch statistics.
        bn.moving_mean.assign(np.full((4,), 0.5 + k, "float32"))
        bn.moving_variance.assign(np.full((4,), 2.0 + k, "float32"))
    before = [weights_of(m) for m in members]
    model = build_supernet(members, downscale=2.0)
    features = [
        keras.Model(m.inputs, m.layers[-1].input).predict(x, verbose=0) for m in members
    ]
    kernels = [m.layers[-1].get_weights() for m in members]
    logits = sum(f @ w for f, (w, _) in zip(features, kernels))
    logits = (logits + np.mean([b for _, b in kernels], axis=0)) / 2.0
    np.testing.assert_allclose(_probs(model, x), special.softmax(logits, axis=-1), atol=1e-5)
    own = [weights_of(layer) for layer in _frozen_copies(model)]
    # The copies carry the members' moving statistics, which are not this data's.
    for b, o in zip(before, own):
        assert_weights_equal(b[: len(o)], o)  # all but the member's own softmax layer
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    fit_head(model, x, y, batch_size=8, epochs=1, verbose=0)
    # BatchNormalization inside the SuperNet ran in inference mode: its moving
    # mean/variance (part of weights_of) are bit-identical after both fits.
    for b, layer in zip(own, _frozen_copies(model)):
        assert_weights_equal(b, weights_of(layer))
    for b, member in zip(before, members):
        assert_weights_equal(b, weights_of(member))
    assert model.supernet_info["num_members"] == 2


def test_members_with_the_same_name_merge():
    # Snapshots and clones of one net share its name; the SuperNet must not care.
    x, y = seeded_data(d=D, classes=C)
    base = _sequential_members()[0]
    kernel, bias = base.layers[-1].get_weights()
    base.layers[-1].set_weights([kernel, np.zeros_like(bias)])  # copy/f then equals one member
    clones = []
    for _ in range(3):
        clone = keras.models.clone_model(base)
        clone.set_weights(base.get_weights())
        clones.append(clone)
    assert len({m.name for m in clones}) == 1
    model = build_supernet(clones, downscale=3.0)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), clones[0].predict(x, verbose=0), atol=1e-5
    )
