"""The thesis's CIFAR10 convolutional network (thesis Table 2)."""

import numbers

import keras


def thesis_cnn(input_shape=(32, 32, 3), num_classes=10, l2=1e-4, bn_momentum=0.99, dtype=None, name="thesis_cnn"):
    """The CNN of thesis Table 2, as a plain `keras.Sequential`.

    Three blocks of two 3x3 convolutions (32, 64 and 128 filters), each
    convolution with ELU activation, then BatchNormalization, and an L2
    penalty on its kernel; every block ends with 2x2 max pooling and dropout
    (0.2, 0.3, 0.4). A softmax Dense layer (no L2, as in the table) reads the
    flattened features. Layer order within a block follows the table's
    "activation elu, batch norm": Conv2D(elu) -> BatchNormalization.
    Convolutions use "same" padding, so a 32x32 input gives 4x4x128 features.

    Args:
        input_shape: `(height, width, channels)`; the thesis uses CIFAR's
            `(32, 32, 3)`. Height and width must be >= 8.
        num_classes: int >= 2, width of the softmax output.
        l2: float >= 0, L2 factor on every convolution kernel (thesis: 1e-4).
        bn_momentum: float in (0, 1), momentum of the BatchNormalization
            moving statistics (Keras default and thesis: 0.99). Runs of a
            few hundred steps need less, e.g. 0.9 (PyTorch's default): with
            0.99 the moving statistics still hold most of their initial
            values and held-out accuracy stays near chance.
        dtype: `None` (the global dtype policy) or a dtype policy, e.g.
            `"mixed_bfloat16"`, for every layer but the softmax layer, which
            computes in `float32` so that probabilities and the loss keep
            full precision (as the Keras mixed-precision guide advises).
        name: model name.

    Returns:
        An uncompiled `keras.Sequential` with 19 layers (6 Conv2D, 6
        BatchNormalization, 3 MaxPooling2D, 3 Dropout, Flatten, Dense).
        The thesis compiles it with categorical crossentropy.

    Example:
    >>> model = thesis_cnn(num_classes=10)
    >>> model.output_shape
    (None, 10)

    Reference:
        Bukowski & Dzwinel 2020, Table 2 (CIFAR10 model), used in Table 3
        and Figure 4.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape[:2]) < 8 or input_shape[2] < 1:
        raise ValueError(
            "Argument `input_shape` must be (height, width, channels) with height "
            f"and width >= 8. Received: input_shape={input_shape}"
        )
    if not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"Argument `num_classes` must be an int >= 2. Received: num_classes={num_classes}")
    if l2 < 0:
        raise ValueError(f"Argument `l2` must be >= 0. Received: l2={l2}")
    if not 0 < bn_momentum < 1:
        raise ValueError(f"Argument `bn_momentum` must be in (0, 1). Received: bn_momentum={bn_momentum}")
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None

    layers = [keras.Input(shape=input_shape)]
    for block, (filters, rate) in enumerate(((32, 0.2), (64, 0.3), (128, 0.4)), start=1):
        for conv in (1, 2):
            layers += [
                keras.layers.Conv2D(
                    filters,
                    3,
                    padding="same",
                    activation="elu",
                    kernel_regularizer=regularizer,
                    dtype=dtype,
                    name=f"block{block}_conv{conv}",
                ),
                keras.layers.BatchNormalization(momentum=bn_momentum, dtype=dtype, name=f"block{block}_bn{conv}"),
            ]
        layers += [
            keras.layers.MaxPooling2D(2, dtype=dtype, name=f"block{block}_pool"),
            keras.layers.Dropout(rate, dtype=dtype, name=f"block{block}_dropout"),
        ]
    layers += [
        keras.layers.Flatten(dtype=dtype, name="flatten"),
        keras.layers.Dense(num_classes, activation="softmax", dtype=None if dtype is None else "float32", name="predictions"),
    ]
    return keras.Sequential(layers, name=name)
