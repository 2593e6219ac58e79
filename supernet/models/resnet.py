"""Residual networks for transfer learning: small CIFAR ResNets and ResNet50.

Three builders share one naming scheme, so the trainers in
`supernet.transfer` can find stages and heads in any of them:

- `small_resnet`: a CIFAR-style ResNet (He et al. 2016, Sec. 4.2) with a
  stem, `len(stages)` stages of basic residual blocks, global average
  pooling and a softmax `Dense` layer named `"head"`. Layers of stage `s`
  are named `"stage{s}_..."`.
- `resnet50_backbone`: `keras.applications.ResNet50` without its top, with
  average pooling, whose stages are named `"conv2_..."` to `"conv5_..."`.
- `transfer_model`: a new softmax head named `"head"` on the pooled
  features of a (copied) backbone.
"""

import numbers

import keras
import numpy as np

# Channel means of the ImageNet training set in BGR order, the "caffe"
# preprocessing the Keras ResNet50 weights were trained with.
_IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)


def _check_input_shape(input_shape, minimum):
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape[:2]) < minimum or input_shape[2] < 1:
        raise ValueError(
            "Argument `input_shape` must be (height, width, channels) with height "
            f"and width >= {minimum}. Received: input_shape={input_shape}"
        )
    return input_shape


def _check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"Argument `num_classes` must be an int >= 2. Received: num_classes={num_classes}")


def _he_normal(seeds):
    """A He-normal initialiser with the next seed of `seeds` (None: unseeded)."""
    return keras.initializers.HeNormal(seed=None if seeds is None else next(seeds))


