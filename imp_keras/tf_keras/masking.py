"""How masks are held: tfmot's pruning wrapper as a mask holder, and masks applied to weights and
optimizer state.

`MaskHolder` is a `tfmot.sparsity.keras.PruneLowMagnitude` (so tfmot's `strip_pruning`, its
`PrunableLayer` protocol and its mask variables all keep working) whose own pruning schedule never
runs. Its `call` hands the wrapped layer `kernel * mask` instead of the kernel: the forward pass is
masked and, because the product's gradient is masked too, a pruned weight receives a zero gradient.
With its optimizer slots zeroed at pruning, it then stays exactly 0.0 under momentum, Adam, weight
decay and L2 regularisation, and clipping by norm sees the same gradients as a truly sparse model.
"""

from collections.abc import Iterable, Sequence
import dataclasses
import inspect
import math

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule as tfmot_schedule
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper
import tensorflow_model_optimization as tfmot

from imp_keras.tf_keras._keras import keras, require_tf_keras

__all__ = [
    "MaskHolder",
    "MaskedWeight",
    "apply_masks",
    "block_sizes",
    "build_optimizer",
    "last_learning_rate",
    "layers_of",
    "learning_rate_setting",
    "masked_weights",
    "optimizer_slots",
    "plain_kernels",
    "prunable",
    "reset_optimizer",
    "strip",
]

_DEPTHWISE = (keras.layers.DepthwiseConv2D, keras.layers.DepthwiseConv1D)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


class _NeverPrune(tfmot_schedule.PruningSchedule):
    """tfmot schedule that never fires: imp_keras chooses every mask itself."""

    def __call__(self, step):
        return tf.constant(False), tf.constant(0.0)

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="imp_keras")
class MaskHolder(pruning_wrapper.PruneLowMagnitude):
    """tfmot pruning wrapper whose masks imp_keras sets; tfmot's schedule never fires.

    Args:
      layer: the tf_keras layer to wrap.
      weight_names: attribute names of the layer's prunable weights (e.g. `["kernel"]`); None for a
        layer implementing tfmot's `PrunableLayer`, which names its weights itself.
      **kwargs: passed to `keras.layers.Wrapper`.
    """

    def __init__(self, layer, weight_names: Sequence[str] | None = None, **kwargs):
        kwargs.pop("name", None)  # tfmot derives the name from the wrapped layer's.
        # The wrapper computes the masked kernel, so it must compute in the layer's own dtype policy
        # (a per-layer mixed_float16 under a float32 global policy, or the reverse).
        kwargs.setdefault("dtype", layer.dtype_policy)
        self.weight_names = None if weight_names is None else list(weight_names)
        if self.weight_names is not None:
            names = tuple(self.weight_names)
            layer.get_prunable_weights = lambda: [getattr(layer, n) for n in names]
        super().__init__(layer, pruning_schedule=_NeverPrune(), **kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        self._masked_attributes = []
        for weight, _, _ in self.pruning_vars:
            names = [name for name, value in vars(self.layer).items() if value is weight]
            if not names:
                raise ValueError(
                    f"Layer {self.layer.name!r}: prunable weight {weight.name!r} is not an attribute of the "
                    "layer, so imp_keras cannot hand the layer its masked value during training."
                )
            self._masked_attributes.append(names)

    def call(self, inputs, training=None, **kwargs):
        if "training" in inspect.signature(self.layer.call).parameters:
            kwargs["training"] = training
        originals = []
        try:
            # Swap in kernel * mask for the duration of the inner call. object.__setattr__ bypasses
            # Keras attribute tracking, which would otherwise drop the variable from the layer.
            for (weight, mask, _), names in zip(self.pruning_vars, self._masked_attributes):
                value = tf.convert_to_tensor(weight)  # the compute dtype under mixed precision
                masked = value * tf.cast(mask, value.dtype)
                for name in names:
                    originals.append((name, weight))
                    object.__setattr__(self.layer, name, masked)
            # Through __call__ (tfmot calls .call): the layer's activity regularizer, input checks and
            # input casting still apply.
            return self.layer(inputs, **kwargs)
        finally:
            for name, weight in originals:
                object.__setattr__(self.layer, name, weight)

    def get_config(self):
        config = keras.layers.Wrapper.get_config(self)
        config["weight_names"] = self.weight_names
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = keras.layers.deserialize(config.pop("layer"))
        return cls(layer, **config)


def _prunable_weight_names(layer: keras.layers.Layer, depthwise: bool, embeddings: bool) -> list[str] | None:
    """Attribute names of the weights imp_keras prunes by default; None means the layer's own
    `get_prunable_weights` decides (tfmot's `PrunableLayer`); [] means not prunable."""
    if isinstance(layer, tfmot.sparsity.keras.PrunableLayer):
        return None
    if isinstance(layer, _SEPARABLE):
        return ["depthwise_kernel", "pointwise_kernel"] if depthwise else []
    if isinstance(layer, _DEPTHWISE):
        return ["depthwise_kernel"] if depthwise else []
    if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)):
        return ["kernel"]
    if isinstance(layer, keras.layers.Embedding):
        return ["embeddings"] if embeddings else []
    return []


