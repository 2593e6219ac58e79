"""Switches a grouped tensor between the batch-major and member-major layouts."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="supernet")
class SwapMemberAxis(keras.layers.Layer):
    """Swaps the first two axes: `(K, batch, ...)` <-> `(batch, K, ...)`.

    `GroupedDense` layers can pass their activations member-major, the
    layout of a batched matmul; a model output (and anything Keras batches,
    such as `predict`) must be batch-major. This layer turns one layout into
    the other. `keras.layers.Permute` cannot, since it never moves axis 0.

    Call arguments:
        inputs: a tensor of rank >= 2.

    Returns:
        The tensor with axes 0 and 1 swapped.

    Example:
    >>> tuple(SwapMemberAxis()(np.zeros((3, 2, 4))).shape)
    (2, 3, 4)
    """

    def call(self, inputs):
        axes = [1, 0] + list(range(2, len(inputs.shape)))
        return ops.transpose(inputs, axes)

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(
                f"SwapMemberAxis expects inputs of rank >= 2. Received: input_shape={input_shape}"
            )
        return (input_shape[1], input_shape[0], *input_shape[2:])
