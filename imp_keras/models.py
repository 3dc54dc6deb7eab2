"""Reference architectures of the paper's experiments, written once for tf_keras and Keras 3.

Every builder takes the Keras to build with as `keras`: the `tf_keras` module (the default) or
Keras 3's `keras` (any backend); both have the layers used here, with the same parameters. Every
builder returns a Sequential or Functional model (so `prunable` can clone it) whose output is
logits: no softmax, no kernel regularizers (weight decay belongs to the optimizer). The last layer,
`float32_logits`, casts the logits to float32, so that under a mixed_float16 policy the loss is
computed in float32; under float32 it does nothing.
"""

from collections.abc import Callable, Iterator, Mapping, Sequence
import inspect
import numbers
import types
from typing import Any

from imp_keras.core.checks import check_int

__all__ = [
    "MIN_IMAGE_SIDE",
    "MODELS",
    "build",
    "check_arguments",
    "conv_net",
    "lenet_300_100",
    "resnet50",
    "resnet_cifar",
    "vgg16_bn",
    "wide_resnet",
]

# Models whose downsampling needs images of at least this height and width.
MIN_IMAGE_SIDE = {"vgg16_bn": 32, "resnet50": 32}
# Arguments every builder takes that are not the architecture's own.
_COMMON = ("input_shape", "classes", "keras")


def _namespace(keras: types.ModuleType | None) -> types.ModuleType:
    if keras is None:
        from imp_keras.tf_keras._keras import keras  # the default: imported only when used
    return keras


def _float32_logits(keras):
    return keras.layers.Activation("linear", dtype="float32", name="float32_logits")


def _logits(keras, features, classes: int, kernel_initializer: str = "he_normal"):
    logits = keras.layers.Dense(classes, kernel_initializer=kernel_initializer, name="logits")(features)
    return _float32_logits(keras)(logits)


def _conv(keras, filters: int, kernel_size: int, strides: int, name: str):
    """A bias-free convolution: the BatchNormalization after it has its own offset."""
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, kernel_initializer="he_normal", name=name
    )


def _batch_norm(keras, name: str):
    # PyTorch's BatchNorm defaults, as in the PyTorch implementations these CIFAR networks are usually trained with.
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _bn_relu(keras, x, prefix: str, suffix: str = ""):
    return keras.layers.ReLU(name=f"{prefix}_relu{suffix}")(_batch_norm(keras, f"{prefix}_bn{suffix}")(x))


def _blocks_per_stage(depth: Any, extra_layers: int, argument: str = "depth") -> int:
    """n for `depth` = 6n + `extra_layers`: three stages of n residual blocks of two convolutions."""
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth < 6 + extra_layers or (depth - extra_layers) % 6:
        examples = ", ".join(str(6 * n + extra_layers) for n in (1, 2, 3, 4))
        raise ValueError(
            f"`{argument}` must be 6n+{extra_layers} for an integer n >= 1 ({examples}, ...). Received: {argument}={depth!r}"
        )
    return (depth - extra_layers) // 6


def _check_conv_depth(depth: Any, argument: str = "depth") -> int:
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral) or depth not in (2, 4, 6):
        raise ValueError(f"`{argument}` must be 2, 4 or 6. Received: {argument}={depth!r}")
    return int(depth)


def _check_dropout(dropout: Any, argument: str = "dropout") -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"`{argument}` must be in [0, 1). Received: {argument}={dropout!r}")
    return float(dropout)


def _check_image_side(input_shape: tuple[int, ...], model: str) -> None:
    side = MIN_IMAGE_SIDE[model]
    if len(input_shape) != 3 or min(input_shape[:2]) < side:
        raise ValueError(
            f"`input_shape` must be (height, width, channels) of at least {side}x{side} for {model}. "
            f"Received: input_shape={tuple(input_shape)!r}"
        )


def _stages(blocks: int, widths: Sequence[int]) -> Iterator[tuple[str, int, int]]:
    """(layer name prefix, filters, strides) of every residual block; the first block of every stage
    but the first halves the resolution."""
    for stage, filters in enumerate(widths, start=1):
        for block in range(1, blocks + 1):
            yield f"stage{stage}_block{block}", filters, 2 if block == 1 and stage > 1 else 1


