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
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule as tfmot_schedule
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper
import tensorflow_model_optimization as tfmot

from imp_keras.core.checks import check_masks
from imp_keras.core.coverage import (
    DEPTHWISE, EMBEDDING, EXCLUDED, FROZEN, NOT_AN_ATTRIBUTE, Skipped, check_coverage, check_names, group_skipped,
    kernel_role,
)
from imp_keras.tf_keras._keras import keras, require_tf_keras

__all__ = [
    "MaskHolder",
    "STRIPPED_MASKED",
    "MaskedWeight",
    "Skipped",
    "apply_masks",
    "block_sizes",
    "build_optimizer",
    "coverage",
    "is_graph_model",
    "last_learning_rate",
    "layers_of",
    "learning_rate_setting",
    "masked_weights",
    "optimizer_slots",
    "plain_kernels",
    "prunable",
    "reset_optimizer",
    "strip",
    "trainable_kernels",
]

STRIPPED_MASKED = "_imp_keras_masked"  # attribute of a stripped model: the names of its masked tensors


class _NeverPrune(tfmot_schedule.PruningSchedule):
    """tfmot schedule that never fires: imp_keras chooses every mask itself."""

    def __call__(self, step):
        return tf.constant(False), tf.constant(0.0)

    def get_config(self):
        return {}


def _has_own_prunable_weights(layer: keras.layers.Layer) -> bool:
    """A layer that names its prunable weights itself: tfmot's `PrunableLayer`, or a class with a
    `get_prunable_weights` method (tfmot's protocol for custom layers)."""
    return isinstance(layer, tfmot.sparsity.keras.PrunableLayer) or callable(getattr(type(layer), "get_prunable_weights", None))


def _attribute_weights(layer: keras.layers.Layer) -> list[tuple[str, tf.Variable, keras.layers.Layer]]:
    """Every variable held as an attribute of `layer` or of a layer reached through its attributes
    (an RNN's `cell`, a MultiHeadAttention's projections, a Bidirectional's `forward_layer`), as
    (dotted attribute path, variable, owning layer), once each, in attribute order."""
    found, seen = [], set()

    def visit(owner: keras.layers.Layer, prefix: str) -> None:
        seen.add(id(owner))
        for attribute, value in list(vars(owner).items()):
            if attribute.startswith("_self") or id(value) in seen:
                continue
            if isinstance(value, tf.Variable):
                seen.add(id(value))
                found.append((prefix + attribute, value, owner))
            elif isinstance(value, keras.layers.Layer):
                visit(value, f"{prefix}{attribute}.")
            elif not attribute.startswith("_") and isinstance(value, (list, tuple)) and value:
                for i, item in enumerate(value):  # StackedRNNCells.cells
                    if isinstance(item, keras.layers.Layer) and id(item) not in seen:
                        visit(item, f"{prefix}{attribute}.{i}.")

    visit(layer, "")
    return found


def _resolve(layer: keras.layers.Layer, path: str) -> Any:
    value = layer
    for part in path.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


def _tensor_name(layer: keras.layers.Layer, path: str) -> str:
    """`dense/kernel`, `lstm/cell/recurrent_kernel`, `mha/query_dense/kernel`: stable across
    sessions, unlike the sublayers' own names."""
    return "/".join([layer.name, *(part.lstrip("_") for part in path.split("."))])


@dataclasses.dataclass(frozen=True)
class _Kernel:
    """A kernel of a layer: what `prunable` masks (`reason` None) or leaves (with the reason)."""

    layer: keras.layers.Layer
    path: str
    variable: tf.Variable
    reason: str | None

    @property
    def name(self) -> str:
        return _tensor_name(self.layer, self.path)


def _short_name(variable: tf.Variable) -> str:
    return variable.name.split(":")[0].rsplit("/", 1)[-1]