def _basic_block(x, filters, stride, prefix, l2, seeds):
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    conv = dict(padding="same", use_bias=False, kernel_regularizer=regularizer)
    shortcut = x
    y = keras.layers.Conv2D(filters, 3, strides=stride, kernel_initializer=_he_normal(seeds), name=f"{prefix}_conv1", **conv)(x)
    y = keras.layers.BatchNormalization(name=f"{prefix}_bn1")(y)
    y = keras.layers.ReLU(name=f"{prefix}_relu1")(y)
    y = keras.layers.Conv2D(filters, 3, kernel_initializer=_he_normal(seeds), name=f"{prefix}_conv2", **conv)(y)
    y = keras.layers.BatchNormalization(name=f"{prefix}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, kernel_initializer=_he_normal(seeds), name=f"{prefix}_proj", **conv)(x)
        shortcut = keras.layers.BatchNormalization(name=f"{prefix}_proj_bn")(shortcut)
    y = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{prefix}_out")(y)


def small_resnet(
    input_shape=(32, 32, 3),
    num_classes=10,
    depth=None,
    stages=(1, 1, 1),
    width=16,
    l2=0.0,
    seed=None,
    name="small_resnet",
):
    """A small CIFAR ResNet with basic blocks, as a functional Keras model.

    Stem: 3x3 convolution with `width` filters, BatchNormalization, ReLU.
    Stage `s` (1-based) has `stages[s - 1]` basic blocks (two 3x3
    convolutions, each followed by BatchNormalization, an identity or 1x1
    projection shortcut, ReLU) with `width * 2**(s - 1)` filters; every
    stage after the first halves the resolution in its first block. Global
    average pooling (`"pool"`) feeds a softmax `Dense` layer named `"head"`.

    Args:
        input_shape: `(height, width, channels)`, height and width >= 4.
        num_classes: int >= 2, width of the softmax head.
        depth: optional CIFAR ResNet depth `6n + 2` (8, 14, 20, 32, ...);
            overrides `stages` with `(n, n, n)`.
        stages: tuple of positive ints, blocks per stage.
        width: int >= 1, filters of the stem and of stage 1.
        l2: float >= 0, L2 factor on the convolution kernels.
        seed: int or None; with an int every kernel initialiser gets its
            own seed derived from it, so the same seed gives the same
            network (independent pre-training runs use different seeds).
        name: model name.

    Returns:
        An uncompiled functional `keras.Model`. Layers of stage `s` are named
        `"stage{s}_block{b}_..."`, the stem `"stem_..."`.

    Example:
    >>> model = small_resnet((8, 8, 3), num_classes=4, width=4)
    >>> model.output_shape, model.get_layer("head").units
    ((None, 4), 4)

    Reference:
        He et al. 2016, "Deep Residual Learning for Image Recognition",
        Sec. 4.2 (the CIFAR-10 ResNets).
    """
    input_shape = _check_input_shape(input_shape, 4)
    _check_num_classes(num_classes)
    if depth is not None:
        if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"Argument `depth` must be 6n + 2 with n >= 1. Received: depth={depth}")
        stages = (int((depth - 2) // 6),) * 3
    stages = tuple(stages)
    if not stages or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1 for n in stages):
        raise ValueError(f"Argument `stages` must be a non-empty tuple of ints >= 1. Received: stages={stages}")
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
        raise ValueError(f"Argument `width` must be an int >= 1. Received: width={width}")
    if l2 < 0:
        raise ValueError(f"Argument `l2` must be >= 0. Received: l2={l2}")

    seeds = None if seed is None else iter(range(int(seed) * 1000, int(seed) * 1000 + 1000))

    # === Layers and Functional Model ===
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(
        width, 3, padding="same", use_bias=False, kernel_initializer=_he_normal(seeds), name="stem_conv"
    )(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for s, blocks in enumerate(stages, start=1):
        for b in range(1, blocks + 1):
            stride = 2 if (s > 1 and b == 1) else 1
            x = _basic_block(x, width * 2 ** (s - 1), stride, f"stage{s}_block{b}", l2, seeds)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    head_init = keras.initializers.GlorotUniform(seed=None if seeds is None else next(seeds))
    outputs = keras.layers.Dense(num_classes, activation="softmax", kernel_initializer=head_init, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet50_backbone(input_shape=(224, 224, 3), weights="imagenet", resize_to=None, preprocess=True, name="resnet50"):
    """ResNet50 without its top, with average pooling: `(batch, 2048)` features.

    Wraps `keras.applications.ResNet50(include_top=False, pooling="avg")`.
    Optional input layers are built into the same functional graph (no
    nested model, so the stage names `"conv2_"` ... `"conv5_"` stay
    visible to `supernet.transfer`):

    - `resize_to`: a `keras.layers.Resizing` to `(resize_to, resize_to)`,
      e.g. CIFAR's 32x32 images to the 224x224 of the paper's protocol.
    - `preprocess`: images in `[0, 1]` RGB are mapped to the "caffe" input
      the Keras ImageNet weights expect (0-255, BGR, ImageNet channel means
      subtracted) by a frozen 1x1 convolution named `"imagenet_preprocess"`.

    Args:
        input_shape: `(height, width, channels)` of the inputs (>= 32 after
            resizing).
        weights: `"imagenet"` (downloads the weights), `None` (random
            initialisation) or a path to a weights file.
        resize_to: None or int, the side length the inputs are resized to.
        preprocess: bool, add the `[0, 1]` RGB -> caffe mapping.
        name: model name.

    Returns:
        A functional `keras.Model` with output shape `(None, 2048)`.

    Example:
    >>> backbone = resnet50_backbone((32, 32, 3), weights=None)  # doctest: +SKIP
    >>> backbone.output_shape  # doctest: +SKIP
    (None, 2048)

    Reference:
        He et al. 2016; Sadrtdinov et al. 2023, "To Stay or Not to Stay in
        the Pre-train Basin", Sec. 4 (ResNet50 pre-trained on ImageNet,
        fine-tuned on CIFAR-100 at 224x224).
    """
    input_shape = _check_input_shape(input_shape, 1)
    side = resize_to if resize_to is not None else min(input_shape[:2])
    if side < 32:
        raise ValueError(
            "ResNet50 needs inputs of at least 32x32 (after `resize_to`). "
            f"Received: input_shape={input_shape}, resize_to={resize_to}"
        )
    if input_shape[2] != 3 and preprocess:
        raise ValueError(f"`preprocess=True` needs RGB inputs. Received: input_shape={input_shape}")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if resize_to is not None:
        x = keras.layers.Resizing(int(resize_to), int(resize_to), name="resize")(x)
    if preprocess:
        # 255 * RGB -> BGR permutation, minus the channel means; a frozen 1x1
        # convolution keeps the model serialisable without a custom layer.
        kernel = np.zeros((1, 1, 3, 3), np.float32)
        for rgb in range(3):
            kernel[0, 0, rgb, 2 - rgb] = 255.0
        layer = keras.layers.Conv2D(3, 1, name="imagenet_preprocess", trainable=False)
        x = layer(x)
        layer.set_weights([kernel, -np.asarray(_IMAGENET_BGR_MEAN, np.float32)])
    backbone = keras.applications.ResNet50(
        include_top=False,
        weights=weights,
        input_tensor=x,
        pooling="avg",
    )
    return keras.Model(inputs, backbone.output, name=name)


def _features(model):
    """The pooled features of a backbone or of a classifier with a `head`."""
    names = [layer.name for layer in model.layers]
    if "head" in names:
        return model.get_layer("head").input
    outputs = model.outputs[0]
    if len(outputs.shape) == 4:
        return keras.layers.GlobalAveragePooling2D(name="pool")(outputs)
    if len(outputs.shape) != 2:
        raise ValueError(
            "The backbone must output (batch, features) or (batch, h, w, c). "
            f"Received: output shape {outputs.shape}"
        )
    return outputs


def transfer_model(backbone, num_classes, *, copy=True, head_seed=None, name="transfer_model"):
    """A new softmax head named `"head"` on a backbone's pooled features.

    If `backbone` already has a layer named `"head"` (a pre-trained
    classifier such as `small_resnet`), that head is dropped and the new one
    reads its inputs; otherwise the new head reads the backbone's output
    (globally average-pooled if it is a feature map).

    Args:
        backbone: a functional `keras.Model`.
        num_classes: int >= 2, classes of the target task.
        copy: if `True` (default) the backbone is cloned with its weights,
            so fine-tuning the result leaves `backbone` untouched; if
            `False` the layers (and weights) are shared.
        head_seed: int or None, seed of the head's Glorot-uniform kernel
            initialiser (different seeds give the different head
            initialisations of a local deep ensemble).
        name: model name.

    Returns:
        An uncompiled functional `keras.Model`.

    Example:
    >>> source = small_resnet((8, 8, 3), num_classes=5, width=4)
    >>> target = transfer_model(source, num_classes=3, head_seed=1)
    >>> target.output_shape
    (None, 3)

    Reference:
        Sadrtdinov et al. 2023, Sec. 3: every fine-tuned member gets a newly
        initialised classification head on the pre-trained backbone.
    """
    _check_num_classes(num_classes)
    if not isinstance(backbone, keras.Model):
        raise ValueError(f"Argument `backbone` must be a keras.Model. Received: backbone={backbone!r}")
    if copy:
        source = backbone
        backbone = keras.models.clone_model(source)
        backbone.set_weights(source.get_weights())
        for new, old in zip(backbone.layers, source.layers):
            new.trainable = old.trainable
    features = _features(backbone)
    outputs = keras.layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer=keras.initializers.GlorotUniform(seed=head_seed),
        name="head",
    )(features)
    inputs = backbone.inputs[0] if len(backbone.inputs) == 1 else backbone.inputs
    return keras.Model(inputs, outputs, name=name)
