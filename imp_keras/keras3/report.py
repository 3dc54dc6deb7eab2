"""`sparsity_report` for Keras 3 models."""

from collections.abc import Iterable

import keras
from keras import ops

from imp_keras.core.report import SparsityReport, report_of
from imp_keras.keras3 import masking

__all__ = ["sparsity_report"]


def sparsity_report(model: keras.Model, masked: Iterable[str] | None = None) -> SparsityReport:
    """Sparsity of the masked tensors of a Keras 3 `model`, of its other trainable kernels
    (embedding tables included; exact zeros count as pruned), and of both. A plain (stripped)
    model counts exact zeros in the tensors named in `masked`, by default those its `strip` masked
    (else those `prunable` masks by default), so it reports what the model it was stripped from reported."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras 3 model. Received: model={model!r}")
    if masked is None:
        masked = getattr(model, masking.STRIPPED_MASKED, None)
    return report_of(
        [(name, ops.convert_to_numpy(v)) for name, v in masking.plain_kernels(model, embeddings=True)],
        [(e.name, ops.convert_to_numpy(e.mask)) for e in masking.masked_weights(model) if e.trainable],
        masked,
        [name for name, _ in masking.plain_kernels(model, embeddings=False)],
    )
