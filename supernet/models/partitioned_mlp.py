"""Partitioned MLPs: K member MLPs trained as one fused Keras model."""

import collections

import keras
import numpy as np

from supernet._validation import check_int
from supernet.layers.byte_dropout import ByteDropout
from supernet.layers.grouped_dense import GroupedDense
from supernet.losses import MemberwiseCrossentropy


def partition_widths(widths, num_members):
    """Per-member widths of a dense net whose layers are split into K branches.

    The thesis describes partitioned nets by the widths of the root net, e.g.
    1200-2800-2800 split in 6 gives members of 200-466-466 (floor division).

    Example:
    >>> partition_widths([1200, 2800, 2800], 6)
    [200, 466, 466]
    """
    if num_members < 1:
        raise ValueError(
            f"Argument `num_members` must be >= 1. Received: num_members={num_members}"
        )
    split = [int(w) // num_members for w in widths]
    if min(split) < 1:
        raise ValueError(
            f"Cannot split widths={list(widths)} into num_members={num_members} "
            "branches: a branch would have no units."
        )
    return split


def mlp_params(input_dim, hidden_units, num_classes, num_members=1):
    """Trainable parameters of K member MLPs joined by one softmax layer.

    Each member has the hidden layers `hidden_units`; the softmax layer reads
    the concatenation of the members' last hidden layers, as in a SuperNet
    (`build_supernet`) or a `PartitionedMLP(head="merged")`. With
    `num_members=1` this is the count of a plain `mlp`.

    Example:
    >>> mlp_params(784, [200, 466, 466], 10, num_members=6)
    2837698
    """
    check_int("input_dim", input_dim, 1)
    check_int("num_classes", num_classes, 1)
    check_int("num_members", num_members, 1)
    sizes = [input_dim, *(int(u) for u in hidden_units)]
    if len(sizes) < 2 or min(sizes[1:]) < 1:
        raise ValueError(f"Argument `hidden_units` must list positive widths. Received: hidden_units={list(hidden_units)}")
    hidden = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    return int(num_members * hidden + (num_members * sizes[-1] + 1) * num_classes)


ScaledWidths = collections.namedtuple("ScaledWidths", ["widths", "params", "scale"])


def scale_widths(widths, target_params, *, input_dim, num_classes, num_members=1):
    """Scale a net's widths to a parameter budget, optionally split into K branches.

    Finds the factor `s` for which the member widths `round(s * w / K)` (at
    least 1) give the parameter count (`mlp_params`) nearest
    `target_params`. With `num_members=1` this sizes a plain MLP of the
    shape of `widths`; with `num_members=K` it sizes the K branches of a
    partitioned net that has as many parameters as an MLP, which is how the
    thesis compares a classical net with a SuperModel "with a similar number
    of parameters" (section 3.5, Tables 8 and 9).

    Args:
        widths: hidden widths giving the shape, e.g. `[1200, 2800, 2800]`.
        target_params: int, the parameter budget.
        input_dim: int, number of input features.
        num_classes: int, number of classes.
        num_members: int K >= 1, number of branches.

    Returns:
        `ScaledWidths(widths, params, scale)`: one member's widths, the
        parameter count they give and the factor `s`.

    Example:
    >>> single = scale_widths([45, 105, 105], 2_837_000, input_dim=784, num_classes=10)
    >>> single.widths, single.params
    ([554, 1292, 1292], 2835436)
    >>> scale_widths(single.widths, single.params, input_dim=784, num_classes=10, num_members=6).widths
    [200, 466, 466]
    """
    check_int("target_params", target_params, 1)
    check_int("num_members", num_members, 1)
    widths = [float(w) for w in widths]
    if not widths or min(widths) <= 0:
        raise ValueError(f"Argument `widths` must list positive widths. Received: widths={widths}")

    def widths_at(scale):
        return [max(1, int(round(scale * w / num_members))) for w in widths]

    def count(scale):
        return mlp_params(input_dim, widths_at(scale), num_classes, num_members)

    # The count is non-decreasing in the scale: bisect (geometrically) to the
    # jump across the target, then keep the side whose count is nearer.
    low, high = 1e-3, 1e3
    for _ in range(80):
        middle = np.sqrt(low * high)
        if count(middle) < target_params:
            low = middle
        else:
            high = middle
    scale = min((low, high), key=lambda s: abs(count(s) - target_params))
    return ScaledWidths(widths_at(scale), count(scale), float(scale))


def _per_layer(value, num_layers, name):
    if isinstance(value, (int, float, np.floating, np.integer)):
        return [float(value)] * num_layers
    value = [float(v) for v in value]
    if len(value) != num_layers:
        raise ValueError(
            f"Argument `{name}` must be a number or a list of {num_layers} numbers. "
            f"Received: {name}={value}"
        )
    return value


def mlp(input_dim, hidden_units, num_classes, dropout=0.0, l2=0.0, activation="relu", name=None):
    """A plain `keras.Sequential` MLP: the standalone form of one member.

    Args:
        input_dim: int, number of input features.
        hidden_units: list of hidden layer widths, e.g. `[200, 466, 466]`.
        num_classes: int, width of the softmax output.
        dropout: float or one rate per hidden layer, applied after it.
        l2: float or one L2 factor per Dense layer (hidden layers + output).
        activation: hidden activation (the thesis uses ReLU).

    Returns:
        An uncompiled `keras.Sequential`.
    """
    check_int("input_dim", input_dim, 1)
    check_int("num_classes", num_classes, 2)
    hidden_units = [int(u) for u in hidden_units]
    if not hidden_units or min(hidden_units) < 1:
        raise ValueError(f"Argument `hidden_units` must list positive widths. Received: hidden_units={hidden_units}")
    rates = _per_layer(dropout, len(hidden_units), "dropout")
    l2s = _per_layer(l2, len(hidden_units) + 1, "l2")
    layers = [keras.Input(shape=(input_dim,))]
    for units, rate, l2_factor in zip(hidden_units, rates, l2s):
        layers.append(
            keras.layers.Dense(
                units, activation=activation, kernel_regularizer=_l2(l2_factor)
            )
        )
        if rate > 0:
            layers.append(keras.layers.Dropout(rate))
    layers.append(
        keras.layers.Dense(
            num_classes, activation="softmax", kernel_regularizer=_l2(l2s[-1])
        )
    )
    return keras.Sequential(layers, name=name)


def _l2(factor):
    return keras.regularizers.L2(factor) if factor > 0 else None


@keras.saving.register_keras_serializable(package="supernet")
class PartitionedMLP(keras.Model):
    """K member MLPs with grouped weights, trained as one Keras model.

    A dense network whose internal connections between K branches are removed
    (thesis Fig. 6). Every hidden layer is one `GroupedDense`, so a training
    step costs a few batched matmuls instead of K separate models. With the
    default `head="members"` the output is `(batch, K, num_classes)`: each
    member's own softmax, trained with `MemberwiseCrossentropy` (the sum of
    the members' losses; no gradient crosses members). With `head="merged"`
    the members' last hidden layers are concatenated into one softmax layer
    trained end to end ("SuperModel whole trained", thesis Table 8).

    Args:
        input_dim: int, number of input features.
        hidden_units: hidden widths of one member, e.g. `[200, 466, 466]`, or
            a list of K such lists for members of different widths (same depth).
        num_classes: int, number of classes.
        num_members: int K >= 1. Ignored when `hidden_units` is per member.
        dropout: float or one rate per hidden layer.
        l2: float or one L2 factor per Dense layer (hidden layers + output).
        activation: hidden activation.
        head: `"members"` or `"merged"`.
        seed: optional int seeding the dropout layers.
        dropout_masks: `"floats"` (default) draws the dropout masks as
            `keras.layers.Dropout` does, one random float per unit;
            `"bytes"` uses `supernet.layers.ByteDropout`, one random byte per
            unit, with rates rounded to multiples of 1/256. Training results
            differ from `"floats"` only by the random masks and that rounding;
            `supernet bench` measures the speed of each.

    Example:
    >>> model = PartitionedMLP(64, [32, 32], num_classes=10, num_members=4)
    >>> model.compile(optimizer="adam")  # MemberwiseCrossentropy by default
    >>> model.predict(np.zeros((2, 64)), verbose=0).shape
    (2, 4, 10)

    Reference:
        Bukowski & Dzwinel 2020, section 3.2, Fig. 6-8, Tables 4 and 8.
    """

    def __init__(
        self,
        input_dim,
        hidden_units,
        num_classes,
        num_members=1,
        dropout=0.0,
        l2=0.0,
        activation="relu",
        head="members",
        seed=None,
        dropout_masks="floats",
        **kwargs,
    ):
        if dropout_masks not in ("floats", "bytes"):
            raise ValueError(
                f"Argument `dropout_masks` must be 'floats' or 'bytes'. Received: dropout_masks={dropout_masks!r}"
            )
        if head not in ("members", "merged"):
            raise ValueError(
                f"Argument `head` must be 'members' or 'merged'. Received: head={head!r}"
            )
        if not isinstance(input_dim, (int, np.integer)) or input_dim < 1:
            raise ValueError(
                f"Argument `input_dim` must be a positive int. Received: input_dim={input_dim}"
            )
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(
                f"Argument `num_classes` must be an int >= 2. Received: num_classes={num_classes}"
            )
        if len(hidden_units) == 0:
            raise ValueError(
                f"Argument `hidden_units` must list at least one layer. Received: hidden_units={hidden_units}"
            )
        per_member = isinstance(hidden_units[0], (list, tuple))
        if per_member:
            widths = [[int(u) for u in member] for member in hidden_units]
            num_members = len(widths)
            if len({len(w) for w in widths}) != 1:
                raise ValueError(
                    "All members must have the same depth. "
                    f"Received: hidden_units={hidden_units}"
                )
        else:
            if not isinstance(num_members, (int, np.integer)) or num_members < 1:
                raise ValueError(
                    f"Argument `num_members` must be an int >= 1. Received: num_members={num_members}"
                )
            widths = [[int(u) for u in hidden_units]] * num_members
        depth = len(widths[0])
        rates = _per_layer(dropout, depth, "dropout")
        l2s = _per_layer(l2, depth + 1, "l2")
        if any(not 0 <= r < 1 for r in rates):
            raise ValueError(f"Argument `dropout` must be in [0, 1). Received: dropout={dropout}")
        if any(f < 0 for f in l2s):
            raise ValueError(f"Argument `l2` must be >= 0. Received: l2={l2}")

        # === Layers ===
        # Hidden activations stay member-major, (K, batch, units): every layer
        # is then one batched matmul with no transpose, forward or backward.
        # Only the (small) outputs are turned batch-major, the public layout;
        # a merged head reads the last hidden layer batch-major instead.
        hidden_layers = []
        for i in range(depth):
            last_hidden = i == depth - 1
            hidden_layers.append(
                GroupedDense(
                    num_members,
                    [w[i] for w in widths],
                    input_units=None if i == 0 else [w[i - 1] for w in widths],
                    activation=activation,
                    kernel_regularizer=_l2(l2s[i]),
                    input_layout="member_major",
                    output_layout="batch_major" if last_hidden and head == "merged" else "member_major",
                    name=f"grouped_dense_{i}",
                )
            )
        last_widths = [w[-1] for w in widths]
        if head == "members":
            output_layer = GroupedDense(
                num_members,
                num_classes,
                input_units=last_widths,
                activation="softmax",
                kernel_regularizer=_l2(l2s[-1]),
                input_layout="member_major",
                output_layout="batch_major",
                name="member_outputs",
            )
        else:
            output_layer = keras.layers.Dense(
                num_classes,
                activation="softmax",
                kernel_regularizer=_l2(l2s[-1]),
                name="supernet_head",
            )

        # === Functional Model ===
        dropout_layer = ByteDropout if dropout_masks == "bytes" else keras.layers.Dropout
        inputs = keras.Input(shape=(input_dim,), name="inputs")
        x = inputs
        for i, (layer, rate) in enumerate(zip(hidden_layers, rates)):
            x = layer(x)
            if rate > 0:
                x = dropout_layer(rate, seed=None if seed is None else seed + i, name=f"dropout_{i}")(x)
        if head == "merged":
            x = keras.layers.Reshape((num_members * max(last_widths),), name="concat_members")(x)
        outputs = output_layer(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.input_dim = int(input_dim)
        self.hidden_units = [list(w) for w in widths] if per_member else [int(u) for u in hidden_units]
        self.num_classes = int(num_classes)
        self.num_members = int(num_members)
        self.dropout = float(dropout) if np.ndim(dropout) == 0 else [float(r) for r in dropout]
        self.l2 = float(l2) if np.ndim(l2) == 0 else [float(f) for f in l2]
        self.activation = activation
        self.head = head
        self.seed = seed
        self.dropout_masks = dropout_masks
        self.member_widths = widths
        self.dropout_rates = rates

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        """`keras.Model.compile` with this architecture's natural defaults.

        `loss=None` picks `MemberwiseCrossentropy` for `head="members"` and
        sparse categorical cross-entropy for the merged head; `metrics=None`
        tracks the mean member accuracy and the softmax-vote accuracy.
        `optimizer="adam"` (the default) is `supernet.optimizers.FusedAdam`:
        Keras's Adam, with each update in one fused kernel on TensorFlow
        (a quarter of a step at batch 128 otherwise). An optimizer instance
        is used as given.
        """
        from supernet import metrics as supernet_metrics
        from supernet.optimizers import FusedAdam

        if isinstance(optimizer, str) and optimizer.lower() == "adam":
            optimizer = FusedAdam()

        if self.head == "members":
            loss = MemberwiseCrossentropy() if loss is None else loss
            if metrics is None:
                metrics = [
                    supernet_metrics.MemberAccuracy(),
                    supernet_metrics.SoftmaxVoteAccuracy(),
                ]
        else:
            loss = "sparse_categorical_crossentropy" if loss is None else loss
            metrics = ["accuracy"] if metrics is None else metrics
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def hidden_layers(self):
        return [layer for layer in self.layers if isinstance(layer, GroupedDense) and layer.name != "member_outputs"]

    def member(self, index):
        """Member `index` as a standalone `keras.Sequential` with copied weights.

        Requires `head="members"` (a merged head has no per-member softmax).
        The returned model gives exactly the member's slice of `predict`.
        """
        if self.head != "members":
            raise ValueError(
                "Members of a merged-head PartitionedMLP have no own softmax layer; "
                "build it with head='members' to export members."
            )
        if not 0 <= index < self.num_members:
            raise ValueError(
                f"Argument `index` must be in [0, {self.num_members}). Received: index={index}"
            )
        widths = self.member_widths[index]
        rates = self.dropout_rates
        l2s = _per_layer(self.l2, len(widths) + 1, "l2")
        model = mlp(self.input_dim, widths, self.num_classes, rates, l2s, self.activation, name=f"member_{index}")
        dense_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        grouped = self.hidden_layers + [self.get_layer("member_outputs")]
        in_width = self.input_dim
        for dense, layer in zip(dense_layers, grouped):
            out_width = dense.units
            kernel = keras.ops.convert_to_numpy(layer.kernel)[index, :in_width, :out_width]
            bias = keras.ops.convert_to_numpy(layer.bias)[index, :out_width]
            dense.set_weights([kernel, bias])
            in_width = out_width
        return model

    def members(self):
        """All members as standalone `keras.Sequential` models."""
        return [self.member(k) for k in range(self.num_members)]

    @classmethod
    def from_members(cls, members, **kwargs):
        """Fuse K existing Sequential MLPs (Dense/Dropout layers) into one model.

        The members must share input width, depth, activation and classes;
        their weights are copied, so `fused.predict(x)[:, k]` equals
        `members[k].predict(x)`. Dropout rates and L2 factors are read from
        the first member.
        """
        if len(members) == 0:
            raise ValueError("Argument `members` must contain at least one model. Received: members=[]")
        specs = [_describe_mlp(m) for m in members]
        first = specs[0]
        for k, spec in enumerate(specs[1:], start=1):
            for key in ("input_dim", "depth", "num_classes", "activation"):
                if spec[key] != first[key]:
                    raise ValueError(
                        f"All members must have the same {key}. Member 0 has "
                        f"{key}={first[key]}, member {k} has {key}={spec[key]}."
                    )
        widths = [spec["widths"] for spec in specs]
        model = cls(
            first["input_dim"],
            widths,
            first["num_classes"],
            dropout=first["dropout"],
            l2=first["l2"],
            activation=first["activation"],
            **kwargs,
        )
        grouped = model.hidden_layers + [model.get_layer("member_outputs")]
        for i, layer in enumerate(grouped):
            kernel = np.zeros(tuple(layer.kernel.shape), "float32")
            bias = np.zeros(tuple(layer.bias.shape), "float32")
            for k, spec in enumerate(specs):
                k_w, k_b = spec["weights"][i]
                kernel[k, : k_w.shape[0], : k_w.shape[1]] = k_w
                bias[k, : k_b.shape[0]] = k_b
            layer.set_weights([kernel, bias])
        return model

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "input_dim": self.input_dim,
            "hidden_units": self.hidden_units,
            "num_classes": self.num_classes,
            "num_members": self.num_members,
            "dropout": self.dropout,
            "l2": self.l2,
            "activation": self.activation,
            "head": self.head,
            "seed": self.seed,
            "dropout_masks": self.dropout_masks,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _describe_mlp(model):
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if len(dense) < 2:
        raise ValueError(
            f"Model {model.name!r} is not an MLP with at least one hidden Dense layer."
        )
    last = dense[-1]
    if keras.activations.serialize(last.activation) != "softmax" and last.activation is not keras.activations.softmax:
        raise ValueError(f"The last layer of model {model.name!r} must be a Dense softmax layer.")
    rates, rate = [], 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dropout):
            rate = layer.rate
        elif isinstance(layer, keras.layers.Dense) and layer is not dense[0]:
            rates.append(rate)
            rate = 0.0
    l2s = [getattr(layer.kernel_regularizer, "l2", 0.0) or 0.0 for layer in dense]
    return {
        "input_dim": int(model.inputs[0].shape[-1]),
        "depth": len(dense) - 1,
        "widths": [layer.units for layer in dense[:-1]],
        "num_classes": last.units,
        "activation": keras.activations.serialize(dense[0].activation),
        "dropout": rates,
        "l2": [float(v) for v in l2s],
        "weights": [[keras.ops.convert_to_numpy(w) for w in layer.weights] for layer in dense],
    }
