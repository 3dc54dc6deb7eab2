"""`sparsity_report` for tf_keras models."""

from collections.abc import Iterable

from imp_keras.core.report import LayerSparsity, SparsityReport, report_of
from imp_keras.tf_keras._keras import keras, require_tf_keras
from imp_keras.tf_keras.masking import STRIPPED_MASKED, masked_weights, plain_kernels, trainable_kernels

__all__ = ["LayerSparsity", "SparsityReport", "sparsity_report"]


def sparsity_report(model: keras.Model, masked: Iterable[str] | None = None) -> SparsityReport:
    """Sparsity of the masked tensors of `model`, of its other trainable kernels, and of both.

    For a model from `imp_keras.prunable`, a masked tensor's pruned weights are its masked-out
    ones; every other trainable kernel (embedding tables included) is listed as unmasked with its
    exact zeros. A plain model has no masks: its tensors named in `masked` count their exact zeros
    as pruned, the rest are unmasked. By default they are the tensors `strip` took the masks from
    (for the model `strip` returned), else those `prunable` masks by default (for a model loaded
    from a file); so a model, its stripped copy and a file saved from it report the same numbers.

    Example:
    >>> print(imp_keras.sparsity_report(model))  # doctest: +SKIP
    tensor            shape   weights       alive  sparsity
    ...
    """
    require_tf_keras(model, "model", keras.Model)
    stripped = getattr(model, STRIPPED_MASKED, None)
    return report_of(
        [(name, variable.numpy()) for name, variable in trainable_kernels(model)],
        [(e.name, e.mask.numpy()) for e in masked_weights(model) if e.trainable],
        masked,
        stripped if stripped is not None else [name for name, _ in plain_kernels(model)],
    )