def _kernels(layer: keras.layers.Layer, depthwise: bool, embeddings: bool, excluded: bool) -> list[_Kernel]:
    """The kernels of a (non-model) layer, each with why it stays unmasked (None: masked)."""
    trainable = {id(v) for v in layer.trainable_weights}
    named = {id(w) for w in layer.get_prunable_weights()} if _has_own_prunable_weights(layer) else None
    found, held = [], set()
    for path, variable, _ in _attribute_weights(layer):
        held.add(id(variable))
        role = kernel_role(path.rsplit(".", 1)[-1], len(variable.shape))
        if named is not None and id(variable) in named:
            role = "kernel"  # the layer names it: a custom layer may prune a bias too
        if role == "other":
            continue
        if id(variable) not in trainable:
            reason = FROZEN
        elif excluded:
            reason = EXCLUDED
        elif named is not None:
            reason = None if id(variable) in named else "not named by the layer's get_prunable_weights"
        elif role == "embedding" and not embeddings:
            reason = EMBEDDING
        elif path.endswith("depthwise_kernel") and not depthwise:
            reason = DEPTHWISE
        else:
            reason = None
        found.append(_Kernel(layer, path, variable, reason))
    hidden = [w for w in layer.weights if id(w) not in held and kernel_role(_short_name(w), len(w.shape)) != "other"]
    if named is not None and not excluded and any(id(w) in named for w in hidden):
        name = next(w.name for w in hidden if id(w) in named)
        raise ValueError(
            f"Layer {layer.name!r}: prunable weight {name!r} is not an attribute of the layer, so imp_keras cannot "
            "hand the layer its masked value during training. Assign it as `self.<name> = self.add_weight(...)`."
        )
    for w in hidden:
        reason = FROZEN if id(w) not in trainable else EXCLUDED if excluded else NOT_AN_ATTRIBUTE
        found.append(_Kernel(layer, _short_name(w), w, reason))
    return found


def _build_projections(layer: keras.layers.Layer) -> None:
    """Builds the projections of a MultiHeadAttention restored from its config: it knows its input
    shapes, but creates the projections' kernels only at its first call, after the holder's build
    needs them."""
    if not isinstance(layer, keras.layers.MultiHeadAttention) or not layer._built_from_signature:
        return
    shapes = (layer._query_shape, layer._value_shape, layer._key_shape)
    if not layer._query_dense.built and all(s is not None for s in shapes):
        query, value, key = (keras.Input(batch_shape=tuple(tf.TensorShape(s).as_list())) for s in shapes)
        layer(query, value, key=key)


