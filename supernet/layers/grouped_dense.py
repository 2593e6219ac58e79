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


@keras.saving.register_keras_serializable(package="supernet")
class GroupedDense(keras.layers.Layer):
    """K independent `Dense` layers applied side by side in one einsum.

    A dense network with the connections between its K branches removed is an
    ensemble of K sub-networks (thesis Fig. 6). This layer holds the weights of
    one such layer for all K branches as a single `(K, in, out)` kernel, so the
    whole ensemble trains and predicts as one fused model while no weight ever
    connects two members.

    Members may have different widths: the kernel is padded to the widest
    member and a constant mask keeps the padding out of every product (no
    gradient reaches it); padded units output exactly zero, and a softmax
    normalises over each member's own units.

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

    Call arguments:
        inputs: `(batch, features)`, shared by all members (the first layer),
            or `(batch, K, features)`, one slice per member.

    Returns:
        `(batch, K, max(units))` tensor.

    Example:
    >>> layer = GroupedDense(num_members=3, units=4)
    >>> tuple(layer(np.ones((2, 5))).shape)
    (2, 3, 4)

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

    def build(self, input_shape):
        if len(input_shape) not in (2, 3):
            raise ValueError(
                "GroupedDense expects inputs of shape (batch, features) or "
                f"(batch, num_members, features). Received: input_shape={input_shape}"
            )
        self.shared_input = len(input_shape) == 2
        if not self.shared_input and input_shape[1] != self.num_members:
            raise ValueError(
                f"Grouped inputs must have num_members={self.num_members} on axis 1. "
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
        if self.shared_input:
            outputs = ops.einsum("bi,kio->bko", inputs, kernel)
        else:
            outputs = ops.einsum("bki,kio->bko", inputs, kernel)
        if self.bias is not None:
            outputs = outputs + self.bias
        if not self.ragged:
            return self.activation(outputs)
        # Padded units must output exactly zero whatever the activation, and a
        # softmax must normalise over each member's own units only.
        out_mask = ops.cast(self._mask[:, 0, :], outputs.dtype)
        if self.activation is keras.activations.softmax:
            # -1e4 is "minus infinity" for a softmax yet finite in float16.
            outputs = ops.where(out_mask > 0, outputs, ops.full_like(outputs, -1e4))
        return self.activation(outputs) * out_mask

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_members, max(self.units))

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
            }
        )
        return config
