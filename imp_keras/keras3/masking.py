"""How masks are held on Keras 3 (TensorFlow, JAX, PyTorch): a wrapper layer whose masks are model
weights and whose `call` hands the wrapped layer `kernel * mask`.

Why this mechanism (measured in a prototype on keras 3.15, jax 0.10, torch 2.13, all CPU):
  - the wrapper kept every pruned weight exactly 0.0 on all three backends and through every save
    path (`.keras` with and without compile, a new optimizer, `save_weights`), at 1.07-1.10x the
    step time of a tiny MLP and about 1.0x on a CNN;
  - masking gradients inside a wrapping optimizer held too, but its masks lived in optimizer
    state: a reloaded model compiled with a new optimizer regrew 133,100 pruned weights;
  - a kernel `constraint` failed silently on JAX: the mask was frozen into the traced step, and
    pruned weights came back between two `fit` calls.
Masks that are model variables travel in the state JAX passes to its traced step, are saved with
the model, and the product's gradient is zero where the mask is: a pruned weight gets no update,
and with its optimizer slots zeroed at pruning it stays exactly 0.0.

Prunable weights are found by what they are, not by layer class: every trainable variable of rank
>= 2 held as an attribute of a layer (Dense, EinsumDense, Conv*, Depthwise/Separable convolutions,
LSTM/GRU/SimpleRNN cells, MultiHeadAttention's projections, custom layers' `add_weight` kernels),
except biases and normalisation parameters; Embedding tables on request.
"""

from collections.abc import Iterable, Sequence
import dataclasses
import fnmatch
import inspect
from typing import Any

import keras
import numpy as np
from keras import ops

from imp_keras.core.checks import check_bool, check_masks
from imp_keras.core.coverage import (
    DEPTHWISE, EMBEDDING, EXCLUDED, FROZEN, NOT_AN_ATTRIBUTE, NOT_INCLUDED, Skipped, check_coverage, check_names, group_skipped,
    kernel_role,
)

STRIPPED_MASKED = "_imp_keras_masked"  # attribute of a stripped model: the names of its masked tensors

__all__ = [
    "MaskHolder",
    "STRIPPED_MASKED",
    "MaskedWeight",
    "Skipped",
    "apply_masks",
    "block_sizes",
    "coverage",
    "is_graph_model",
    "last_learning_rate",
    "masked_weights",
    "optimizer_slots",
    "pruned_positions",
    "plain_kernels",
    "prunable",
    "reset_optimizer",
    "strip",
]

def _role(variable: Any) -> str:
    """`kernel`, `embedding`, or `other` (biases, normalisation parameters, vectors)."""
    return kernel_role(variable.path.rsplit("/", 1)[-1], len(variable.shape))


@dataclasses.dataclass(frozen=True)
class _Target:
    owner: keras.layers.Layer
    attribute: str
    variable: Any
    name: str


def _is_depthwise(owner: keras.layers.Layer, attribute: str) -> bool:
    """A DepthwiseConv kernel or a SeparableConv's depthwise kernel (Keras 3 names the former `kernel`)."""
    return attribute == "depthwise_kernel" or (
        attribute == "kernel" and isinstance(owner, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D))
    )


def _targets(layer: keras.layers.Layer, embeddings: bool, depthwise: bool = True) -> list[_Target]:
    """The prunable variables of `layer` and its sublayers, each with the attribute that holds it."""
    found, seen = [], set()
    for owner in layer._flatten_layers(include_self=True, recursive=True):
        if isinstance(owner, MaskHolder) and owner is not layer:
            continue
        for attribute, value in vars(owner).items():
            if not isinstance(value, keras.Variable) or id(value) in seen:
                continue
            role = _role(value)
            if not value.trainable or role == "other" or (role == "embedding" and not embeddings):
                continue
            if not depthwise and _is_depthwise(owner, attribute):
                continue
            seen.add(id(value))
            found.append(_Target(owner, attribute, value, _tensor_name(layer, owner, attribute)))
    return found