@keras.saving.register_keras_serializable(package="imp_keras")
class MaskHolder(pruning_wrapper.PruneLowMagnitude):
    """tfmot pruning wrapper whose masks imp_keras sets; tfmot's schedule never fires.

    It masks the layer's trainable kernels wherever the layer holds them as attributes: its own
    (Dense, Conv*, depthwise and separable convolutions, custom layers' `add_weight` kernels) and
    its sublayers' (LSTM/GRU/SimpleRNN cells, MultiHeadAttention's EinsumDense projections).

    Args:
      layer: the tf_keras layer to wrap.
      weight_names: dotted attribute paths of the weights to mask (e.g. `["kernel"]`,
        `["cell.kernel", "cell.recurrent_kernel"]`); None for every trainable kernel of the layer
        but embedding tables, or, for a layer implementing tfmot's `PrunableLayer`, the weights it
        names itself.
      **kwargs: passed to `keras.layers.Wrapper`.

    In a subclassed model, wrap the layers yourself: `self.fc = MaskHolder(keras.layers.Dense(10))`.
    """

    def __init__(self, layer, weight_names: Sequence[str] | None = None, **kwargs):
        require_tf_keras(layer, "layer", keras.layers.Layer)
        kwargs.pop("name", None)  # tfmot derives the name from the wrapped layer's.
        # The wrapper computes the masked kernel, so it must compute in the layer's own dtype policy
        # (a per-layer mixed_float16 under a float32 global policy, or the reverse).
        kwargs.setdefault("dtype", layer.dtype_policy)
        self.weight_names = None if weight_names is None else list(weight_names)
        if not _has_own_prunable_weights(layer):
            # Resolved when tfmot's build asks, after the layer is built (its kernels exist then).
            layer.get_prunable_weights = lambda: [_resolve(layer, path) for path in self._weight_paths()]
        super().__init__(layer, pruning_schedule=_NeverPrune(), **kwargs)

    def _weight_paths(self) -> list[str]:
        if self.weight_names is None:
            self.weight_names = [k.path for k in _kernels(self.layer, True, False, False) if k.reason is None]
        return self.weight_names

    def build(self, input_shape):
        _build_projections(self.layer)
        super().build(input_shape)
        paths = {id(variable): path for path, variable, _ in _attribute_weights(self.layer)}
        self._masked_attributes = []
        self.tensor_names = []
        for weight, _, _ in self.pruning_vars:
            owners = [
                (owner, [name for name, value in vars(owner).items() if value is weight])
                for owner in self.layer._flatten_layers(include_self=True, recursive=True)
            ]
            owners = [(owner, names) for owner, names in owners if names]
            if not owners:
                raise ValueError(
                    f"Layer {self.layer.name!r}: prunable weight {weight.name!r} is not an attribute of the "
                    "layer, so imp_keras cannot hand the layer its masked value during training."
                )
            self._masked_attributes.append(owners)
            self.tensor_names.append(_tensor_name(self.layer, paths.get(id(weight), owners[0][1][0])))

    def call(self, inputs, *args, training=None, **kwargs):
        parameters = inspect.signature(self.layer.call).parameters
        if "training" in parameters:
            kwargs["training"] = training
        if "mask" not in parameters:
            # tf_keras hands this **kwargs call the inputs' mask (after Masking); a layer whose call
            # takes none (Dense) would fail on it.
            kwargs.pop("mask", None)
        originals = []
        try:
            # Swap in kernel * mask for the duration of the inner call, on the layer or sublayer
            # that holds the kernel. object.__setattr__ bypasses Keras attribute tracking, which
            # would otherwise drop the variable from the layer.
            for (weight, mask, _), owners in zip(self.pruning_vars, self._masked_attributes):
                value = tf.convert_to_tensor(weight)  # the compute dtype under mixed precision
                masked = value * tf.cast(mask, value.dtype)
                for owner, names in owners:
                    for name in names:
                        originals.append((owner, name, weight))
                        object.__setattr__(owner, name, masked)
            # Through __call__ (tfmot calls .call): the layer's activity regularizer, input checks and
            # input casting still apply.
            return self.layer(inputs, *args, **kwargs)
        finally:
            for owner, name, weight in originals:
                object.__setattr__(owner, name, weight)

    def get_config(self):
        config = keras.layers.Wrapper.get_config(self)
        config["weight_names"] = self.weight_names
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = keras.layers.deserialize(config.pop("layer"))
        return cls(layer, **config)


def is_graph_model(model: keras.Model) -> bool:
    """Sequential or Functional: a model that `strip` can clone without its wrappers (a subclassed one it cannot)."""
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


def _matcher(excluded_names: set[str], excluded_types: tuple[type, ...]):
    return lambda layer: layer.name in excluded_names or bool(excluded_types and isinstance(layer, excluded_types))


def _model_kernels(
    model: keras.Model, depthwise: bool = True, embeddings: bool = False, excluded=lambda layer: False
) -> list[_Kernel]:
    """Every kernel of `model`'s layers (mask holders' wrapped layers included), each with why it
    is not masked (None: masked, or for a model without mask holders, what `prunable` would mask)."""
    layers = [l for l in layers_of(model) if not isinstance(l, keras.Model)]
    wrapped = any(isinstance(l, MaskHolder) for l in layers)
    found = []
    for layer in layers:
        inner = layer.layer if isinstance(layer, MaskHolder) else layer
        kernels = _kernels(inner, depthwise, embeddings, excluded(inner))
        if isinstance(layer, MaskHolder):
            held = {w.ref() for w, _, _ in layer.pruning_vars}
            kernels = [
                dataclasses.replace(k, reason=None if k.variable.ref() in held else k.reason or "not in its MaskHolder's weight_names")
                for k in kernels
            ]
        elif wrapped:
            kernels = [dataclasses.replace(k, reason=k.reason or EXCLUDED) for k in kernels]
        found += kernels
    return found


