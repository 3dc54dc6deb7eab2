"""`sparsity_report` for tf_keras models."""

import numpy as np

from imp_keras.core.report import LayerSparsity, SparsityReport
from imp_keras.tf_keras._keras import keras, require_tf_keras
from imp_keras.tf_keras.masking import MaskHolder, layers_of, masked_weights, plain_kernels

__all__ = ["LayerSparsity", "SparsityReport", "sparsity_report"]


def _plain_tensors(model: keras.Model) -> list[LayerSparsity]:
    found = []
    for name, variable in plain_kernels(model):
        value = np.asarray(variable.numpy())
        found.append(LayerSparsity(name, value.shape, value.size, value.size - int(np.count_nonzero(value))))
    return found


def sparsity_report(model: keras.Model) -> SparsityReport:
    """Sparsity of every prunable tensor of `model` and overall.

    For a model from `imp_keras.prunable`, pruned means masked out; for a plain (stripped) model,
    exact zeros in its Dense, Conv and depthwise kernels.

    Example:
    >>> print(imp_keras.sparsity_report(model))  # doctest: +SKIP
    tensor            shape   weights       alive  sparsity
    ...
    """
    require_tf_keras(model, "model", keras.Model)
    if any(isinstance(layer, MaskHolder) for layer in layers_of(model)):
        layers = []
        for entry in masked_weights(model):
            mask = entry.mask.numpy()
            layers.append(LayerSparsity(entry.name, tuple(mask.shape), mask.size, mask.size - int(np.count_nonzero(mask))))
        return SparsityReport(tuple(layers))
    return SparsityReport(tuple(_plain_tensors(model)))
