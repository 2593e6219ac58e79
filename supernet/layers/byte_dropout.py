"""Dropout whose keep masks come from random bytes, four per random word."""

import keras
from keras import ops

LEVELS = 256  # a mask byte takes 256 values; the rate is a multiple of 1/256


@keras.saving.register_keras_serializable(package="supernet")
class ByteDropout(keras.layers.Layer):
    """Inverted dropout drawing one random byte per unit instead of one float.

    `keras.layers.Dropout` draws a 32-bit uniform float for every unit. A
    byte decides a unit as well: this layer draws `ceil(n / 4)` random
    32-bit integers for `n` units, reads each as 4 bytes and drops a unit
    when its byte is below `round(rate * 256)`. That is a quarter of the
    random numbers, for the `(K, batch, units)` activations of a fused
    ensemble, where dropout takes about a sixth of a training step. Whether
    that makes training faster depends on the machine: `supernet bench`
    measures it beside `keras.layers.Dropout`.

    The price is the rate's resolution: the rate applied is
    `round(rate * 256) / 256` (0.2 becomes 0.19921875), available as
    `applied_rate`. Kept units are scaled by `1 / (1 - applied_rate)`, so
    the expected output equals the input, as with `keras.layers.Dropout`.
    Masks are independent across units but not the same random stream as
    `keras.layers.Dropout`'s for the same seed.

    Args:
        rate: float in [1/512, 1), the fraction of units to drop; rounded to
            the nearest multiple of 1/256.
        seed: optional int seeding the masks.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a tensor of any shape.
        training: bool; masks are drawn only when True, otherwise the input
            passes unchanged.

    Returns:
        A tensor of the input's shape and dtype.

    Example:
    >>> layer = ByteDropout(0.5, seed=0)
    >>> np.asarray(layer(np.ones((2, 3)))).tolist()  # inference: unchanged
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    >>> layer.applied_rate
    0.5
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 < rate < 1:
            raise ValueError(f"Argument `rate` must be in (0, 1). Received: rate={rate}")
        threshold = round(rate * LEVELS)
        if threshold == 0 or threshold == LEVELS:
            raise ValueError(
                "Argument `rate` rounds to a byte threshold of 0 or 256, which byte masks cannot apply; "
                f"it must be in [1/512, 1 - 1/512). Received: rate={rate}"
            )
        self.rate = float(rate)
        self.seed = seed
        self.threshold = int(threshold)
        self.applied_rate = self.threshold / LEVELS
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        self.built = True

    def call(self, inputs, training=False):
        if not training:
            return inputs
        size = ops.size(inputs)
        # Random words over the whole int32 range, so that each of their 4
        # bytes is uniform on 0-255. Their static last axis of 1 lets
        # `ops.view` split them into bytes when the batch size is unknown
        # (TensorFlow graphs).
        words = keras.random.randint(
            ((size + 3) // 4, 1), minval=-(2**31), maxval=2**31 - 1, dtype="int32", seed=self.seed_generator
        )
        mask_bytes = ops.reshape(ops.view(words, "uint8"), (-1,))[:size]
        keep = ops.reshape(mask_bytes >= self.threshold, ops.shape(inputs))
        scale = ops.cast(LEVELS / (LEVELS - self.threshold), inputs.dtype)
        return ops.where(keep, inputs * scale, ops.zeros_like(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