def _tensor_name(layer: keras.layers.Layer, owner: keras.layers.Layer, leaf: str) -> str:
    """`dense/kernel`, `mha/query/kernel`, `bidirectional/forward_lstm/lstm_cell/kernel`: by the
    names of the layers from `layer` down to `owner`, stable when a model is reloaded (its
    variables' paths are not: a Sequential's lose their `sequential/` prefix)."""
    return "/".join([*_layer_path(layer, owner), leaf.lstrip("_")])


def _layer_path(layer: keras.layers.Layer, owner: keras.layers.Layer) -> list[str]:
    """The names of the layers from `layer` down to its sublayer `owner`, the shortest way (the two
    directions of a Bidirectional hold cells of one name: only the path tells them apart)."""
    paths = {id(layer): [layer.name]}
    queue = [layer]
    for parent in queue:  # breadth first: the queue grows while it is read
        if parent is owner:
            return paths[id(parent)]
        for child in parent._flatten_layers(include_self=False, recursive=False):
            if id(child) not in paths:
                paths[id(child)] = [*paths[id(parent)], child.name]
                queue.append(child)
    return [layer.name, owner.name]


@keras.saving.register_keras_serializable(package="imp_keras")
class MaskHolder(keras.layers.Wrapper):
    """Holds a mask for every prunable weight of `layer` and hands `layer` the masked weights.

    Args:
      layer: the Keras 3 layer to wrap (any layer: its prunable weights are found by what they are).
      embeddings: also mask embedding tables.
      depthwise: mask DepthwiseConv kernels and SeparableConv depthwise kernels.
      **kwargs: passed to `keras.layers.Wrapper`.

    Wrap layers yourself in a subclassed model: `self.fc = imp_keras.keras3.MaskHolder(keras.layers.Dense(10))`.
    """

    def __init__(self, layer: keras.layers.Layer, embeddings: bool = False, depthwise: bool = True, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(f"`layer` must be a Keras 3 layer. Received: layer={layer!r}")
        kwargs.setdefault("name", f"{layer.name}_masked")
        # The wrapper computes the masked kernel, so it computes in the layer's own dtype policy.
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        # Input masks (Masking, mask_zero) pass through the wrapper as through the layer.
        self.supports_masking = layer.supports_masking
        self.embeddings = check_bool("embeddings", embeddings)
        self.depthwise = check_bool("depthwise", depthwise)
        self._targets: list[_Target] = []
        self.masks: list[Any] = []
        if layer.built:
            self._make_masks()

    def _make_masks(self) -> None:
        self._targets = _targets(self.layer, self.embeddings, self.depthwise)
        self.masks = [
            self.add_weight(
                shape=t.variable.shape, initializer="ones", trainable=False, dtype="float32",
                name=f"mask_{i}", autocast=False,
            )
            for i, t in enumerate(self._targets)
        ]
        self.built = True

    def _maybe_build(self, call_spec):
        # Keras builds a layer from the input shapes its `call` signature names; this one takes
        # `*args`, so it gets none. The wrapped layer is built as Keras builds it when called.
        if not self.layer.built:
            arguments = call_spec.user_arguments_dict
            self.layer(*arguments.get("args", ()), **arguments.get("kwargs", {}))
        super()._maybe_build(call_spec)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        if not self.masks:
            self._make_masks()

    @property
    def targets(self) -> list[tuple[str, Any, Any]]:
        """(name, weight variable, mask variable) of every masked weight."""
        return [(t.name, t.variable, m) for t, m in zip(self._targets, self.masks)]

    def call(self, *args, **kwargs):
        if "training" in kwargs and "training" not in inspect.signature(self.layer.call).parameters:
            kwargs.pop("training")
        swapped = []
        try:
            # object.__setattr__ bypasses Keras' attribute tracking, which would drop the variable.
            for target, mask in zip(self._targets, self.masks):
                dtype = target.owner.compute_dtype if target.variable._autocast else target.variable.dtype
                masked = ops.cast(target.variable, dtype) * ops.cast(mask, dtype)
                object.__setattr__(target.owner, target.attribute, masked)
                swapped.append(target)
            return self.layer(*args, **kwargs)
        finally:
            for target in swapped:
                object.__setattr__(target.owner, target.attribute, target.variable)

    def compute_output_spec(self, *args, **kwargs):
        return self.layer.compute_output_spec(*args, **kwargs)

    def compute_mask(self, inputs, previous_mask):
        return self.layer.compute_mask(inputs, previous_mask)

    def get_config(self):
        return {**super().get_config(), "embeddings": self.embeddings, "depthwise": self.depthwise}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.layers.deserialize(config.pop("layer"), custom_objects=custom_objects)
        return cls(layer, **config)


@dataclasses.dataclass(frozen=True)
class MaskedWeight:
    """One prunable tensor: its readable name, the weight variable, the mask variable, the layer
    that owns the weight, and whether the weight was trainable when the entry was read (a layer
    frozen after `prunable` holds masks that pruning leaves as they are)."""

    name: str
    weight: Any
    mask: Any
    layer: keras.layers.Layer
    trainable: bool = True


def _holders(model: keras.layers.Layer) -> list[MaskHolder]:
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True) if isinstance(layer, MaskHolder)]