def _is_graph_model(model: keras.Model) -> bool:
    return isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)


def layers_of(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of `model` and of its nested models, once each, in model order (nested models
    are listed before their layers; a MaskHolder's wrapped layer is not listed)."""
    found, seen = [], set()

    def visit(parent: keras.Model) -> None:
        for layer in parent.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            found.append(layer)
            if isinstance(layer, keras.Model):
                visit(layer)

    visit(model)
    return found


def plain_kernels(model: keras.Model) -> list[tuple[str, tf.Variable]]:
    """The kernels imp_keras would prune in a plain (unwrapped or stripped) model, depthwise ones
    included, as (`"layer/attribute"`, variable) in model order: the names `masked_weights` gives."""
    found = []
    for layer in layers_of(model):
        if isinstance(layer, keras.Model):
            continue
        for attribute in _prunable_weight_names(layer, depthwise=True, embeddings=False) or []:
            found.append((f"{layer.name}/{attribute}", getattr(layer, attribute)))
    return found


def _all_layer_names(model: keras.Model) -> set[str]:
    layers = layers_of(model)
    return {l.name for l in layers} | {l.layer.name for l in layers if isinstance(l, MaskHolder)}


def prunable(
    model: keras.Model,
    *,
    exclude: Iterable[str | type] = (),
    depthwise: bool = False,
    embeddings: bool = False,
) -> keras.Model:
    """Returns `model` with its prunable layers wrapped in `MaskHolder`s, ready to compile.

    Kernels of Dense and Conv1D/2D/3D (and their transposes) are prunable; biases and normalisation
    parameters never are. Layers implementing tfmot's `PrunableLayer` prune the weights they name.
    Nested Sequential and Functional models are handled. The returned model shares its layers, and
    so its trained weights, with `model`: nothing is re-initialised.

    Args:
      model: a tf_keras Sequential or Functional model.
      exclude: layer names or layer classes to keep dense (e.g. the first convolution).
      depthwise: also prune DepthwiseConv kernels and both kernels of SeparableConv layers.
      embeddings: also prune Embedding matrices.

    Raises:
      TypeError: `model` is not a tf_keras model (a Keras 3 model, for example).
      ValueError: `model` is subclassed, already wrapped by tfmot, names an unknown layer in
        `exclude`, or has nothing to prune.

    Example:
    ```python
    model = imp_keras.prunable(keras.Sequential([...]), exclude=["conv2d"])
    ```
    """
    require_tf_keras(model, "model", keras.Model)
    if not _is_graph_model(model):
        raise ValueError(
            f"`model` must be a Sequential or Functional tf_keras model; subclassed models cannot be "
            f"cloned with wrappers. Received: model of type {type(model).__name__}"
        )
    for flag, value in (("depthwise", depthwise), ("embeddings", embeddings)):
        if not isinstance(value, bool):
            raise ValueError(f"`{flag}` must be a bool. Received: {flag}={value!r}")
    if isinstance(exclude, (str, type)) or not isinstance(exclude, Iterable):
        raise ValueError(f"`exclude` must be a list of layer names or classes. Received: exclude={exclude!r}")
    exclude = list(exclude)
    excluded_names = {e for e in exclude if isinstance(e, str)}
    excluded_types = tuple(e for e in exclude if isinstance(e, type))
    if len(excluded_names) + len(excluded_types) != len(exclude):
        raise ValueError(f"`exclude` must hold layer names or layer classes. Received: exclude={exclude!r}")
    unknown = excluded_names - _all_layer_names(model)
    if unknown:
        raise ValueError(f"`exclude` names layers that are not in the model: {sorted(unknown)}")
    # A layer reached from several places (shared, or inside a nested model used twice) gets one
    # wrapper, so its kernel has one mask.
    replacements: dict[int, keras.layers.Layer] = {}

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if id(layer) not in replacements:
            replacements[id(layer)] = _wrap_once(layer)
        return replacements[id(layer)]

    def _wrap_once(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, MaskHolder):
            return layer
        if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
            raise ValueError(
                f"Layer {layer.name!r} is already wrapped by tfmot's prune_low_magnitude, whose schedule would "
                "choose masks; pass imp_keras the model before tfmot wrapping (or `strip_pruning` it first)."
            )
        if layer.name in excluded_names or (excluded_types and isinstance(layer, excluded_types)):
            return layer
        if isinstance(layer, keras.Model):
            if not _is_graph_model(layer):
                raise ValueError(f"Nested model {layer.name!r} is subclassed; only Sequential and Functional models can be wrapped.")
            return keras.models.clone_model(layer, clone_function=wrap)
        names = _prunable_weight_names(layer, depthwise, embeddings)
        return layer if names == [] else MaskHolder(layer, weight_names=names)

    result = keras.models.clone_model(model, clone_function=wrap)
    holders = _holders(result)
    if not holders:
        raise ValueError(
            f"`model` {model.name!r} has no prunable weights: no Dense or Conv kernels (or PrunableLayer) "
            "outside `exclude`."
        )
    wrapped_inner = {id(h.layer): h.layer.name for h in holders}
    unwrapped_uses = sorted({wrapped_inner[id(l)] for l in layers_of(result) if id(l) in wrapped_inner})
    if unwrapped_uses:
        raise ValueError(
            f"Layers {unwrapped_uses} are pruned in one place of the model but used unwrapped in another "
            "(an excluded nested model?); their pruned weights would train again. Exclude them everywhere "
            "or nowhere."
        )
    return result


@dataclasses.dataclass(frozen=True)
class MaskedWeight:
    """One prunable tensor: its readable name, the weight variable, the mask variable and the
    wrapped layer that owns them."""

    name: str
    weight: tf.Variable
    mask: tf.Variable
    layer: keras.layers.Layer


def _holders(model: keras.Model) -> list[MaskHolder]:
    return [layer for layer in layers_of(model) if isinstance(layer, MaskHolder)]


def masked_weights(model: keras.Model) -> list[MaskedWeight]:
    """The prunable tensors of a model built by `prunable`, in model order."""
    entries, seen = [], set()
    for holder in _holders(model):
        if not holder.built:
            raise ValueError(f"Layer {holder.name!r} is not built; build the model (give it an input shape) first.")
        for (weight, mask, _), names in zip(holder.pruning_vars, holder._masked_attributes):
            if weight.ref() in seen:
                raise ValueError(f"Weight {weight.name!r} is held by two mask holders; wrap each layer once.")
            seen.add(weight.ref())
            entries.append(MaskedWeight(f"{holder.layer.name}/{names[0]}", weight, mask, holder.layer))
    return entries


def block_sizes(entries: Sequence[MaskedWeight], block_size: tuple[int, int] | None) -> list[tuple[int, int] | None]:
    """The blocks each tensor loses weights in with `IMPCallback(block_size=...)`: Dense kernels in
    `block_size` blocks, every other tensor weight by weight (None)."""
    return [block_size if block_size and isinstance(e.layer, keras.layers.Dense) else None for e in entries]


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer


def _is_legacy(optimizer) -> bool:
    return isinstance(optimizer, keras.optimizers.legacy.Optimizer)


def learning_rate_setting(optimizer):
    """What the optimizer was given as its learning rate: a schedule, a variable or a float."""
    inner = _inner(optimizer)
    return inner._hyper.get("learning_rate") if _is_legacy(inner) else getattr(inner, "_learning_rate", None)


def last_learning_rate(optimizer) -> float:
    """The learning rate of the optimizer's last step (of its first step before it has taken any)."""
    rate = learning_rate_setting(optimizer)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(max(int(optimizer.iterations.numpy()) - 1, 0))
    return float(keras.backend.get_value(rate))


def build_optimizer(optimizer, variables: Sequence[tf.Variable]) -> None:
    """Creates the optimizer's slots now, so that a checkpoint restores them before any pruning
    (a lazily created slot would be restored later, over the masking)."""
    optimizer = _inner(optimizer)
    if _is_legacy(optimizer):
        optimizer._create_all_weights(variables)
    else:
        optimizer.build(variables)


def optimizer_slots(optimizer, variable: tf.Variable) -> list[tf.Variable]:
    """The optimizer's state variables for `variable` (momentum, Adam's m and v, EMA, ...)."""
    optimizer = _inner(optimizer)
    if _is_legacy(optimizer):
        try:
            return [optimizer.get_slot(variable, name) for name in optimizer.get_slot_names()]
        except KeyError:  # a variable the optimizer does not train (a frozen layer)
            return []
    index = getattr(optimizer, "_index_dict", {}).get(optimizer._var_key(variable))
    if index is None:
        return []
    count = len(optimizer._index_dict)
    slots = []
    # Slots live in per-kind lists indexed like the optimizer's variable list (SGD.momentums,
    # Adam._momentums/_velocities, _model_variables_moving_average, ...).
    for value in vars(optimizer).values():
        if isinstance(value, (list, tuple)) and len(value) == count and all(isinstance(v, tf.Variable) for v in value):
            slot = value[index]
            if slot.shape == variable.shape:
                slots.append(slot)
    return slots


def reset_optimizer(optimizer, variables: Sequence[tf.Variable]) -> None:
    """Zeroes the optimizer's state for `variables` (moving averages restart from the weights);
    its step counter stays, so learning-rate schedules continue."""
    inner = _inner(optimizer)
    averages = {id(v) for v in getattr(inner, "_model_variables_moving_average", [])}
    for variable in variables:
        for slot in optimizer_slots(optimizer, variable):
            slot.assign(variable if id(slot) in averages else tf.zeros_like(slot))


def apply_masks(entries: Sequence[MaskedWeight], masks: Sequence[np.ndarray] | None = None, optimizer=None) -> None:
    """Sets the masks (when given) and zeroes every masked weight and its optimizer slots."""
    if masks is not None and len(masks) != len(entries):
        raise ValueError(f"Got {len(masks)} masks for {len(entries)} prunable tensors.")
    for i, entry in enumerate(entries):
        mask_dtype = entry.mask.dtype
        if masks is not None:
            entry.mask.assign(np.asarray(masks[i], dtype=mask_dtype.as_numpy_dtype))
        mask = tf.convert_to_tensor(entry.mask)
        entry.weight.assign(entry.weight * tf.cast(mask, entry.weight.dtype))
        if optimizer is not None:
            for slot in optimizer_slots(optimizer, entry.weight):
                slot.assign(slot * tf.cast(mask, slot.dtype))


def strip(model: keras.Model) -> keras.Model:
    """The plain tf_keras model, masks applied and wrappers removed (tfmot's `strip_pruning`, made
    safe against tfmot issue #206: kernels are masked before stripping)."""
    require_tf_keras(model, "model", keras.Model)
    apply_masks(masked_weights(model))
    return tfmot.sparsity.keras.strip_pruning(model)
