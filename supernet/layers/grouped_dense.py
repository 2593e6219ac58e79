"""K independent dense layers evaluated as one batched matmul."""

import random as _random

import keras
import numpy as np
from keras import ops


def _as_member_list(value, num_members, name):
    if isinstance(value, (int, np.integer)):
        value = [int(value)] * num_members
    value = [int(v) for v in value]
    if len(value) != num_members:
        raise ValueError(
            f"Argument `{name}` must be an int or a list of {num_members} ints "
            f"(one per member). Received: {name}={value}"
        )
    if any(v < 1 for v in value):
        raise ValueError(
            f"Argument `{name}` must contain positive ints. Received: {name}={value}"
        )
    return value


def _member_initializer(initializer, index):
    """A copy of `initializer` seeded for member `index` (unseeded: from `random`)."""
    config = initializer.get_config()
    if "seed" not in config:
        return initializer  # deterministic initializers (zeros, constant) need no seed
    base = config["seed"]
    if base is None:
        # Python's `random` is what `keras.utils.set_random_seed` seeds.
        base = _random.randint(0, 2**31 - 1 - 1024)
    elif not isinstance(base, int):
        base = _random.randint(0, 2**31 - 1 - 1024)
    return initializer.__class__.from_config({**config, "seed": base + index})


LAYOUTS = ("batch_major", "member_major")
# Input labels of the einsum for each input layout (b: batch, k: member, i:
# input feature) and output labels for each output layout (o: output unit).
_INPUT_LABELS = {"shared": "bi", "batch_major": "bki", "member_major": "kbi"}
_OUTPUT_LABELS = {"batch_major": "bko", "member_major": "kbo"}