def masked_weights(model: keras.layers.Layer) -> list[MaskedWeight]:
    """The prunable tensors of a model with `MaskHolder`s, in model order."""
    trainable = {id(v) for v in model.trainable_variables}
    entries, seen = [], set()
    for holder in _holders(model):
        if not holder.built:
            raise ValueError(f"Layer {holder.name!r} is not built; build the model (give it an input shape) first.")
        for target, mask in zip(holder._targets, holder.masks):
            if id(target.variable) in seen:
                raise ValueError(f"Weight {target.variable.path!r} is held by two mask holders; wrap each layer once.")
            seen.add(id(target.variable))
            entries.append(MaskedWeight(target.name, target.variable, mask, target.owner, id(target.variable) in trainable))
    return entries


def block_sizes(entries: Sequence[MaskedWeight], block_size: tuple[int, int] | None) -> list[tuple[int, int] | None]:
    """Dense kernels lose `block_size` blocks with `IMPCallback(block_size=...)`; other tensors single weights."""
    return [block_size if block_size and isinstance(e.layer, keras.layers.Dense) else None for e in entries]


def is_graph_model(model: Any) -> bool:
    """Sequential or Functional: a model that `strip` can clone without its wrappers (a subclassed one it cannot)."""
    return isinstance(model, keras.Sequential) or type(model).__name__ == "Functional" or (
        isinstance(model, keras.Model) and getattr(model, "_is_graph_network", False)
    )


def _matches(layer: keras.layers.Layer, rules: Sequence[str | type]) -> bool:
    for rule in rules:
        if isinstance(rule, type) and isinstance(layer, rule):
            return True
        if isinstance(rule, str) and (layer.name == rule or fnmatch.fnmatchcase(layer.name, rule)):
            return True
    return False


def _check_rules(argument: str, rules: Any) -> list[str | type]:
    if rules is None:
        return []
    if isinstance(rules, (str, type)) or not isinstance(rules, Iterable):
        raise ValueError(f"`{argument}` must be a list of layer names, name patterns or layer classes. Received: {argument}={rules!r}")
    rules = list(rules)
    if not all(isinstance(r, (str, type)) for r in rules):
        raise ValueError(f"`{argument}` must hold layer names, name patterns or layer classes. Received: {argument}={rules!r}")
    return rules


def _graph_layers(
    model: keras.layers.Layer, include: Sequence[str | type], exclude: Sequence[str | type]
) -> list[tuple[keras.layers.Layer, str | None]]:
    """The layers of `model` and of its nested models, once each, with the reason the user chose
    to keep each dense (`exclude`, or outside `include`), None for the others; what `prunable`'s
    clone function decides, layer by layer."""
    found, seen = [], set()

    def visit(parent: keras.layers.Layer, inherited: str | None) -> None:
        for layer in parent.layers:
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            chosen = None if isinstance(layer, MaskHolder) else inherited or (EXCLUDED if _matches(layer, exclude) else None)
            if isinstance(layer, keras.Model):
                visit(layer, chosen)
                continue
            if chosen is None and include and not isinstance(layer, MaskHolder) and not _matches(layer, include):
                chosen = NOT_INCLUDED
            found.append((layer, chosen))

    visit(model, None)
    return found


