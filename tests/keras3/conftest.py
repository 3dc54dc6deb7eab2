"""The conformance suite: the same tests for every flavour the process can run. In the main test
process (Keras 3 on TensorFlow beside tf_keras) both flavours; in the JAX and PyTorch processes
that tests/test_backends.py starts, Keras 3 alone."""

import os

import keras
import numpy as np
import pytest

FLAVOURS = ("keras3",) if os.environ.get("IMP_KERAS_FLAVOURS") == "keras3" else ("tf_keras", "keras3")
BACKEND = keras.backend.backend()


@pytest.fixture(autouse=True)
def fresh_keras3_session():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def mixed_policy() -> str:
    """Keras 3's mixed policy for this backend: float16 on TensorFlow (as on GPUs), bfloat16 on JAX and PyTorch."""
    return "mixed_float16" if BACKEND == "tensorflow" else "mixed_bfloat16"


@pytest.fixture(params=FLAVOURS)
def api(request):
    """The flavour's module: `imp_keras.tf_keras` or `imp_keras.keras3` (its `keras` is the Keras it works with)."""
    import importlib

    return importlib.import_module(f"imp_keras.{request.param}")


def as_numpy(value) -> np.ndarray:
    if type(value).__module__.startswith("tensorflow"):  # tf_keras' variables and tensors
        return np.asarray(value.numpy())
    return np.asarray(keras.ops.convert_to_numpy(value))


@pytest.fixture
def numpy():
    """A variable or tensor of either flavour as a NumPy array."""
    return as_numpy


@pytest.fixture
def make_mlp():
    """A 12-8-3 MLP (96 + 24 = 120 kernel weights) built with flavour module `k.keras`."""

    def make(k, seed: int = 0):
        k.keras.utils.set_random_seed(seed)
        return k.keras.Sequential([
            k.keras.Input((12,)),
            k.keras.layers.Dense(8, activation="relu", name="fc1"),
            k.keras.layers.Dense(3, name="logits"),
        ])

    return make


@pytest.fixture
def frozen_fc1(make_mlp):
    """The MLP through `prunable`, its fc1 [12, 8] given a mask with every 4th weight pruned (72
    alive), then frozen through the original model's layer, as `base.trainable = False` after
    wrapping. Returns the model, fc1's kernel, bias and mask, and their values as NumPy arrays."""

    def make(k):
        plain = make_mlp(k)
        model = k.prunable(plain)
        fc1 = k.masked_weights(model)[0]
        k.apply_masks([fc1], [np.arange(96).reshape(12, 8) % 4 != 0])
        plain.get_layer("fc1").trainable = False
        variables = (fc1.weight, plain.get_layer("fc1").bias, fc1.mask)
        return model, variables, [as_numpy(v).copy() for v in variables]

    return make


@pytest.fixture
def train_data():
    """64 seeded examples of 12 features; the label is the argmax of the first three."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 12)).astype("float32")
    return x, x[:, :3].argmax(axis=1).astype("int32")