@keras.saving.register_keras_serializable(package="supernet")
class GroupedDense(keras.layers.Layer):
    """K independent `Dense` layers applied side by side in one batched matmul.

    A dense network with the connections between its K branches removed is an
    ensemble of K sub-networks (thesis Fig. 6). This layer holds the weights of
    one such layer for all K branches as a single `(K, in, out)` kernel, so the
    whole ensemble trains and predicts as one fused model while no weight ever
    connects two members.

    Members may have different widths: the kernel is padded to the widest
    member and a constant mask keeps the padding out of every product (no
    gradient reaches it); padded units output exactly zero, and a softmax
    normalises over each member's own units.

    Grouped activations can be laid out batch-major, `(batch, K, units)`, or
    member-major, `(K, batch, units)`. Member-major is the layout of a batched
    matmul, so a stack of member-major layers runs without a single transpose
    (forward or backward); batch-major is the public layout of fused outputs.
    `PartitionedMLP` keeps its hidden activations member-major and lets its
    output layer return batch-major outputs.

    Args:
        num_members: int, the number of members K.
        units: int or list of K ints, output width of each member.
        input_units: `None` or list of K ints. The active input width of each
            member when the input is grouped and ragged (as produced by a
            previous `GroupedDense` with per-member widths). `None` means each
            member reads the whole input.
        activation: activation applied to each member's output.
        use_bias: whether to add a per-member bias.
        kernel_initializer: initializer applied to each member's
            `(in, out)` kernel separately, so fans are those of one member.
        bias_initializer: initializer for the `(K, out)` bias.
        kernel_regularizer: regularizer on the kernel. An L2 penalty on the
            fused kernel equals the sum of the members' penalties.
        bias_regularizer: regularizer on the bias.
        input_layout: `"batch_major"` (default) or `"member_major"`: the
            layout of grouped `(batch, K, features)` or `(K, batch, features)`
            inputs. Ignored for shared `(batch, features)` inputs.
        output_layout: `"batch_major"` (default) or `"member_major"`.

    Call arguments:
        inputs: `(batch, features)`, shared by all members (the first layer),
            or one slice per member: `(batch, K, features)` or, with
            `input_layout="member_major"`, `(K, batch, features)`.

    Returns:
        `(batch, K, max(units))` tensor, or `(K, batch, max(units))` with
        `output_layout="member_major"`.

    Example:
    >>> layer = GroupedDense(num_members=3, units=4)
    >>> tuple(layer(np.ones((2, 5))).shape)
    (2, 3, 4)
    >>> layer = GroupedDense(num_members=3, units=4, output_layout="member_major")
    >>> tuple(layer(np.ones((2, 5))).shape)
    (3, 2, 4)

    Reference:
        Bukowski & Dzwinel 2020, section 3.2 (partitioning).
    """

    def __init__(
        self,
        num_members,
        units,
        input_units=None,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        input_layout="batch_major",
        output_layout="batch_major",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(num_members, (int, np.integer)) or num_members < 1:
            raise ValueError(
                "Argument `num_members` must be an int >= 1. "
                f"Received: num_members={num_members}"
            )
        self.num_members = int(num_members)
        self.units = _as_member_list(units, self.num_members, "units")
        self.input_units = (
            None
            if input_units is None
            else _as_member_list(input_units, self.num_members, "input_units")
        )
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        for name, value in (("input_layout", input_layout), ("output_layout", output_layout)):
            if value not in LAYOUTS:
                raise ValueError(
                    f"Argument `{name}` must be one of {LAYOUTS}. Received: {name}={value!r}"
                )
        self.input_layout = input_layout
        self.output_layout = output_layout

    def build(self, input_shape):
        member_axis = 0 if self.input_layout == "member_major" else 1
        if len(input_shape) not in (2, 3):
            raise ValueError(
                "GroupedDense expects inputs of shape (batch, features) or "
                f"{'(num_members, batch' if member_axis == 0 else '(batch, num_members'}, "
                f"features). Received: input_shape={input_shape}"
            )
        self.shared_input = len(input_shape) == 2
        if not self.shared_input and input_shape[member_axis] != self.num_members:
            raise ValueError(
                f"Grouped inputs must have num_members={self.num_members} on axis "
                f"{member_axis} (input_layout={self.input_layout!r}). "
                f"Received: input_shape={input_shape}"
            )
        in_features = int(input_shape[-1])
        in_units = self.input_units or [in_features] * self.num_members
        if max(in_units) > in_features:
            raise ValueError(
                f"Argument `input_units` exceeds the input width {in_features}. "
                f"Received: input_units={self.input_units}"
            )
        max_units = max(self.units)
        mask = np.zeros((self.num_members, in_features, max_units), "float32")
        for k, (n_in, n_out) in enumerate(zip(in_units, self.units)):
            mask[k, :n_in, :n_out] = 1.0
        self.ragged = not bool(mask.all())
        self._mask = mask
        in_labels = _INPUT_LABELS["shared" if self.shared_input else self.input_layout]
        out_labels = _OUTPUT_LABELS[self.output_layout]
        self._equation = f"{in_labels},kio->{out_labels}"
        # (K, 1, units) broadcasts over a member-major batch, (K, units) over a
        # batch-major one.
        self._member_shape = (
            (self.num_members, 1, max_units)
            if self.output_layout == "member_major"
            else (self.num_members, max_units)
        )

        def init_kernel(shape, dtype=None):
            # One fan-in/fan-out per member, not per fused tensor, and one seed
            # per member: a Keras initializer returns the same values on every
            # call, which would start all members from identical weights.
            blocks = []
            for k, (n_in, n_out) in enumerate(zip(in_units, self.units)):
                initializer = _member_initializer(self.kernel_initializer, k)
                block = ops.convert_to_tensor(initializer((n_in, n_out), dtype=dtype), dtype)
                blocks.append(
                    ops.pad(block, [[0, in_features - n_in], [0, max_units - n_out]])
                )
            return ops.stack(blocks)

        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.num_members, in_features, max_units),
            initializer=init_kernel,
            regularizer=self.kernel_regularizer,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.num_members, max_units),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
        else:
            self.bias = None

    def call(self, inputs):
        kernel = self.kernel
        if self.ragged:
            kernel = kernel * ops.cast(self._mask, kernel.dtype)
        if self._equation == "kbi,kio->kbo":
            outputs = ops.matmul(inputs, kernel)
        elif self._equation == "kbi,kio->bko":
            # Transposing the small (K, batch, units) product is cheaper than
            # letting the einsum arrange it (and its gradients).
            outputs = ops.transpose(ops.matmul(inputs, kernel), (1, 0, 2))
        elif self._equation == "bi,kio->kbo":
            # All members read the same x: a broadcast batched matmul, whose
            # input gradient (never needed) is pruned.
            outputs = ops.matmul(ops.expand_dims(inputs, 0), kernel)
        else:
            outputs = ops.einsum(self._equation, inputs, kernel)
        if self.bias is not None:
            outputs = outputs + ops.reshape(self.bias, self._member_shape)
        if not self.ragged:
            return self.activation(outputs)
        # Padded units must output exactly zero whatever the activation, and a
        # softmax must normalise over each member's own units only.
        out_mask = ops.cast(np.reshape(self._mask[:, 0, :], self._member_shape), outputs.dtype)
        if self.activation is keras.activations.softmax:
            # -1e4 is "minus infinity" for a softmax yet finite in float16.
            outputs = ops.where(out_mask > 0, outputs, ops.full_like(outputs, -1e4))
        return self.activation(outputs) * out_mask

    def compute_output_shape(self, input_shape):
        member_major_input = len(input_shape) == 3 and self.input_layout == "member_major"
        batch = input_shape[1] if member_major_input else input_shape[0]
        if self.output_layout == "member_major":
            return (self.num_members, batch, max(self.units))
        return (batch, self.num_members, max(self.units))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_members": self.num_members,
                "units": self.units,
                "input_units": self.input_units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "input_layout": self.input_layout,
                "output_layout": self.output_layout,
            }
        )
        return config
