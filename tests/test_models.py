"""The model zoo: shapes, exact parameter and kernel counts, option-A shortcuts, saving, mixed precision."""

import numpy as np
import pytest
import tensorflow as tf

import imp_keras
import imp_keras.models
from imp_keras import keras
from imp_keras.tf_keras.masking import masked_weights
from imp_keras.models import MODELS, build, conv_net, lenet_300_100, resnet50, resnet_cifar, vgg16_bn, wide_resnet

# count_params() includes BatchNorm's moving statistics; the published figures count trainable
# parameters only. Kernels are the tensors `prunable` wraps: every Conv2D and Dense kernel.
# (name, kwargs, input_shape, classes, count_params(), trainable parameters, kernels)
ARCHITECTURES = [
    pytest.param("lenet_300_100", {}, (28, 28), 10, 266_610, 266_610, 3, id="lenet_300_100-2d"),
    pytest.param("lenet_300_100", {}, (28, 28, 1), 10, 266_610, 266_610, 3, id="lenet_300_100-3d"),
    # Conv-2/4/6 on 28x28: 2/4/6 convs + 3 Dense.
    pytest.param("conv_net", {"depth": 2}, (28, 28, 1), 10, 3_317_450, 3_317_450, 5, id="conv2"),
    pytest.param("conv_net", {"depth": 4}, (28, 28, 1), 10, 1_933_258, 1_933_258, 7, id="conv4"),
    pytest.param("conv_net", {"depth": 6}, (28, 28, 1), 10, 1_802_698, 1_802_698, 9, id="conv6"),
    # Narrow Conv-2 of the accuracy benchmark: 16 filters (160 + 2,320), Dense 3,136 -> 256 -> 256 -> 10.
    pytest.param("conv_net", {"depth": 2, "filters": 16}, (28, 28, 1), 10, 873_914, 873_914, 5, id="conv2_16"),
    # Conv-4 with 8, 8 / 16, 16 filters: 80 + 584 + 1,168 + 2,320, then Dense 784 -> 256 -> 256 -> 10.
    pytest.param("conv_net", {"depth": 4, "filters": 8}, (28, 28, 1), 10, 273_474, 273_474, 7, id="conv4_8"),
    # He et al. (2016), Table 6: ResNet-20 0.27M, ResNet-56 0.85M. 6n+1 convs + 1 Dense.
    pytest.param("resnet_cifar", {"depth": 20}, (32, 32, 3), 10, 271_098, 269_722, 20, id="resnet20"),
    pytest.param("resnet_cifar", {"depth": 56}, (32, 32, 3), 10, 857_082, 853_018, 56, id="resnet56"),
    # WRN-16-2: 1 + 12 convs + 3 1x1 shortcuts (every stage widens) + 1 Dense.
    pytest.param("wide_resnet", {"depth": 16, "width": 2}, (32, 32, 3), 10, 693_498, 691_674, 17, id="wrn16_2"),
    # Zagoruyko & Komodakis (2016): WRN-28-10 36.5M (36,479,194 with 10 classes). 1 + 24 + 3 + 1 kernels.
    pytest.param("wide_resnet", {}, (32, 32, 3), 100, 36_554_836, 36_536_884, 29, id="wrn28_10"),
    # The common CIFAR VGG-16-BN has 14.7M (14,728,266 with conv biases; ours are bias-free). 13 convs + 1 Dense.
    pytest.param("vgg16_bn", {}, (32, 32, 3), 10, 14_732_490, 14_724_042, 14, id="vgg16_bn"),
    # keras.applications.ResNet50: 25.6M. 53 convs (4 projection shortcuts) + 1 Dense.
    pytest.param("resnet50", {}, (224, 224, 3), 1000, 25_636_712, 25_583_592, 54, id="resnet50"),
]


@pytest.mark.parametrize("name, kwargs, input_shape, classes, total, trainable, kernels", ARCHITECTURES)
def test_architecture_shapes_and_exact_counts(name, kwargs, input_shape, classes, total, trainable, kernels):
    model = build(name, input_shape, classes, **kwargs)
    assert model.input_shape == (None, *input_shape)
    assert model(np.zeros((1, *input_shape), "float32")).shape == (1, classes)
    assert model.count_params() == total
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable
    assert model.layers[-1].name == "float32_logits" and model.layers[-1].dtype_policy.name == "float32"
    assert len(masked_weights(imp_keras.prunable(model))) == kernels


def test_conv_net_filters_double_at_every_block():
    model = conv_net(depth=6, filters=4)
    assert [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2D)] == [4, 4, 8, 8, 16, 16]
    assert [l.units for l in model.layers if isinstance(l, keras.layers.Dense)] == [256, 256, 10]
    assert [l.filters for l in conv_net(depth=4).layers if isinstance(l, keras.layers.Conv2D)] == [64, 64, 128, 128]


def test_lenet_keeps_its_layer_names():
    model = lenet_300_100()
    assert [l.name for l in model.layers] == ["flatten", "fc1", "fc2", "logits", "float32_logits"]


def test_registry_names_each_builder_by_its_function_name():
    assert all(builder is getattr(imp_keras.models, name) for name, builder in MODELS.items())