def _layer_names(model: keras.Model) -> set[str]:
    """The names `include` and `exclude` can match: every layer and nested model of `model`, and
    the layers inside its mask holders."""
    names = set()
    for layer in model.layers:
        names.add(layer.name)
        if isinstance(layer, MaskHolder):
            names.add(layer.layer.name)
        elif isinstance(layer, keras.Model) and is_graph_model(layer):
            names |= _layer_names(layer)
    return names


def _unmasked_reason(variable: Any, held: bool, chosen: str | None, in_holder: bool, embeddings: bool, kept_depthwise: bool) -> str:
    if not variable.trainable:
        return FROZEN
    if chosen is not None:
        return chosen
    if _role(variable) == "embedding" and not embeddings:
        return EMBEDDING
    if not held:
        return NOT_AN_ATTRIBUTE
    if kept_depthwise:
        return DEPTHWISE
    # Held and trainable, yet unmasked: trainable again since it was wrapped, or a layer never wrapped.
    return "trainable again since its MaskHolder was built: wrap the layer again" if in_holder else EXCLUDED


def coverage(
    model: keras.layers.Layer,
    *,
    include: Sequence[str | type] | None = None,
    exclude: Sequence[str | type] = (),
    depthwise: bool = True,
    embeddings: bool = False,
) -> list[Skipped]:
    """The kernels of a model from `prunable` (frozen ones included) that no `MaskHolder` masks,
    one entry per layer type and reason; pass the `prunable` arguments used for the reasons to name them."""
    include, exclude = _check_rules("include", include), _check_rules("exclude", exclude)
    masked = {id(e.weight) for e in masked_weights(model)}
    rows, seen = [], set()
    for top, chosen in _graph_layers(model, include, exclude):
        inner = top.layer if isinstance(top, MaskHolder) else top
        for layer in inner._flatten_layers(include_self=True, recursive=True):
            if isinstance(layer, (MaskHolder, keras.Model)):
                continue
            attributes = {id(value): name for name, value in vars(layer).items() if isinstance(value, keras.Variable)}
            for variable in layer._trainable_variables + layer._non_trainable_variables:
                if _role(variable) == "other" or id(variable) in masked or id(variable) in seen:
                    continue
                seen.add(id(variable))
                held = id(variable) in attributes
                kept_depthwise = held and not depthwise and _is_depthwise(layer, attributes[id(variable)])
                reason = _unmasked_reason(variable, held, chosen, isinstance(top, MaskHolder), embeddings, kept_depthwise)
                name = _tensor_name(inner, layer, attributes[id(variable)] if held else variable.name)
                rows.append((type(layer).__name__, reason, name, int(np.prod(variable.shape))))
    return group_skipped(rows)


