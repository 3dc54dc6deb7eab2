"""Gradual magnitude pruning during a Keras 3 `model.fit` (TensorFlow, JAX or PyTorch backend): the
thin callback over `imp_keras.core.gradual`, on models with `MaskHolder`s."""

import keras

from imp_keras.core.gradual import GMPCallbackBase
from imp_keras.keras3.callback import Hooks

__all__ = ["GMPCallback"]


class GMPCallback(GMPCallbackBase, Hooks, keras.callbacks.Callback):
    """Prunes a Keras 3 model gradually to `goal_sparsity` inside `fit`, on any backend, with
    imp_keras' global, monotone masks: the cubic schedule of Zhu & Gupta (2017). See
    `imp_keras.core.gradual.GMPCallbackBase` for what it does and its arguments.

    On JAX, `fit` keeps the variables' values in its own state inside an epoch; a mask update
    writes that state back first (`jax_state_sync`), so updates cost a little more there.

    Example:
    ```python
    model = imp_keras.prunable(build_model())
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss=..., metrics=["accuracy"])
    model.fit(train, epochs=15, callbacks=[imp_keras.GMPCallback(0.95, begin=0.1, end=0.5)])
    ```
    """