def plain_kernels(model: keras.Model, embeddings: bool = False) -> list[tuple[str, tf.Variable]]:
    """The kernels `prunable` masks by default (embedding tables too with `embeddings`) in a plain
    (unwrapped or stripped) model, as (name, variable) in model order: the names `masked_weights`
    gives."""
    return [(k.name, k.variable) for k in _model_kernels(model, embeddings=embeddings) if k.reason is None]


def trainable_kernels(model: keras.Model) -> list[tuple[str, tf.Variable]]:
    """Every kernel of `model` trainable now, embedding tables included, masked or not (a masked
    layer frozen after `prunable` is not), as (name, variable)."""
    trainable = {w.ref() for w in model.trainable_weights}
    return [(k.name, k.variable) for k in _model_kernels(model, embeddings=True) if k.variable.ref() in trainable]


def coverage(
    model: keras.Model, *, exclude: Iterable[str | type] = (), depthwise: bool = True, embeddings: bool = False
) -> list[Skipped]:
    """The kernels of a model from `prunable` that no mask holder masks, one entry per layer type
    and reason; pass the `prunable` arguments used for the reasons to name them."""
    names, types = _check_exclude(exclude)
    kernels = _model_kernels(model, depthwise, embeddings, _matcher(names, types))
    return group_skipped(
        (type(k.layer).__name__, k.reason, k.name, int(np.prod(k.variable.shape))) for k in kernels if k.reason is not None
    )


def _all_layer_names(model: keras.Model) -> set[str]:
    layers = layers_of(model)
    return {l.name for l in layers} | {l.layer.name for l in layers if isinstance(l, MaskHolder)}


def _check_exclude(exclude: Any) -> tuple[set[str], tuple[type, ...]]:
    if isinstance(exclude, (str, type)) or not isinstance(exclude, Iterable):
        raise ValueError(f"`exclude` must be a list of layer names or classes. Received: exclude={exclude!r}")
    exclude = list(exclude)
    excluded_names = {e for e in exclude if isinstance(e, str)}
    excluded_types = tuple(e for e in exclude if isinstance(e, type))
    if len(excluded_names) + len(excluded_types) != len(exclude):
        raise ValueError(f"`exclude` must hold layer names or layer classes. Received: exclude={exclude!r}")
    return excluded_names, excluded_types


_SUBCLASSED = (
    "subclassed models cannot be cloned with wrappers. Wrap the layers to prune in its `__init__` instead, e.g. "
    "`self.fc = imp_keras.tf_keras.MaskHolder(keras.layers.Dense(10))` (every trainable kernel of the layer is "
    "masked, LSTM cells and attention projections included), then compile it and fit with IMPCallback as usual; "
    "or build the model with the Functional API and pass it to `prunable`."
)