def prunable(
    model: keras.Model,
    *,
    include: Sequence[str | type] | None = None,
    exclude: Sequence[str | type] = (),
    depthwise: bool = True,
    embeddings: bool = False,
    verbose: int = 1,
) -> keras.Model:
    """Returns `model` with every layer that holds a prunable kernel wrapped in a `MaskHolder`.

    The returned model shares its layers, and so its trained weights, with `model`: nothing is
    re-initialised. Frozen (non-trainable) weights are never masked.

    What stays unmasked is printed (with `verbose`) one line per layer type, with the reason, and
    `coverage` returns it. A model whose unmasked kernels hold most of its trainable kernel
    weights for a reason the user did not choose (an embedding table not asked for, a kernel not
    held as a layer attribute) is refused: prune them, or `exclude` them explicitly.

    Args:
      model: a Keras 3 Sequential or Functional model (nested ones included). For a subclassed
        model, wrap its layers in `MaskHolder` in its `__init__` instead.
      include: if given, only layers matching one of these (names, fnmatch patterns like
        "block*_conv", or layer classes) are masked.
      exclude: layers matching one of these stay dense.
      depthwise: prune DepthwiseConv kernels and the depthwise kernels of SeparableConv layers;
        False keeps them dense (as tfmot does), listed in `coverage` with the reason.
      embeddings: also mask Embedding tables.
      verbose: 1 prints one line per layer type whose kernels stay unmasked, with the reason.

    Raises:
      TypeError: `model` is not a Keras 3 model.
      ValueError: `model` is subclassed, has nothing to prune, would leave most of its kernel
        weights unmasked, or `include`/`exclude` holds a name or pattern that matches no layer.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras 3 model. Received: model={model!r}")
    if not is_graph_model(model):
        raise ValueError(
            f"`model` of type {type(model).__name__} is a subclassed Keras 3 model, which cannot be cloned with "
            "wrappers. Wrap the layers to prune in its `__init__` instead, e.g. "
            "`self.fc = imp_keras.keras3.MaskHolder(keras.layers.Dense(10))`, then use the model with IMPCallback as it is."
        )
    include, exclude = _check_rules("include", include), _check_rules("exclude", exclude)
    names = _layer_names(model)
    for argument, rules in (("include", include), ("exclude", exclude)):
        check_names(argument, [r for r in rules if isinstance(r, str)], names, patterns=True)
    check_bool("depthwise", depthwise)
    check_bool("embeddings", embeddings)
    if verbose not in (0, 1) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 0 or 1. Received: verbose={verbose!r}")
    replacements: dict[int, keras.layers.Layer] = {}

    def wrap(layer: keras.Operation) -> keras.Operation:
        if id(layer) in replacements:
            return replacements[id(layer)]
        # A Functional graph also holds operations that are not layers (`x + y`, `keras.ops.relu`).
        if not isinstance(layer, keras.layers.Layer) or isinstance(layer, (MaskHolder, keras.layers.InputLayer)) or _matches(layer, exclude):
            result = layer
        elif isinstance(layer, keras.Model):
            if not is_graph_model(layer):
                raise ValueError(f"Nested model {layer.name!r} is subclassed; wrap its layers in MaskHolder in its __init__.")
            result = keras.models.clone_model(layer, clone_function=wrap)
        elif (include and not _matches(layer, include)) or not _targets(layer, embeddings, depthwise):
            result = layer
        else:
            result = MaskHolder(layer, embeddings=embeddings, depthwise=depthwise)
        replacements[id(layer)] = result
        return result

    result = keras.models.clone_model(model, clone_function=wrap)
    entries = masked_weights(result)
    if not entries:
        raise ValueError(f"`model` {model.name!r} has no prunable kernels outside `exclude` (and inside `include`).")
    skipped = coverage(result, include=include, exclude=exclude, depthwise=depthwise, embeddings=embeddings)
    check_coverage(model.name, sum(int(np.prod(e.weight.shape)) for e in entries), skipped)
    if verbose:
        for line in skipped:
            print(f"imp_keras: {line}")
    return result


def pruned_positions(model: keras.layers.Layer) -> dict[str, np.ndarray]:
    """Per weight path, the positions the masks of `model` prune: what `strip` leaves at 0, and
    what the exporter checks in every file."""
    return {e.weight.path: ops.convert_to_numpy(e.mask) == 0 for e in masked_weights(model)}


def strip(model: keras.Model) -> keras.Model:
    """The plain Keras 3 model: masks applied to the weights, `MaskHolder`s replaced by their layers.

    The result shares its layers (and weights) with `model`, and is not compiled (as tf_keras's
    strip): saved, it loads in any Keras 3 without imp_keras. Compile it to evaluate or train it."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a Keras 3 model. Received: model={model!r}")
    apply_masks(masked_weights(model))
    if not is_graph_model(model):
        raise ValueError(
            f"`model` of type {type(model).__name__} is subclassed: its masks are applied to its weights, but its "
            "MaskHolders cannot be removed by cloning; save its weights, or build it without MaskHolders and load them."
        )

    def unwrap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, MaskHolder):
            return layer.layer
        if isinstance(layer, keras.Model) and is_graph_model(layer):
            return keras.models.clone_model(layer, clone_function=unwrap)
        return layer

    # clone_model compiles the clone as the model is compiled, with a new optimizer: its state would
    # not be the model's, and its schedule (often imp_keras') would make every saved file need imp_keras.
    compiled = model.compiled
    model.compiled = False
    try:
        plain = keras.models.clone_model(model, clone_function=unwrap)
    finally:
        model.compiled = compiled
    # What was masked, for `sparsity_report` (as tf_keras's strip): not tracked, so never saved.
    object.__setattr__(plain, STRIPPED_MASKED, tuple(e.name for e in masked_weights(model) if e.trainable))
    return plain


