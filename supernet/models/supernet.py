"""SuperNet heads: K trained classifiers merged through one re-trained softmax layer.

A member is any Keras classifier whose prediction comes from one last `Dense`
layer over its penultimate features, in one of the shapes Keras models are
commonly given:

- a `Dense` layer with softmax activation;
- a `Dense` layer with linear activation followed by `Activation("softmax")`
  or `Softmax()` (the mixed-precision recipe, whose final softmax layer has
  `dtype="float32"`);
- a `Dense` layer with linear activation emitting logits (a model trained
  with `from_logits=True`);

or a fused `PartitionedMLP`. The SuperNet copies that last `Dense` layer's
kernel and bias into its head; members keep their own dtype policies, while
the head (and the concatenation feeding it) computes in float32.
"""

import keras
import numpy as np

from supernet._validation import check_finite_weights, check_xy
from supernet.layers.frozen_model import FrozenModel
from supernet.layers.grouped_dense import GroupedDense
from supernet.layers.swap_member_axis import SwapMemberAxis

HEAD_NAME = "supernet_head"
INITS = ("random", "copy")


@keras.saving.register_keras_serializable(package="supernet")
class SuperNet(keras.Model):
    """The functional model `build_supernet` returns, with its `supernet_info`.

    A plain functional model whose config also carries `supernet_info` (the
    chosen `init`, `downscale` and number of members), so a SuperNet saved
    to `.keras` and loaded again still knows the down-scaling it was built
    with. Build one with `build_supernet`, not directly.

    Args:
        *args, **kwargs: as for a functional `keras.Model` (`inputs`,
            `outputs`, `name`).
        supernet_info: dict, see `build_supernet`.
    """

    def __init__(self, *args, supernet_info=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.supernet_info = dict(supernet_info or {})

    def get_config(self):
        config = super().get_config()
        config.update({"supernet_info": dict(self.supernet_info)})
        return config


ACCEPTED_OUTPUTS = (
    "a Dense layer with softmax activation, a Dense layer with linear activation "
    "followed by Activation('softmax') or Softmax(), or a Dense layer with linear "
    "activation emitting logits"
)


def _activation_name(activation):
    return getattr(activation, "__name__", type(activation).__name__)


def _is_softmax(activation):
    return activation is keras.activations.softmax or _activation_name(activation) == "softmax"


def _is_linear(activation):
    return activation is None or activation is keras.activations.linear or _activation_name(activation) == "linear"


def _is_softmax_layer(layer):
    """A separate softmax over the class axis, as in `Dense` -> softmax layer."""
    if isinstance(layer, keras.layers.Activation):
        return _is_softmax(layer.activation)
    if isinstance(layer, keras.layers.Softmax):
        return layer.axis in (-1, len(layer.output.shape) - 1)
    return False


def _describe(layer):
    if layer is None:
        return "an input or a nested model"
    text = f"{type(layer).__name__} layer {layer.name!r}"
    if isinstance(layer, keras.layers.Softmax):
        return f"{text} with axis={layer.axis!r}"
    if callable(getattr(layer, "activation", None)):
        return f"{text} with activation={_activation_name(layer.activation)!r}"
    return text


def _producer(member, tensor):
    """The layer of `member` whose output is `tensor` (None if none of them).

    Nodes record a layer's inputs before any autocasting, so this finds the
    `Dense` under a float32 softmax layer of a mixed-precision model too.
    """
    return next((layer for layer in member.layers if layer.output is tensor), None)


def _classifier_dense(member, index):
    """The last `Dense` layer of `member`, whose outputs are its logits or probabilities."""
    last = member.layers[-1]
    if _is_softmax_layer(last):
        dense = _producer(member, last.input)
        if isinstance(dense, keras.layers.Dense) and _is_linear(dense.activation):
            return dense
        found = f"{_describe(last)} after {_describe(dense)}"
    elif isinstance(last, keras.layers.Dense) and (_is_softmax(last.activation) or _is_linear(last.activation)):
        return last
    else:
        found = _describe(last)
    raise ValueError(
        f"Argument `members` must hold classifiers whose output layer is {ACCEPTED_OUTPUTS}. "
        f"Received: members[{index}] ({member.name!r}) ending in {found}"
    )


def _member_parts(member, index=0):
    """(feature model, kernels, biases, classes) of one member or of a fused ensemble.

    The feature model maps the input to the features the member's last `Dense`
    layer reads, flattened to `(batch, features)`, in that layer's compute
    dtype; kernels/biases are that layer's weights laid out to match those
    features.
    """
    if not isinstance(member, keras.Model):
        raise ValueError(
            f"Every member must be a keras.Model. Received: {type(member).__name__}"
        )
    if not member.built or not member.inputs:
        raise ValueError(f"Member {member.name!r} must be built (called on data or given an Input).")
    last = member.layers[-1]
    if isinstance(last, GroupedDense) and _is_softmax(last.activation):
        # A fused PartitionedMLP: its K branches become K*h concatenated features.
        # The reshaping layers compute in the dtype the output layer reads, so they never cast.
        features = last.input
        if last.input_layout == "member_major":
            features = SwapMemberAxis(dtype=last.compute_dtype)(features)  # (K, batch, h) -> (batch, K, h)
        features = keras.layers.Reshape((-1,), dtype=last.compute_dtype)(features)
        feature_model = keras.Model(member.inputs, features, name=f"member{index}_features")
        kernel = keras.ops.convert_to_numpy(last.kernel)
        bias = keras.ops.convert_to_numpy(last.bias)
        return feature_model, kernel.reshape(-1, kernel.shape[-1]), bias, last.units[0]
    dense = _classifier_dense(member, index)
    # Named by position: clones and snapshots of one net share its name.
    feature_model = keras.Model(member.inputs, dense.input, name=f"member{index}_features")
    # Variables stay float32 under a mixed policy, so the copy is exact.
    kernel = keras.ops.convert_to_numpy(dense.kernel)
    bias = keras.ops.convert_to_numpy(dense.bias) if dense.use_bias else np.zeros(dense.units, kernel.dtype)
    return feature_model, kernel, bias[None, :], dense.units


def _copy_model(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _validate_members(members):
    if isinstance(members, keras.Model):
        members = [members]  # one fused PartitionedMLP holds all K members
    members = list(members) if members is not None else []
    if len(members) == 0:
        raise ValueError("Argument `members` must contain at least one model. Received: members=[]")
    shapes = [tuple(m.inputs[0].shape[1:]) if m.built and m.inputs else None for m in members]
    for k, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise ValueError(
                "Argument `members` must all have the same input shape. "
                f"Received: members with input shapes {shapes} (member 0 has {shapes[0]}, member {k} has {shape})"
            )
    return members


def _check_pair(name, data, num_classes):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"Argument `{name}` must be a tuple `(x, y)`. Received: {name} of type {type(data).__name__}")
    return check_xy(f"{name}[0]", data[0], f"{name}[1]", data[1], num_classes)


def merged_logits(features, kernels, bias):
    """Logits of the copied head: `features @ stacked kernels + mean bias`."""
    return features @ kernels + bias


def choose_downscale(logits, y):
    """The down-scaling factor f that minimises the NLL of `softmax(logits / f)`.

    Dividing the copied head's weights by f divides its logits by f, so the
    best f on held-out data is exactly a fitted temperature (Guo et al. 2017).
    The thesis picked f by hand ("sometimes about 60"); this picks it by
    minimising the validation NLL before the head is trained.
    """
    from supernet.metrics import fit_temperature

    return float(fit_temperature(np.asarray(y), np.asarray(logits, dtype="float64")))


def build_supernet(
    members,
    *,
    init="copy",
    downscale=1.0,
    l2=0.0,
    bias_l2=0.0,
    train_members=False,
    validation_data=None,
    seed=None,
    name="supernet",
):
    """Merge K trained classifiers into one model with a single softmax head.

    The members' penultimate features are concatenated and fed to one new
    Dense softmax layer (thesis Fig. 8). With `init="copy"` its kernel is the
    kernels of the members' last Dense layers stacked and its bias the mean of
    their biases, so before any training it outputs
    `softmax(sum_k logits_k - sum_k b_k + mean_k b_k)`, where `logits_k` are
    member k's logits (the inputs of its softmax);
    `downscale=f` divides those copied weights by f, which counters the
    overconfidence of summed logits (thesis section 3.3, Table 6). The head is
    then re-trained with an ordinary `model.fit` (use `fit_head` to do it on
    cached features when the members are frozen).

    Args:
        members: list of K Keras classifiers over the same classes, or a
            fused `PartitionedMLP`. Each member's output must come from one
            last `Dense` layer, as a `Dense` with softmax activation, a
            linear `Dense` followed by `Activation("softmax")` or
            `Softmax()` (for instance float32 softmax layers of
            mixed-precision models), or a linear `Dense` emitting logits.
            The head copies that `Dense` layer's kernel and bias; any other
            last layer raises a `ValueError`.
        init: `"copy"` or `"random"` (Glorot uniform, zero bias).
        downscale: float > 0, or `"auto"` to choose f by minimising the
            validation NLL of the copied head (needs `validation_data`).
        l2: L2 factor on the head's kernel.
        bias_l2: L2 factor on the head's bias (thesis Fig. 10 regularises
            both).
        train_members: if False (default) the members are frozen and run in
            inference mode (dropout off, BatchNormalization statistics fixed).
        validation_data: `(x_val, y_val)`, required for `downscale="auto"`.
        seed: seed of the random head initialisation.
        name: model name.

    Returns:
        A functional `keras.Model`. `model.supernet_info` holds the chosen
        `init`, `downscale` and the number of members.

    Example:
    >>> from supernet.models import mlp
    >>> members = [mlp(64, [16], 10) for _ in range(3)]
    >>> model = build_supernet(members, downscale=3.0)
    >>> model.compile("adam", "sparse_categorical_crossentropy")
    >>> model.predict(np.zeros((2, 64)), verbose=0).shape
    (2, 10)

    Reference:
        Bukowski & Dzwinel 2020, sections 3.2-3.3, Fig. 8, Table 6.
    """
    members = _validate_members(members)
    if init not in INITS:
        raise ValueError(f"Argument `init` must be one of {INITS}. Received: init={init!r}")
    auto = isinstance(downscale, str) and downscale == "auto"
    if not auto and (
        isinstance(downscale, (str, bool))
        or not isinstance(downscale, (int, float, np.number))
        or not np.isfinite(downscale)
        or downscale <= 0
    ):
        raise ValueError(f"Argument `downscale` must be > 0 or 'auto'. Received: downscale={downscale!r}")
    if init == "random" and (auto or downscale != 1.0):
        raise ValueError(
            "Argument `downscale` only applies to copied weights (init='copy'). "
            f"Received: init='random', downscale={downscale!r}"
        )
    if auto and validation_data is None:
        raise ValueError("Argument `validation_data=(x_val, y_val)` is required for downscale='auto'.")
    for arg, value in (("l2", l2), ("bias_l2", bias_l2)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0:
            raise ValueError(f"Argument `{arg}` must be a number >= 0. Received: {arg}={value!r}")

    parts = [_member_parts(m, k) for k, m in enumerate(members)]
    num_classes = {p[3] for p in parts}
    if len(num_classes) != 1:
        raise ValueError(
            "Argument `members` must all predict the same number of classes. "
            f"Received: members with num_classes={[p[3] for p in parts]}"
        )
    num_classes = num_classes.pop()
    check_finite_weights("members", members)
    if validation_data is not None:
        _check_pair("validation_data", validation_data, num_classes)

    # === Layers ===
    # The SuperNet owns copies of the members' weights: freezing or training
    # it never changes the caller's models.
    # Each copy keeps its member's dtype policy. The layers the SuperNet adds
    # are float32 whatever the global policy: the wrappers pass the input on
    # uncast, and the head computes its softmax in float32 (as Keras's
    # mixed-precision guide asks of a model's last layer), casting float16 or
    # bfloat16 features up on entry.
    feature_models = [_copy_model(p[0]) for p in parts]
    if not train_members:
        feature_models = [FrozenModel(f, name=f"frozen_{f.name}", dtype="float32") for f in feature_models]
    head = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_regularizer=keras.regularizers.L2(l2) if l2 > 0 else None,
        bias_regularizer=keras.regularizers.L2(bias_l2) if bias_l2 > 0 else None,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        dtype="float32",
        name=HEAD_NAME,
    )

    # === Functional Model ===
    inputs = keras.Input(shape=tuple(members[0].inputs[0].shape[1:]), name="inputs")
    features = [f(inputs) for f in feature_models]
    if len(features) == 1:
        x = features[0]
    else:
        x = keras.layers.Concatenate(dtype="float32", name="concat_features")(features)
    outputs = head(x)
    model = SuperNet(inputs, outputs, name=name)

    factor = 1.0
    if init == "copy":
        kernel = np.concatenate([p[1] for p in parts], axis=0)
        # One mean over every member's bias, fused members counted one by one.
        bias = np.concatenate([p[2] for p in parts], axis=0).mean(axis=0)
        if auto:
            x_val, y_val = validation_data
            feats = supernet_features(model).predict(x_val, verbose=0, batch_size=1024)
            factor = choose_downscale(merged_logits(feats, kernel, bias), y_val)
        else:
            factor = float(downscale)
        head.set_weights([kernel / factor, bias / factor])
    model.supernet_info = {
        "init": init,
        "downscale": factor,
        "num_members": sum(getattr(m, "num_members", 1) for m in members),
    }
    return model


def supernet_features(model):
    """The part of a SuperNet that computes the head's input features."""
    head = model.get_layer(HEAD_NAME)
    return keras.Model(model.inputs, head.input, name=f"{model.name}_features")


def fit_head(model, x, y, *, validation_data=None, batch_size=128, epochs=10, optimizer="adam", callbacks=None, verbose="auto", on_features=False):
    """Re-train only the head of a SuperNet on features computed once.

    With frozen members the features do not change during head training, so
    computing them once and fitting the Dense head alone equals
    `model.fit(...)` with frozen members, at the cost of one forward pass.
    With `on_features=True`, `x` and the validation inputs already are those
    features (`supernet_features(model).predict(...)`), e.g. computed once
    for several heads on the same members; callbacks then see the head
    alone as their `model`.

    Returns:
        The `keras.callbacks.History` of the head's `fit`.
    """
    feature_model = supernet_features(model)
    if feature_model.trainable_weights:
        raise ValueError("fit_head needs frozen members; build the SuperNet with train_members=False.")
    head = model.get_layer(HEAD_NAME)
    check_xy("x", x, "y", y, head.units, min_classes=2)
    if validation_data is not None:
        _check_pair("validation_data", validation_data, head.units)
    width = head.input.shape[-1]
    if on_features and np.shape(x)[1:] != (width,):
        raise ValueError(
            f"With `on_features=True`, argument `x` must be the head's input features, of shape (n, {width}). "
            f"Received: x.shape={np.shape(x)}"
        )
    head_model = keras.Sequential([keras.Input(shape=(width,)), head])
    head_model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def features(inputs):
        return inputs if on_features else feature_model.predict(inputs, verbose=0, batch_size=1024)

    val = None
    if validation_data is not None:
        x_val, y_val = validation_data
        val = (features(x_val), y_val)
    return head_model.fit(features(x), y, validation_data=val, batch_size=batch_size, epochs=epochs, callbacks=callbacks, verbose=verbose)
