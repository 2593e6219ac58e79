"""Optimizers whose update step is one fused kernel where the backend has one."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="supernet")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` with each variable's update in one fused kernel.

    Keras's Adam updates a variable with about a dozen element-wise ops, each
    one a pass over memory; for a fused ensemble of K MLPs (millions of
    weights, a few matmuls per step) that is a quarter of a training step
    on a CPU. On the TensorFlow backend this class runs the same update,
    `m += (g - m)(1 - beta_1)`, `v += (g^2 - v)(1 - beta_2)`,
    `w -= lr_t m / (sqrt(v) + epsilon)` with `lr_t = lr sqrt(1 - beta_2^t) /
    (1 - beta_1^t)`, as TensorFlow's fused `ResourceApplyAdam` kernel: one
    pass per variable, the same arithmetic. Elsewhere (other backends,
    `amsgrad=True`, non-float32 variables) it is exactly `keras.optimizers.Adam`.

    Args:
        As for `keras.optimizers.Adam`.

    Example:
    >>> optimizer = FusedAdam(learning_rate=1e-3)
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> model.compile(optimizer, "mse")
    >>> model.fit(np.ones((8, 4)), np.zeros((8, 2)), verbose=0).history["loss"][0] >= 0
    True

    Reference:
        Kingma & Ba 2015, Algorithm 1 (the form with the bias correction
        folded into the step size, as in Keras).
    """

    def update_step(self, gradient, variable, learning_rate):
        if (
            keras.backend.backend() != "tensorflow"
            or self.amsgrad
            or variable.dtype != "float32"
        ):
            return super().update_step(gradient, variable, learning_rate)
        # The one backend-specific place of the library: TensorFlow's fused
        # Adam kernel, behind the check above.
        import tensorflow as tf

        dtype = variable.dtype
        local_step = ops.cast(self.iterations + 1, dtype)
        beta_1_power = ops.power(ops.cast(self.beta_1, dtype), local_step)
        beta_2_power = ops.power(ops.cast(self.beta_2, dtype), local_step)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=m.handle,
            v=v.handle,
            beta1_power=beta_1_power,
            beta2_power=beta_2_power,
            lr=ops.cast(learning_rate, dtype),
            beta1=ops.cast(self.beta_1, dtype),
            beta2=ops.cast(self.beta_2, dtype),
            epsilon=ops.cast(self.epsilon, dtype),
            grad=tf.convert_to_tensor(ops.cast(gradient, dtype)),
        )