def lenet_300_100(input_shape: tuple[int, ...] = (28, 28), classes: int = 10, *, keras: types.ModuleType | None = None) -> Any:
    """LeNet-300-100 (LeCun et al., 1998): two hidden Dense layers of 300 and 100 ReLU units.

    Returns logits; 266,200 kernel weights (235,200 + 30,000 + 1,000) on 28x28 inputs.

    Args:
      input_shape: shape of one image, e.g. (28, 28) or (28, 28, 1); it is flattened.
      classes: number of logits.
    """
    classes = check_int("classes", classes, 1)
    keras = _namespace(keras)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(300, activation="relu", name="fc1"),
            keras.layers.Dense(100, activation="relu", name="fc2"),
            keras.layers.Dense(classes, name="logits"),
            _float32_logits(keras),
        ],
        name="lenet_300_100",
    )


def conv_net(
    depth: int = 4,
    input_shape: tuple[int, ...] = (28, 28, 1),
    classes: int = 10,
    filters: int = 64,
    *,
    keras: types.ModuleType | None = None,
) -> Any:
    """Conv-2/4/6 (Frankle & Carbin, The Lottery Ticket Hypothesis, ICLR 2019).

    depth/2 blocks of two 3x3 ReLU convolutions (64, 64 / 128, 128 / 256, 256 filters), each block
    followed by 2x2 max-pooling, then Dense 256 -> 256 -> classes. Gaussian Glorot initialisation,
    as in the paper.

    Args:
      depth: number of convolutions: 2, 4 or 6.
      input_shape: shape of one image, e.g. (28, 28, 1) for Fashion-MNIST.
      classes: number of logits.
      filters: filters of the first block's convolutions, doubled at every block; 64 as in the
        paper, fewer for a narrower network that trains in reach of a CPU.
    """
    depth = _check_conv_depth(depth)
    classes = check_int("classes", classes, 1)
    keras = _namespace(keras)
    filters = check_int("filters", filters, 1)
    inputs = keras.Input(input_shape)
    x = inputs
    for block in range(1, depth // 2 + 1):
        for i in (1, 2):
            x = keras.layers.Conv2D(
                filters * 2 ** (block - 1), 3, padding="same", activation="relu", kernel_initializer="glorot_normal",
                name=f"block{block}_conv{i}",
            )(x)
        x = keras.layers.MaxPool2D(2, name=f"block{block}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = keras.layers.Dense(256, activation="relu", kernel_initializer="glorot_normal", name=f"fc{i}")(x)
    return keras.Model(inputs, _logits(keras, x, classes, "glorot_normal"), name=f"conv{depth}")


def _option_a_shortcut(keras, x, filters: int, prefix: str):
    """He et al.'s parameter-free shortcut: x[:, ::2, ::2, :] with zero channels appended."""
    x = keras.layers.MaxPool2D(pool_size=1, strides=2, name=f"{prefix}_shortcut_subsample")(x)
    # With channels_first, ZeroPadding2D pads the last two axes: the width (by nothing) and the channels.
    return keras.layers.ZeroPadding2D(
        ((0, 0), (0, filters - x.shape[-1])), data_format="channels_first", name=f"{prefix}_shortcut_pad"
    )(x)


def resnet_cifar(
    depth: int = 20, input_shape: tuple[int, ...] = (32, 32, 3), classes: int = 10, *, keras: types.ModuleType | None = None
) -> Any:
    """CIFAR ResNet-(6n+2) (He et al., Deep Residual Learning for Image Recognition, CVPR 2016, §4.2).

    A 3x3 convolution of 16 filters, then three stages of n basic blocks of 16, 32 and 64 filters,
    global average pooling and a Dense classifier. Convolutions are bias-free and followed by
    BatchNorm; shortcuts are option A (identity, or subsampling with zero-padded channels), so
    they have no parameters.

    Args:
      depth: 6n+2 layers, e.g. 20, 32, 44, 56 or 110.
      input_shape: shape of one image.
      classes: number of logits.
    """
    blocks = _blocks_per_stage(depth, 2)
    classes = check_int("classes", classes, 1)
    keras = _namespace(keras)
    inputs = keras.Input(input_shape)
    x = _bn_relu(keras, _conv(keras, 16, 3, 1, "stem_conv")(inputs), "stem")
    for prefix, filters, strides in _stages(blocks, (16, 32, 64)):
        shortcut = x if strides == 1 else _option_a_shortcut(keras, x, filters, prefix)
        y = _bn_relu(keras, _conv(keras, filters, 3, strides, f"{prefix}_conv1")(x), prefix, "1")
        y = _conv(keras, filters, 3, 1, f"{prefix}_conv2")(y)
        y = _batch_norm(keras, f"{prefix}_bn2")(y)
        x = keras.layers.ReLU(name=f"{prefix}_relu2")(keras.layers.Add(name=f"{prefix}_add")([y, shortcut]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, _logits(keras, x, classes), name=f"resnet{depth}")


def wide_resnet(
    depth: int = 28,
    width: int = 10,
    input_shape: tuple[int, ...] = (32, 32, 3),
    classes: int = 100,
    dropout: float = 0.0,
    *,
    keras: types.ModuleType | None = None,
) -> Any:
    """Pre-activation WRN-depth-width (Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016).

    A 3x3 convolution of 16 filters, then three stages of (depth-4)/6 pre-activation blocks
    (BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3) of 16*width, 32*width and 64*width filters, a last
    BN-ReLU, global average pooling and a Dense classifier. Where a block changes the shape, its
    shortcut is a 1x1 convolution of the pre-activated input. Convolutions are bias-free.

    Args:
      depth: 6n+4 layers, e.g. 16, 22, 28 or 40.
      width: widening factor k.
      input_shape: shape of one image.
      classes: number of logits.
      dropout: dropout rate between the two convolutions of a block, in [0, 1); 0 for none.
    """
    blocks = _blocks_per_stage(depth, 4)
    width = check_int("width", width, 1)
    classes = check_int("classes", classes, 1)
    keras = _namespace(keras)
    dropout = _check_dropout(dropout)
    inputs = keras.Input(input_shape)
    x = _conv(keras, 16, 3, 1, "stem_conv")(inputs)
    for prefix, filters, strides in _stages(blocks, (16 * width, 32 * width, 64 * width)):
        activated = _bn_relu(keras, x, prefix, "1")
        if strides == 1 and x.shape[-1] == filters:
            shortcut = x
        else:
            shortcut = _conv(keras, filters, 1, strides, f"{prefix}_shortcut_conv")(activated)
        y = _bn_relu(keras, _conv(keras, filters, 3, strides, f"{prefix}_conv1")(activated), prefix, "2")
        if dropout:
            y = keras.layers.Dropout(dropout, name=f"{prefix}_dropout")(y)
        y = _conv(keras, filters, 3, 1, f"{prefix}_conv2")(y)
        x = keras.layers.Add(name=f"{prefix}_add")([y, shortcut])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(_bn_relu(keras, x, "final"))
    return keras.Model(inputs, _logits(keras, x, classes), name=f"wrn_{depth}_{width}")


def vgg16_bn(input_shape: tuple[int, ...] = (32, 32, 3), classes: int = 10, *, keras: types.ModuleType | None = None) -> Any:
    """VGG-16 with BatchNorm for CIFAR (Simonyan & Zisserman, ICLR 2015; BatchNorm after every
    convolution as in the CIFAR variants of pruning papers).

    Five blocks of bias-free 3x3 convolutions (64, 64 / 128, 128 / 256 x3 / 512 x3 / 512 x3), each
    convolution followed by BN-ReLU and each block by 2x2 max-pooling, then a single Dense
    classifier on the flattened features (1x1x512 on 32x32 inputs).

    Args:
      input_shape: shape of one image, at least 32x32.
      classes: number of logits.
    """
    classes = check_int("classes", classes, 1)
    keras = _namespace(keras)
    _check_image_side(input_shape, "vgg16_bn")
    inputs = keras.Input(input_shape)
    x = inputs
    for block, (filters, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1):
        for i in range(1, convs + 1):
            x = _bn_relu(keras, _conv(keras, filters, 3, 1, f"block{block}_conv{i}")(x), f"block{block}", str(i))
        x = keras.layers.MaxPool2D(2, name=f"block{block}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, _logits(keras, x, classes), name="vgg16_bn")


def resnet50(input_shape: tuple[int, ...] = (224, 224, 3), classes: int = 1000, *, keras: types.ModuleType | None = None) -> Any:
    """ResNet-50 (He et al., CVPR 2016) as `keras.applications.ResNet50`, randomly initialised.

    Args:
      input_shape: shape of one image, at least 32x32.
      classes: number of logits.
    """
    classes = check_int("classes", classes, 1)
    keras = _namespace(keras)
    _check_image_side(input_shape, "resnet50")
    base = keras.applications.ResNet50(weights=None, input_shape=input_shape, classes=classes, classifier_activation=None)
    return keras.Model(base.inputs, _float32_logits(keras)(base.outputs[0]), name="resnet50")


MODELS: dict[str, Callable[..., Any]] = {
    "lenet_300_100": lenet_300_100,
    "conv_net": conv_net,
    "resnet_cifar": resnet_cifar,
    "wide_resnet": wide_resnet,
    "vgg16_bn": vgg16_bn,
    "resnet50": resnet50,
}


# The checks of each builder's own arguments, for `check_arguments`: (value, argument name) -> None.
_ARGUMENT_CHECKS: dict[str, dict[str, Callable[[Any, str], object]]] = {
    "conv_net": {"depth": _check_conv_depth, "filters": lambda value, argument: check_int(argument, value, 1)},
    "resnet_cifar": {"depth": lambda value, argument: _blocks_per_stage(value, 2, argument)},
    "wide_resnet": {
        "depth": lambda value, argument: _blocks_per_stage(value, 4, argument),
        "width": lambda value, argument: check_int(argument, value, 1),
        "dropout": _check_dropout,
    },
}


def check_arguments(name: str, kwargs: Mapping[str, Any], prefix: str = "") -> None:
    """Raises the `ValueError` that `build(name, ..., **kwargs)` would, without building anything:
    an argument the builder does not take, or an invalid value.

    Args:
      name: a key of `MODELS`.
      kwargs: the builder's arguments other than `input_shape` and `classes`.
      prefix: how the caller's messages name the arguments, e.g. "model.kwargs." in a config.
    """
    accepted = [p for p in inspect.signature(MODELS[name]).parameters if p not in _COMMON]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        where = f"`{prefix[:-1]}`: " if prefix else ""
        raise ValueError(
            f"{where}Model {name!r} takes no argument {', '.join(map(repr, unknown))}; besides `input_shape` and "
            f"`classes` it takes {accepted or 'nothing'}. Received: {', '.join(f'{prefix}{k}={kwargs[k]!r}' for k in unknown)}"
        )
    for key, value in kwargs.items():
        _ARGUMENT_CHECKS[name][key](value, prefix + key)


def build(name: str, input_shape: tuple[int, ...], classes: int, *, keras: types.ModuleType | None = None, **kwargs: Any) -> Any:
    """Builds the model `name` of `MODELS`.

    Args:
      name: a key of `MODELS`.
      input_shape: shape of one input.
      classes: number of logits.
      keras: the Keras to build with: `tf_keras` (None, the default) or Keras 3's `keras`.
      **kwargs: the builder's other arguments, e.g. `depth=56` for "resnet_cifar".

    Raises:
      ValueError: `name` is unknown, the builder takes no argument named in `kwargs`, or an
        argument's value is invalid.

    Example:
    >>> build("resnet_cifar", (32, 32, 3), 10, depth=56).name
    'resnet56'
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"`name` must be one of {list(MODELS)}. Received: name={name!r}")
    check_arguments(name, kwargs)
    return MODELS[name](input_shape=input_shape, classes=classes, keras=keras, **kwargs)
