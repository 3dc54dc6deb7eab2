"""`sparsity_report` for Keras 3 models."""

import keras
import numpy as np
from keras import ops

from imp_keras.core.report import LayerSparsity, SparsityReport
from imp_keras.keras3 import masking

__all__ = ["sparsity_report"]


def sparsity_report(model: keras.Model) -> SparsityReport:
    """Sparsity of every prunable tensor of a Keras 3 `model` and overall: masked-out entries for a
    model with `MaskHolder`s, exact zeros in its kernels for a plain (stripped) one."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras 3 model. Received: model={model!r}")
    entries = masking.masked_weights(model)
    if entries:
        tensors = [(e.name, ops.convert_to_numpy(e.mask)) for e in entries]
    else:
        tensors = [(name, ops.convert_to_numpy(v)) for name, v in masking.plain_kernels(model)]
    return SparsityReport(
        tuple(LayerSparsity(name, tuple(a.shape), a.size, a.size - int(np.count_nonzero(a))) for name, a in tensors)
    )