def test_build_passes_builder_arguments_on():
    model = build("wide_resnet", (16, 16, 3), 7, depth=10, width=1, dropout=0.3)
    assert (model.name, model.output_shape) == ("wrn_10_1", (None, 7))
    assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.3] * 3
    assert not any(isinstance(l, keras.layers.Dropout) for l in wide_resnet(depth=10, width=1).layers)


def test_build_refuses_unknown_name():
    with pytest.raises(ValueError) as error:
        build("resnet18", (32, 32, 3), 10)
    assert str(error.value) == (
        "`name` must be one of ['lenet_300_100', 'conv_net', 'resnet_cifar', 'wide_resnet', 'vgg16_bn', "
        "'resnet50']. Received: name='resnet18'"
    )


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("resnet_cifar", {"width": 10}, r"Model 'resnet_cifar' takes no argument 'width'; .* takes \['depth'\]\. Received: width=10"),
        ("vgg16_bn", {"depth": 19}, r"Model 'vgg16_bn' takes no argument 'depth'; .* takes nothing\. Received: depth=19"),
    ],
)
def test_build_refuses_arguments_the_builder_does_not_take(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(name, (32, 32, 3), 10, **kwargs)


@pytest.mark.parametrize(
    "builder, kwargs, argument",
    [
        (conv_net, {"depth": 3}, "depth"),
        (conv_net, {"depth": 4.0}, "depth"),
        (conv_net, {"filters": 0}, "filters"),
        (conv_net, {"filters": 16.0}, "filters"),
        (resnet_cifar, {"depth": 21}, "depth"),
        (resnet_cifar, {"depth": 2}, "depth"),
        (resnet_cifar, {"depth": True}, "depth"),
        (wide_resnet, {"depth": 26}, "depth"),
        (wide_resnet, {"width": 0}, "width"),
        (wide_resnet, {"dropout": 1.0}, "dropout"),
        (wide_resnet, {"dropout": -0.1}, "dropout"),
        (lenet_300_100, {"classes": 2.5}, "classes"),
        (vgg16_bn, {"classes": 0}, "classes"),
        (resnet50, {"classes": 0}, "classes"),
    ],
)
def test_invalid_arguments_are_named(builder, kwargs, argument):
    (value,) = kwargs.values()
    with pytest.raises(ValueError, match=rf"^`{argument}` must .*\. Received: {argument}={value!r}$"):
        builder(**kwargs)


def test_resnet_depth_error_lists_valid_depths():
    with pytest.raises(ValueError, match=r"`depth` must be 6n\+2 for an integer n >= 1 \(8, 14, 20, 26, \.\.\.\)"):
        resnet_cifar(depth=22)


def test_option_a_shortcut_is_parameter_free_subsampling_with_zero_channels():
    model = resnet_cifar(depth=8, input_shape=(6, 6, 3))
    shortcut_layers = [l for l in model.layers if "shortcut" in l.name]
    assert [l.name for l in shortcut_layers] == [
        "stage2_block1_shortcut_subsample",
        "stage2_block1_shortcut_pad",
        "stage3_block1_shortcut_subsample",
        "stage3_block1_shortcut_pad",
    ]
    assert not any(l.weights for l in shortcut_layers)
    # Stage 3 receives an odd 3x3 map: rows and columns 0 and 2 are kept, as by x[:, ::2, ::2].
    probe = keras.Model(
        model.input, [model.get_layer("stage3_block1_shortcut_subsample").input, model.get_layer("stage3_block1_add").input[1]]
    )
    block_input, shortcut = (t.numpy() for t in probe(np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")))
    assert block_input.shape == (2, 3, 3, 32) and np.abs(block_input).sum() > 0
    np.testing.assert_array_equal(shortcut, np.concatenate([block_input[:, ::2, ::2], np.zeros((2, 2, 2, 32), "float32")], axis=-1))


@pytest.mark.parametrize("builder", [lambda: resnet_cifar(depth=20), lambda: conv_net(depth=2)], ids=["resnet20", "conv2"])
def test_keras_file_round_trip_and_clone_need_no_custom_objects(builder, tmp_path):
    model = builder()
    x = np.random.default_rng(0).normal(size=(2, *model.input_shape[1:])).astype("float32")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    clone = keras.models.clone_model(model)
    assert [l.get_config() for l in clone.layers] == [l.get_config() for l in model.layers]


@pytest.mark.parametrize(
    "name, kwargs, input_shape",
    [
        ("lenet_300_100", {}, (28, 28)),
        ("conv_net", {"depth": 2}, (28, 28, 1)),
        ("resnet_cifar", {"depth": 8}, (8, 8, 3)),
        ("wide_resnet", {"depth": 10, "width": 1}, (8, 8, 3)),
        ("vgg16_bn", {}, (32, 32, 3)),
    ],
)
def test_mixed_float16_computes_in_float16_and_returns_float32_logits(name, kwargs, input_shape):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = build(name, input_shape, 10, **kwargs)
    assert model.get_layer("logits").compute_dtype == "float16"
    assert model(np.zeros((1, *input_shape), "float32")).dtype == tf.float32