def prunable(
    model: keras.Model,
    *,
    exclude: Iterable[str | type] = (),
    depthwise: bool = True,
    embeddings: bool = False,
    verbose: int = 1,
) -> keras.Model:
    """Returns `model` with every layer that holds a trainable kernel wrapped in a `MaskHolder`,
    ready to compile.

    Kernels are found by what they are, wherever a layer holds them as attributes: Dense,
    EinsumDense, Conv1D/2D/3D and their transposes, DepthwiseConv and both SeparableConv kernels,
    LSTM/GRU/SimpleRNN cells (input and recurrent kernels), MultiHeadAttention's projections, and
    custom layers' `add_weight` kernels; layers implementing tfmot's `PrunableLayer` prune the
    weights they name. Biases and normalisation parameters never are, nor frozen
    (`trainable=False`) weights, which could not retrain. Nested Sequential and Functional models
    are handled. The returned model shares its layers, and so its trained weights, with `model`:
    nothing is re-initialised.

    What stays unmasked is printed (with `verbose`) one line per layer type, with the reason, and
    `coverage` returns it. A model whose unmasked kernels hold most of its trainable kernel
    weights for a reason the user did not choose (an embedding table not asked for, a kernel not
    held as an attribute) is refused: prune them, or `exclude` them explicitly.

    Args:
      model: a tf_keras Sequential or Functional model.
      exclude: layer names or layer classes to keep dense (e.g. the first convolution).
      depthwise: prune DepthwiseConv kernels and the depthwise kernels of SeparableConv layers.
      embeddings: also prune Embedding tables.
      verbose: 1 prints one line per layer type whose kernels stay unmasked, 0 is silent.

    Raises:
      TypeError: `model` is not a tf_keras model (a Keras 3 model, for example).
      ValueError: `model` is subclassed, already wrapped by tfmot, names an unknown layer in
        `exclude`, has nothing to prune, or would leave most of its kernel weights unmasked.

    Example:
    ```python
    model = imp_keras.prunable(keras.Sequential([...]), exclude=["conv2d"])
    ```
    """
    require_tf_keras(model, "model", keras.Model)
    if not is_graph_model(model):
        raise ValueError(f"`model` of type {type(model).__name__} is a subclassed tf_keras model; {_SUBCLASSED}")
    for flag, value in (("depthwise", depthwise), ("embeddings", embeddings)):
        if not isinstance(value, bool):
            raise ValueError(f"`{flag}` must be a bool. Received: {flag}={value!r}")
    if verbose not in (0, 1) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
    excluded_names, excluded_types = _check_exclude(exclude)
    check_names("exclude", excluded_names, _all_layer_names(model))
    excluded = _matcher(excluded_names, excluded_types)
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
        if excluded(layer):
            return layer
        if isinstance(layer, keras.Model):
            if not is_graph_model(layer):
                raise ValueError(f"Nested model {layer.name!r} is subclassed; {_SUBCLASSED}")
            return keras.models.clone_model(layer, clone_function=wrap)
        paths = [k.path for k in _kernels(layer, depthwise, embeddings, False) if k.reason is None]
        if not paths:
            return layer
        return MaskHolder(layer, weight_names=None if _has_own_prunable_weights(layer) else paths)

    result = keras.models.clone_model(model, clone_function=wrap)
    holders = _holders(result)
    if not holders:
        raise ValueError(
            f"`model` {model.name!r} has no prunable weights: no trainable kernel (or PrunableLayer) outside `exclude`."
        )
    wrapped_inner = {id(h.layer): h.layer.name for h in holders}
    unwrapped_uses = sorted({wrapped_inner[id(l)] for l in layers_of(result) if id(l) in wrapped_inner})
    if unwrapped_uses:
        raise ValueError(
            f"Layers {unwrapped_uses} are pruned in one place of the model but used unwrapped in another "
            "(an excluded nested model?); their pruned weights would train again. Exclude them everywhere "
            "or nowhere."
        )
    skipped = coverage(result, exclude=exclude, depthwise=depthwise, embeddings=embeddings)
    check_coverage(model.name, sum(int(np.prod(e.weight.shape)) for e in masked_weights(result)), skipped)
    if verbose:
        for line in skipped:
            print(f"imp_keras: {line}")
    return result


@dataclasses.dataclass(frozen=True)
class MaskedWeight:
    """One prunable tensor: its readable name, the weight variable, the mask variable, the layer
    that holds the weight (the wrapped layer, or its sublayer: an RNN cell, an attention
    projection), and whether the weight was trainable when the entry was read (a layer frozen
    after `prunable` holds masks that pruning leaves as they are)."""

    name: str
    weight: tf.Variable
    mask: tf.Variable
    layer: keras.layers.Layer
    trainable: bool = True


