"""MaskHolder wrapping rules, and masks that hold: pruned weights and their optimizer state stay 0.0."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot

import imp_keras
from imp_keras import MaskHolder, keras
from imp_keras.tf_keras.masking import apply_masks, masked_weights, optimizer_slots, prunable, reset_optimizer, strip


def small_cnn(**dense_kwargs):
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(8, activation="relu", name="fc", **dense_kwargs),
            keras.layers.Dense(3, name="out"),
        ]
    )


def mlp(**kwargs):
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(16, activation="relu", name="fc", **kwargs), keras.layers.Dense(3, name="out")]
    )


def names(model):
    return [e.name for e in masked_weights(model)]


def test_sequential_prunes_dense_and_conv_kernels_only():
    model = prunable(small_cnn())
    assert names(model) == ["conv/kernel", "fc/kernel", "out/kernel"]
    assert [type(l).__name__ for l in model.layers] == ["MaskHolder", "BatchNormalization", "ReLU", "Flatten", "MaskHolder", "MaskHolder"]


def test_weights_are_shared_not_reinitialised():
    original = small_cnn()
    before = [w.numpy() for w in original.weights]
    model = prunable(original)
    np.testing.assert_array_equal(model.get_layer("mask_holder_fc").layer.kernel.numpy(), before[original.weights.index(original.get_layer("fc").kernel)])
    x = np.random.rand(2, 8, 8, 3).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), original.predict(x, verbose=0), rtol=1e-6)


def test_functional_with_nested_sequential():
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="inner_fc")], name="block")
    inputs = keras.Input((6,))
    hidden = inner(inputs)
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Concatenate()([hidden, inputs]))
    model = prunable(keras.Model(inputs, outputs))
    assert names(model) == ["inner_fc/kernel", "head/kernel"]


def test_exclude_by_name_and_type():
    assert names(prunable(small_cnn(), exclude=["conv"])) == ["fc/kernel", "out/kernel"]
    assert names(prunable(small_cnn(), exclude=[keras.layers.Dense])) == ["conv/kernel"]


def test_exclude_unknown_name_is_an_error():
    with pytest.raises(ValueError, match=r"`exclude` names layers that are not in the model: \['cnov'\]"):
        prunable(small_cnn(), exclude=["cnov"])


def test_depthwise_and_separable_by_default_and_listed_when_left_out(capsys):
    def build():
        return keras.Sequential(
            [
                keras.Input((8, 8, 3)),
                keras.layers.DepthwiseConv2D(3, name="dw"),
                keras.layers.SeparableConv2D(4, 3, name="sep"),
                keras.layers.Flatten(),
                keras.layers.Dense(2, name="out"),
            ]
        )

    assert names(prunable(build())) == ["dw/depthwise_kernel", "sep/depthwise_kernel", "sep/pointwise_kernel", "out/kernel"]
    assert capsys.readouterr().out == ""
    assert names(prunable(build(), depthwise=False)) == ["sep/pointwise_kernel", "out/kernel"]
    assert capsys.readouterr().out.splitlines() == [
        "imp_keras: DepthwiseConv2D: 1 tensor(s), 27 weights not masked (depthwise kernel: depthwise=False was passed)",
        "imp_keras: SeparableConv2D: 1 tensor(s), 27 weights not masked (depthwise kernel: depthwise=False was passed)",
    ]


def test_embeddings_when_asked_refused_when_they_hold_most_weights_unless_excluded(capsys):
    def build():
        return keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(10, 3, name="emb"), keras.layers.Flatten(), keras.layers.Dense(2, name="out")])

    # 30 embedding weights against 24 in the Dense kernel: most of the model would stay dense.
    with pytest.raises(ValueError, match=r"30 of its 54 trainable kernel weights \(55.56%\) would not be masked: Embedding: "
                       r"1 tensor\(s\), 30 weights not masked \(embedding table: pass embeddings=True to prune it\)"):
        prunable(build())
    assert names(prunable(build(), embeddings=True)) == ["emb/embeddings", "out/kernel"]
    assert names(prunable(build(), exclude=["emb"])) == ["out/kernel"]
    assert capsys.readouterr().out.splitlines() == ["imp_keras: Embedding: 1 tensor(s), 30 weights not masked (excluded by `exclude`)"]


class ScaledDense(keras.layers.Dense, tfmot.sparsity.keras.PrunableLayer):
    def get_prunable_weights(self):
        return [self.kernel, self.bias]


def test_custom_prunable_layer_names_its_weights():
    model = prunable(keras.Sequential([keras.Input((4,)), ScaledDense(3, name="custom")]))
    assert names(model) == ["custom/kernel", "custom/bias"]


def test_nothing_prunable_is_an_error():
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    with pytest.raises(ValueError, match="has no prunable weights"):
        prunable(model)


def test_subclassed_model_is_refused_with_a_route_that_works():
    class Net(keras.Model):
        def __init__(self, wrap):
            super().__init__()
            self.fc = wrap(keras.layers.Dense(3, name="fc"))
            self.lstm = wrap(keras.layers.LSTM(2, name="lstm"))

        def call(self, x):
            return self.lstm(self.fc(x))

    with pytest.raises(ValueError, match=r"subclassed tf_keras model; .* `self.fc = imp_keras.tf_keras.MaskHolder"):
        prunable(Net(lambda layer: layer))
    model = Net(imp_keras.tf_keras.MaskHolder)
    model(np.zeros((1, 4, 5), np.float32))
    entries = masked_weights(model)
    assert names(model) == ["fc/kernel", "lstm/cell/kernel", "lstm/cell/recurrent_kernel"]
    masks = [np.arange(e.mask.shape.num_elements()).reshape(e.mask.shape) % 2 == 0 for e in entries]
    apply_masks(entries, masks)
    model.compile(keras.optimizers.Adam(0.1), "mse")
    model.fit(np.random.rand(8, 4, 5), np.random.rand(8, 2), epochs=2, verbose=0)
    assert [int(np.count_nonzero(e.weight.numpy()[~m])) for e, m in zip(entries, masks)] == [0, 0, 0]


def test_tfmot_wrapped_model_is_an_error():
    wrapped = tfmot.sparsity.keras.prune_low_magnitude(mlp())
    with pytest.raises(ValueError, match="already wrapped by tfmot"):
        prunable(wrapped)


def test_keras3_model_refused_with_instructions():
    import keras as keras3

    model = keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)])
    with pytest.raises(TypeError, match=r"`model` is a Keras 3 object .*import tf_keras as keras"):
        prunable(model)


def test_not_a_model_is_an_error():
    with pytest.raises(TypeError, match=r"`model` must be a tf_keras `Model`. Received: model='lenet'"):
        prunable("lenet")


def test_forward_pass_is_masked_even_if_kernel_is_not():
    model = prunable(mlp())
    entry = masked_weights(model)[0]
    mask = np.zeros(entry.mask.shape, np.float32)
    mask[:, :4] = 1
    apply_masks(masked_weights(model), [mask, np.ones(masked_weights(model)[1].mask.shape)])
    x = np.random.rand(3, 6).astype("float32")
    expected = model(x).numpy()
    entry.weight.assign(entry.weight + 1.0)  # a user writes dense values into the kernel
    masked_kernel = entry.weight.numpy() * mask
    hidden = np.maximum(x @ masked_kernel + model.get_layer("mask_holder_fc").layer.bias.numpy(), 0)
    out = model.get_layer("mask_holder_out").layer
    np.testing.assert_allclose(model(x).numpy(), hidden @ out.kernel.numpy() + out.bias.numpy(), rtol=1e-5)
    assert not np.allclose(model(x).numpy(), expected)


def _half_masks(model):
    rng = np.random.default_rng(1)
    return [rng.random(e.mask.shape) < 0.5 for e in masked_weights(model)]


OPTIMIZERS = {
    "sgd_nesterov": (lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), {}),
    "sgd_l2": (lambda: keras.optimizers.SGD(0.1, momentum=0.9), {"kernel_regularizer": keras.regularizers.L2(1e-2)}),
    "sgd_weight_decay": (lambda: keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-2), {}),
    "sgd_global_clipnorm": (lambda: keras.optimizers.SGD(0.1, momentum=0.9, global_clipnorm=0.5), {}),
    "adam": (lambda: keras.optimizers.Adam(0.01), {}),
    "adamw": (lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1), {}),
    "adam_ema": (lambda: keras.optimizers.Adam(0.01, use_ema=True), {}),
    "legacy_sgd": (lambda: keras.optimizers.legacy.SGD(0.1, momentum=0.9), {}),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS) + ["mixed_float16"])
def test_pruned_weights_and_slots_stay_exactly_zero(name):
    if name == "mixed_float16":
        keras.mixed_precision.set_global_policy("mixed_float16")
        make_optimizer, layer_kwargs = OPTIMIZERS["sgd_nesterov"]
    else:
        make_optimizer, layer_kwargs = OPTIMIZERS[name]
    model = prunable(small_cnn(**layer_kwargs))
    model.compile(make_optimizer(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.rand(32, 8, 8, 3).astype("float32")
    y = np.random.randint(0, 3, 32)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)  # dense steps fill the optimizer state
    entries = masked_weights(model)
    masks = _half_masks(model)
    before = [e.weight.numpy() for e in entries]
    apply_masks(entries, masks, model.optimizer)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for entry, mask, old in zip(entries, masks, before):
        weight = entry.weight.numpy()
        assert np.count_nonzero(weight[~mask]) == 0, entry.name
        assert not np.allclose(weight[mask], old[mask]), f"{entry.name} did not train"
        slots = optimizer_slots(model.optimizer, entry.weight)
        assert slots, f"no optimizer state found for {entry.name}"
        for slot in slots:
            assert np.count_nonzero(slot.numpy()[~mask]) == 0, f"{entry.name}: {slot.name}"
    # tfmot's own pruning never ran: the masks are exactly what we set.
    for entry, mask in zip(entries, masks):
        np.testing.assert_array_equal(entry.mask.numpy() != 0, mask)


def test_reset_optimizer_zeroes_state_but_keeps_step_count():
    model = prunable(mlp())
    model.compile(keras.optimizers.Adam(0.01), loss="mse")
    model.fit(np.random.rand(16, 6), np.random.rand(16, 3), batch_size=4, epochs=1, verbose=0)
    reset_optimizer(model.optimizer, model.trainable_weights)
    assert int(model.optimizer.iterations.numpy()) == 4
    for variable in model.trainable_weights:
        slots = optimizer_slots(model.optimizer, variable)
        assert len(slots) == 2 and all(np.count_nonzero(s.numpy()) == 0 for s in slots)


@pytest.mark.parametrize("make_optimizer", [keras.optimizers.Adagrad, keras.optimizers.legacy.Adagrad], ids=["adagrad", "legacy_adagrad"])
def test_reset_optimizer_restarts_adagrad_accumulators_at_their_initial_value(make_optimizer):
    model = prunable(mlp())
    model.compile(make_optimizer(0.01, initial_accumulator_value=0.25), loss="mse")
    model.fit(np.random.rand(16, 6), np.random.rand(16, 3), batch_size=4, epochs=1, verbose=0)
    reset_optimizer(model.optimizer, model.trainable_weights)
    for variable in model.trainable_weights:
        (slot,) = optimizer_slots(model.optimizer, variable)
        np.testing.assert_array_equal(slot.numpy(), np.full(variable.shape, 0.25, np.float32))


def test_wrapped_model_saves_and_loads_without_custom_objects(tmp_path):
    model = prunable(small_cnn())
    masks = _half_masks(model)
    apply_masks(masked_weights(model), masks)
    x = np.random.rand(4, 8, 8, 3).astype("float32")
    path = os.fspath(tmp_path / "wrapped.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[0], MaskHolder)
    for entry, mask in zip(masked_weights(loaded), masks):
        np.testing.assert_array_equal(entry.mask.numpy() != 0, mask)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_strip_gives_plain_sparse_model(tmp_path):
    model = prunable(small_cnn())
    masks = _half_masks(model)
    apply_masks(masked_weights(model), masks)
    masked_weights(model)[1].weight.assign_add(tf.ones_like(masked_weights(model)[1].weight))  # dense values
    x = np.random.rand(4, 8, 8, 3).astype("float32")
    expected = model.predict(x, verbose=0)
    plain = strip(model)
    assert not any(isinstance(l, MaskHolder) for l in plain.layers)
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, rtol=1e-5)
    report = imp_keras.sparsity_report(plain)
    assert report.pruned == sum(int((~m).sum()) for m in masks)
    path = os.fspath(tmp_path / "plain.keras")
    plain.save(path)
    reloaded = keras.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=1e-5)


def test_shared_layer_gets_one_mask():
    shared = keras.layers.Dense(4, name="shared")
    inner = keras.Sequential([keras.Input((4,)), shared, keras.layers.Dense(4, name="a")], name="inner")
    inputs = keras.Input((4,))
    model = prunable(keras.Model(inputs, keras.layers.Add()([inner(inputs), shared(inputs)])))
    assert names(model) == ["shared/kernel", "a/kernel"]
    assert imp_keras.sparsity_report(model).total == 32


def test_nested_model_used_twice_gets_one_mask_per_kernel():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="shared")], name="inner")
    first = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(4, name="a")], name="first")
    second = keras.Sequential([keras.Input((4,)), inner, keras.layers.Dense(4, name="b")], name="second")
    inputs = keras.Input((4,))
    model = prunable(keras.Model(inputs, keras.layers.Add()([first(inputs), second(inputs)])))
    assert names(model) == ["shared/kernel", "a/kernel", "b/kernel"]


def test_layer_pruned_in_one_place_and_plain_in_another_is_refused():
    shared = keras.layers.Dense(4, name="shared")
    inner = keras.Sequential([keras.Input((4,)), shared], name="inner")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Add()([inner(inputs), shared(inputs)]))
    with pytest.raises(ValueError, match=r"Layers \['shared'\] are pruned in one place of the model but used unwrapped"):
        prunable(model, exclude=["inner"])


def test_per_layer_mixed_precision_policy():
    model = prunable(keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, name="fc", dtype="mixed_float16"), keras.layers.Dense(2, name="out")]))
    holder = model.get_layer("mask_holder_fc")
    assert holder.dtype_policy.name == "mixed_float16"
    assert model(np.ones((2, 6), np.float32)).dtype == tf.float32  # the float32 head casts back


def test_activity_regularizer_of_wrapped_layer_still_applies():
    model = prunable(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc", kernel_initializer="ones", activity_regularizer=keras.regularizers.L1(0.5))]))
    model(np.ones((1, 3), np.float32))
    # output [3, 3] (bias 0), L1 0.5 * 6 = 3, divided by the batch size 1.
    assert [float(loss) for loss in model.losses] == [3.0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(exclude="fc"), r"`exclude` must be a list of layer names or classes. Received: exclude='fc'"),
        (dict(exclude=[3]), r"`exclude` must hold layer names or layer classes"),
        (dict(depthwise="yes"), r"`depthwise` must be a bool. Received: depthwise='yes'"),
        (dict(embeddings=1), r"`embeddings` must be a bool. Received: embeddings=1"),
    ],
)
def test_prunable_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        prunable(mlp(), **kwargs)


def test_legacy_optimizer_with_frozen_prunable_layer():
    model = prunable(mlp())
    model.get_layer("mask_holder_fc").trainable = False
    model.compile(keras.optimizers.legacy.SGD(0.1, momentum=0.9), loss="mse")
    model.fit(np.random.rand(8, 6), np.random.rand(8, 3), batch_size=4, verbose=0)
    frozen = masked_weights(model)[0]
    assert optimizer_slots(model.optimizer, frozen.weight) == []
    apply_masks(masked_weights(model), _half_masks(model), model.optimizer)


def test_strip_refuses_keras3_model():
    import keras as keras3

    with pytest.raises(TypeError, match="`model` is a Keras 3 object"):
        strip(keras3.Sequential([keras3.Input((4,)), keras3.layers.Dense(2)]))


@pytest.mark.parametrize(
    "layer, shape",
    [
        (lambda: keras.layers.Conv1D(3, 3, name="c"), (8, 2)),
        (lambda: keras.layers.Conv3D(3, 2, name="c"), (4, 4, 4, 2)),
        (lambda: keras.layers.Conv2DTranspose(3, 3, name="c"), (5, 5, 2)),
    ],
)
def test_other_convolutions_are_pruned_and_held(layer, shape):
    model = prunable(keras.Sequential([keras.Input(shape), layer(), keras.layers.Flatten(), keras.layers.Dense(2, name="out")]))
    assert names(model) == ["c/kernel", "out/kernel"]
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
    entries = masked_weights(model)
    masks = _half_masks(model)
    apply_masks(entries, masks, model.optimizer)
    model.fit(np.random.rand(8, *shape), np.random.rand(8, 2), batch_size=4, epochs=2, verbose=0)
    assert np.count_nonzero(entries[0].weight.numpy()[~masks[0]]) == 0


class HiddenWeight(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    def build(self, input_shape):
        self.store = [self.add_weight("w", shape=(input_shape[-1], 2))]

    def call(self, x):
        return x @ self.store[0]

    def get_prunable_weights(self):
        return self.store


def test_prunable_weight_that_is_not_a_layer_attribute_is_refused():
    with pytest.raises(ValueError, match="is not an attribute of the layer"):
        prunable(keras.Sequential([keras.Input((3,)), HiddenWeight(name="hidden")]))


class ListKernel(keras.layers.Layer):
    """A custom layer that keeps its kernel in a list: no mask can be handed to it."""

    def build(self, input_shape):
        self.store = [self.add_weight("w", shape=(input_shape[-1], 40))]

    def call(self, x):
        return x @ self.store[0]


def test_kernel_not_held_as_an_attribute_is_listed_and_refused_when_it_holds_most_weights(capsys):
    def build(units):
        return keras.Sequential([keras.Input((3,)), ListKernel(name="hidden"), keras.layers.Dense(units, name="out")])

    reason = "not held as a layer attribute (in a list or dict?), so no mask can be handed to the layer"
    model = prunable(build(4))  # 120 unmasked against 160 masked
    assert names(model) == ["out/kernel"]
    assert capsys.readouterr().out.splitlines()[0].startswith(f"imp_keras: ListKernel: 1 tensor(s), 120 weights not masked ({reason}")
    assert [(s.layer_type, s.tensors, s.weights) for s in imp_keras.tf_keras.coverage(model)] == [("ListKernel", ("hidden/w",), 120)]
    with pytest.raises(ValueError, match=re.escape("120 of its 200 trainable kernel weights (60.00%) would not be masked: ListKernel")):
        prunable(build(2))
    assert names(prunable(build(2), exclude=["hidden"])) == ["out/kernel"]