def plain_kernels(model: keras.layers.Layer, embeddings: bool = True) -> list[tuple[str, Any]]:
    """The kernels `prunable` would mask in a plain (unwrapped or stripped) model, as (name, variable)."""
    found, seen = [], set()
    # Outer layers come before their sublayers: a kernel is named from the outermost one that holds
    # it (`lstm/lstm_cell/kernel`), as `masked_weights` names it.
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, (keras.Model, MaskHolder)):
            continue
        for target in _targets(layer, embeddings):
            if id(target.variable) not in seen:
                seen.add(id(target.variable))
                found.append((target.name, target.variable))
    return found


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer


def optimizer_slots(optimizer, variable) -> list[Any]:
    """The optimizer's state variables for `variable` (momentum, Adam's moments, EMA, ...)."""
    optimizer = _inner(optimizer)
    if optimizer is None or not optimizer.built:
        return []
    inner = getattr(optimizer, "_inner_optimizers", None)  # MultiOptimizer: each variable has one
    if inner is not None:
        return [slot for each in inner for slot in optimizer_slots(each, variable)]
    try:
        index = optimizer._get_variable_index(variable)
    except KeyError:  # a variable the optimizer does not train (a frozen layer)
        return []
    count = len(optimizer._trainable_variables)
    slots = []
    # Slots live in per-kind lists indexed like the optimizer's variables (SGD.momentums,
    # Adam._momentums/_velocities, _model_variables_moving_average, ...).
    for name, value in vars(optimizer).items():
        if name == "_trainable_variables" or not isinstance(value, list) or len(value) != count:
            continue
        # None where a kind has no slot for some variables (Muon's Adam velocities of the kernels it
        # updates itself).
        if all(v is None or isinstance(v, keras.Variable) for v in value):
            slot = value[index]
            if slot is not None and tuple(slot.shape) == tuple(variable.shape):
                slots.append(slot)
    return slots


def reset_optimizer(optimizer, variables: Sequence[Any]) -> None:
    """Restarts the optimizer's state for `variables` as it was built: moving averages from the
    weights, Adagrad's accumulators at `initial_accumulator_value`, the rest at 0. Its step counter
    stays, so learning-rate schedules continue."""
    inner = _inner(optimizer)
    averages = {id(v) for v in getattr(inner, "_model_variables_moving_average", None) or []}
    accumulators = {id(v) for v in getattr(inner, "_accumulators", None) or []}
    for variable in variables:
        for slot in optimizer_slots(optimizer, variable):
            if id(slot) in averages:
                # A copy: on JAX, assigning the variable itself makes both share one buffer, which the
                # traced step then donates twice.
                slot.assign(np.array(ops.convert_to_numpy(variable)))
            elif id(slot) in accumulators:
                slot.assign(np.full(slot.shape, inner.initial_accumulator_value, slot.dtype))
            else:
                slot.assign(np.zeros(slot.shape, slot.dtype))


def apply_masks(entries: Sequence[MaskedWeight], masks: Sequence[np.ndarray] | None = None, optimizer=None) -> None:
    """Sets the masks (when given) and zeroes every masked weight and its optimizer slots."""
    masks = check_masks([e.name for e in entries], masks)
    for i, entry in enumerate(entries):
        if masks is not None:
            entry.mask.assign(masks[i].astype("float32"))
        mask = ops.convert_to_numpy(entry.mask)
        entry.weight.assign(ops.convert_to_numpy(entry.weight) * mask.astype(entry.weight.dtype))
        for slot in optimizer_slots(optimizer, entry.weight) if optimizer is not None else []:
            slot.assign(ops.convert_to_numpy(slot) * mask.astype(slot.dtype))


def last_learning_rate(optimizer) -> float:
    """The learning rate of the optimizer's last step (of its first step before it has taken any)."""
    inner = _inner(optimizer)
    rate = inner._learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(max(int(ops.convert_to_numpy(inner.iterations)) - 1, 0))
    elif callable(rate) and not isinstance(rate, keras.Variable):
        rate = rate()
    return float(ops.convert_to_numpy(rate))