def _holders(model: keras.Model) -> list[MaskHolder]:
    return [layer for layer in layers_of(model) if isinstance(layer, MaskHolder)]


def masked_weights(model: keras.Model) -> list[MaskedWeight]:
    """The prunable tensors of a model built by `prunable`, in model order."""
    trainable = {w.ref() for w in model.trainable_weights}
    entries, seen = [], set()
    for holder in _holders(model):
        if not holder.built:
            raise ValueError(f"Layer {holder.name!r} is not built; build the model (give it an input shape) first.")
        for (weight, mask, _), name, owners in zip(holder.pruning_vars, holder.tensor_names, holder._masked_attributes):
            if weight.ref() in seen:
                raise ValueError(f"Weight {weight.name!r} is held by two mask holders; wrap each layer once.")
            seen.add(weight.ref())
            entries.append(MaskedWeight(name, weight, mask, owners[0][0], weight.ref() in trainable))
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
    """Restarts the optimizer's state for `variables` as it was built: moving averages from the
    weights, Adagrad's accumulators at `initial_accumulator_value`, the rest at 0. Its step counter
    stays, so learning-rate schedules continue."""
    inner = _inner(optimizer)
    averages = {id(v) for v in getattr(inner, "_model_variables_moving_average", [])}
    for variable in variables:
        accumulators, start = _accumulators(inner, variable)
        for slot in optimizer_slots(optimizer, variable):
            if id(slot) in averages:
                slot.assign(variable)
            elif id(slot) in accumulators:
                slot.assign(tf.fill(slot.shape, tf.cast(start, slot.dtype)))
            else:
                slot.assign(tf.zeros_like(slot))


def _accumulators(optimizer, variable: tf.Variable) -> tuple[set[int], float]:
    """The ids of Adagrad's accumulators among `variable`'s slots, and the value they start at."""
    if not _is_legacy(optimizer):
        return {id(v) for v in getattr(optimizer, "_accumulators", None) or []}, getattr(optimizer, "initial_accumulator_value", 0.0)
    try:
        return {id(optimizer.get_slot(variable, "accumulator"))}, optimizer._initial_accumulator_value
    except (KeyError, AttributeError):  # no such slot, or a variable it does not train
        return set(), 0.0


def apply_masks(entries: Sequence[MaskedWeight], masks: Sequence[np.ndarray] | None = None, optimizer=None) -> None:
    """Sets the masks (when given) and zeroes every masked weight and its optimizer slots."""
    masks = check_masks([e.name for e in entries], masks)
    for i, entry in enumerate(entries):
        mask_dtype = entry.mask.dtype
        if masks is not None:
            entry.mask.assign(masks[i].astype(mask_dtype.as_numpy_dtype))
        mask = tf.convert_to_tensor(entry.mask)
        entry.weight.assign(entry.weight * tf.cast(mask, entry.weight.dtype))
        if optimizer is not None:
            for slot in optimizer_slots(optimizer, entry.weight):
                slot.assign(slot * tf.cast(mask, slot.dtype))


def strip(model: keras.Model) -> keras.Model:
    """The plain tf_keras model, masks applied and wrappers removed (tfmot's `strip_pruning`, made
    safe against tfmot issue #206: kernels are masked before stripping). It remembers which
    tensors were masked, so its `sparsity_report` is the model's."""
    require_tf_keras(model, "model", keras.Model)
    entries = masked_weights(model)
    apply_masks(entries)
    plain = tfmot.sparsity.keras.strip_pruning(model)
    # What was masked, for `sparsity_report`: not a tracked attribute, so never saved.
    object.__setattr__(plain, STRIPPED_MASKED, tuple(e.name for e in entries))
    return plain
