"""Gradual magnitude pruning during a tf_keras `model.fit`: the thin callback over
`imp_keras.core.gradual`, on models built by `imp_keras.prunable` (tfmot wrappers)."""

from imp_keras.core.gradual import GMPCallbackBase
from imp_keras.tf_keras._keras import keras
from imp_keras.tf_keras.callback import Hooks

__all__ = ["GMPCallback"]


class GMPCallback(GMPCallbackBase, Hooks, keras.callbacks.Callback):
    """Prunes a tf_keras model gradually to `goal_sparsity` inside `fit`, with imp_keras' global,
    monotone masks: the cubic schedule of Zhu & Gupta (2017). See `imp_keras.core.gradual.GMPCallbackBase`
    for what it does and its arguments.

    Example:
    ```python
    model = imp_keras.prunable(build_model())
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), loss=..., metrics=["accuracy"])
    gmp = imp_keras.GMPCallback(0.95, begin=0.1, end=0.5, frequency=100)
    model.fit(train, epochs=15, callbacks=[gmp])
    ```
    """
