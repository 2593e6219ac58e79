"""VGG-16 with BatchNormalization for 32x32 images (thesis Figure 5)."""

import numbers

import keras

# Filters per convolution; "M" is a 2x2 max pooling (Simonyan & Zisserman's
# configuration D).
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(
    input_shape=(32, 32, 3),
    num_classes=100,
    l2=5e-4,
    dropout=0.5,
    dense_units=512,
    bn_momentum=0.99,
    name="vgg16",
):
    """VGG-16 for CIFAR-sized inputs, as a plain `keras.Sequential`.

    Thirteen 3x3 convolutions (configuration D: 64, 64, M, 128, 128, M,
    256 x3, M, 512 x3, M, 512 x3, M), each followed by BatchNormalization
    and ReLU. After five poolings a 32x32 input is 1x1x512, so the classic
    4096-4096 classifier is replaced by the small CIFAR one: Flatten, Dropout,
    Dense(`dense_units`) -> BatchNormalization -> ReLU, Dropout, Dense softmax.
    Every convolution and Dense kernel carries an L2 penalty.

    Args:
        input_shape: `(height, width, channels)`, height and width >= 32.
        num_classes: int >= 2, width of the softmax output (CIFAR100: 100).
        l2: float >= 0, L2 factor on every kernel (the common CIFAR setting
            5e-4).
        dropout: float in [0, 1), rate of the two classifier Dropout layers.
        dense_units: int >= 1, width of the hidden classifier layer.
        bn_momentum: float in (0, 1), momentum of the BatchNormalization
            moving statistics (Keras default 0.99; short runs need less,
            see `thesis_cnn`).
        name: model name.

    Returns:
        An uncompiled `keras.Sequential`.

    Example:
    >>> model = vgg16(num_classes=100)
    >>> model.output_shape
    (None, 100)

    Reference:
        Simonyan & Zisserman 2015 (configuration D, thesis ref. [9]);
        Bukowski & Dzwinel 2020, Figure 5 (CIFAR100, last-layers retraining).
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape[:2]) < 32 or input_shape[2] < 1:
        raise ValueError(
            "Argument `input_shape` must be (height, width, channels) with height "
            f"and width >= 32. Received: input_shape={input_shape}"
        )
    if not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"Argument `num_classes` must be an int >= 2. Received: num_classes={num_classes}")
    if l2 < 0:
        raise ValueError(f"Argument `l2` must be >= 0. Received: l2={l2}")
    if not 0 <= dropout < 1:
        raise ValueError(f"Argument `dropout` must be in [0, 1). Received: dropout={dropout}")
    if not isinstance(dense_units, numbers.Integral) or dense_units < 1:
        raise ValueError(f"Argument `dense_units` must be an int >= 1. Received: dense_units={dense_units}")
    if not 0 < bn_momentum < 1:
        raise ValueError(f"Argument `bn_momentum` must be in (0, 1). Received: bn_momentum={bn_momentum}")
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None

    layers = [keras.Input(shape=input_shape)]
    block, conv = 1, 1
    for item in VGG16_CONFIG:
        if item == "M":
            layers.append(keras.layers.MaxPooling2D(2, name=f"block{block}_pool"))
            block, conv = block + 1, 1
            continue
        layers += [
            keras.layers.Conv2D(
                item, 3, padding="same", kernel_regularizer=regularizer, name=f"block{block}_conv{conv}"
            ),
            keras.layers.BatchNormalization(momentum=bn_momentum, name=f"block{block}_bn{conv}"),
            keras.layers.Activation("relu", name=f"block{block}_relu{conv}"),
        ]
        conv += 1
    layers += [
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dropout(dropout, name="fc_dropout1"),
        keras.layers.Dense(dense_units, kernel_regularizer=regularizer, name="fc"),
        keras.layers.BatchNormalization(momentum=bn_momentum, name="fc_bn"),
        keras.layers.Activation("relu", name="fc_relu"),
        keras.layers.Dropout(dropout, name="fc_dropout2"),
        keras.layers.Dense(num_classes, activation="softmax", kernel_regularizer=regularizer, name="predictions"),
    ]
    return keras.Sequential(layers, name=name)
