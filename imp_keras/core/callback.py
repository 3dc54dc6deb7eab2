"""What every pruning callback does around its decisions, in either Keras flavour: check its
arguments, find the masked tensors, read them into NumPy, apply new masks, verify, save a ladder
model, export at the end.

`MaskCallback` is a mixin without Keras: a flavour's callback class lists it (or a method's base
built on it, `IMPCallbackBase`, `GMPCallbackBase`) before `keras.callbacks.Callback`, and a small
class of hooks that read and write that flavour's variables (`_numpy`, `_steps_taken`, ...).
"""

from collections.abc import Mapping, Sequence
import math
import os
from typing import Any
import warnings

import numpy as np

from imp_keras.core.rules import InvariantError, VerifyReport, broken
from imp_keras.core.selection import CRITERIA, Criterion, check_block_size, check_min_alive, get_criterion

__all__ = ["MaskCallback", "output_settings"]


def output_settings(
    selection: str | Criterion,
    block_size: tuple[int, int] | None,
    verbose: int,
    ladder_dir: str | os.PathLike | None,
    export_dir: str | os.PathLike | None,
    export_options: Mapping[str, Any] | None,
    export_keywords: Sequence[str],
    min_alive: int | float | None = None,
) -> dict[str, Any]:
    """The arguments every pruning callback takes (how to select, what to print and write), checked."""
    if block_size is not None:
        block_size = check_block_size(block_size)
        if selection != "global" and selection is not CRITERIA["global"]:
            raise ValueError(
                "`block_size` ranks blocks by magnitude over one global threshold, so it needs "
                f"selection='global'. Received: selection={selection!r}, block_size={block_size!r}"
            )
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"`verbose` must be 0, 1 or 2. Received: verbose={verbose!r}")
    for argument, value in (("ladder_dir", ladder_dir), ("export_dir", export_dir)):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"`{argument}` must be a path or None. Received: {argument}={value!r}")
    get_criterion(selection)  # refuses an unknown name now, not at fit
    min_alive = check_min_alive(min_alive)
    if min_alive is not None and (block_size is not None or get_criterion(selection) not in CRITERIA.values()):
        raise ValueError(
            "`min_alive` keeps a floor in every tensor with a built-in selection, weight by weight; it cannot be "
            f"combined with `block_size` or a custom selection. Received: selection={selection!r}, block_size={block_size!r}"
        )
    if export_options is None:
        export_options = {}
    if not isinstance(export_options, Mapping):
        raise ValueError(f"`export_options` must be a dict of `imp_keras.export` arguments. Received: export_options={export_options!r}")
    unknown = sorted(set(export_options) - set(export_keywords))
    if unknown:
        raise ValueError(f"`export_options` has unknown arguments {unknown}; `imp_keras.export` takes {list(export_keywords)}.")
    return {
        "selection": selection,
        "block_size": block_size,
        "verbose": verbose,
        "ladder_dir": None if ladder_dir is None else os.fspath(ladder_dir),
        "export_dir": None if export_dir is None else os.fspath(export_dir),
        "export_options": dict(export_options),
        "min_alive": min_alive,
    }


# Optimizers whose update moves pruned weights, or that the zeros of pruning break, and why.
_CANNOT_TRAIN_PRUNED = {
    "Ftrl": "its accumulators start at `initial_accumulator_value` and it divides by their square roots, so the "
    "zeros pruning writes into them make the weights NaN",
    "Muon": "it orthogonalizes each kernel's whole update (Newton-Schulz), which moves the pruned weights too",
}


class MaskCallback:
    """The Keras-free half of a pruning callback.

    A flavour supplies `masking` (its masking module: `masked_weights`, `block_sizes`,
    `apply_masks`, `reset_optimizer`, `last_learning_rate`, `strip`), `learning_rate_key` (the
    name its logs give the learning rate) and the hooks below; `self.model` and `self.params` are
    Keras' `Callback`'s.
    """

    masking: Any
    learning_rate_key: str

    # -- hooks of the flavour ---------------------------------------------------------------------

    @staticmethod
    def _export_keywords() -> list[str]:
        """The keyword arguments of the flavour's `export`, but the model and the directory."""
        raise NotImplementedError

    def _numpy(self, value: Any) -> np.ndarray:
        raise NotImplementedError

    def _require_model(self) -> None:
        """Refuses a model of the other flavour (or no model)."""
        raise NotImplementedError

    def _learning_rate_setting(self) -> Any:
        """What the optimizer was given as its learning rate, after refusing an optimizer of the other flavour."""
        raise NotImplementedError

    def _build_optimizer(self) -> None:
        """Creates the optimizer's slots, so that a restored backup fills them before any pruning."""
        raise NotImplementedError

    def _trainable(self) -> list[Any]:
        raise NotImplementedError

    def _steps_taken(self) -> int:
        """The optimizer's step counter."""
        raise NotImplementedError

    def _steps_per_call(self) -> int:
        """The training steps between two calls of the batch hooks (`steps_per_execution`)."""
        raise NotImplementedError

    def _may_skip_steps(self) -> bool:
        """Whether the optimizer leaves steps it skips uncounted (Keras 3's LossScaleOptimizer skips
        steps with non-finite gradients), so that its step count may lag the batches fit ran."""
        return False

    def _rerun_restored_epoch(self, first_step: int, restored_step: int) -> int:
        """Called at the start of an epoch restored from a mid-epoch backup at `restored_step`;
        returns the step of the epoch's next batch. tf_keras runs only the epoch's remaining steps,
        so nothing changes; Keras 3 reruns all of them, and its adapter moves the optimizer's step
        back to the epoch's `first_step`, so that schedules stay in step with the epochs."""
        return restored_step

    def _sync(self) -> None:
        """Makes the variables hold the values of the last step (JAX keeps them apart inside an epoch)."""

    def _verify_model(self, **kwargs: Any) -> VerifyReport:
        raise NotImplementedError

    def _save_model(self, model: Any, name: str) -> None:
        """Saves `model` as `name` in `ladder_dir`."""
        raise NotImplementedError

    def _export_model(self, options: dict[str, Any]) -> Any:
        """Exports the model to `export_dir`; returns the export report (None where it is not kept)."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------

    def _init_outputs(self, settings: dict[str, Any]) -> None:
        vars(self).update(settings)
        self.export_report = None
        self._finished_plan = False
        self._entries: list[Any] = []
        self._frozen: tuple[str, ...] = ()  # the frozen masked tensors already announced

    @classmethod
    def _keywords_for(cls, export_options: Any) -> list[str]:
        return cls._export_keywords() if export_options else []

    def _find_entries(self) -> None:
        """The masked tensors this fit prunes: those whose weights are trainable now. A layer
        frozen after `prunable` (`base.trainable = False`) could not retrain what it lost, so its
        masks stay as they are and the counts leave it out, as `verify` and `sparsity_report` do."""
        self._require_model()
        self._check_strippable()
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)  # past a loss scaler
        why = _CANNOT_TRAIN_PRUNED.get(type(optimizer).__name__)
        if why:
            raise ValueError(
                f"{type(optimizer).__name__} cannot train a pruned model: {why}. Use another optimizer. "
                f"Received: optimizer={optimizer!r}"
            )
        entries = self.masking.masked_weights(self.model)
        if not entries:
            raise ValueError(
                f"Model {self.model.name!r} has no imp_keras mask holders: wrap it with "
                "`imp_keras.prunable(model)` before compiling it."
            )
        self._entries = [e for e in entries if e.trainable]
        frozen = tuple(e.name for e in entries if not e.trainable)
        if not self._entries:
            raise ValueError(
                f"Model {self.model.name!r}: every masked weight is frozen (trainable=False), so there is nothing to "
                f"prune: {', '.join(frozen)}. Make the layers to prune trainable, and compile the model again."
            )
        if frozen and frozen != self._frozen:
            total = sum(math.prod(shape) for shape in self._names_and_shapes()[1])
            warnings.warn(
                f"{type(self).__name__}: {len(frozen)} masked tensor(s) are frozen (trainable=False) and left out of "
                f"pruning, their masks kept as they are: {', '.join(frozen)}. The counts are over the {total:,} weights "
                f"of the {len(self._entries)} trainable masked tensor(s); keep what is frozen the same for the whole run.",
                stacklevel=2,
            )
        self._frozen = frozen

    def _check_strippable(self) -> None:
        """Refuses, before any training, a ladder or export that would fail after it: both save the
        stripped model, and a subclassed model's MaskHolders cannot be stripped."""
        if self.masking.is_graph_model(self.model):
            return
        for argument in ("ladder_dir", "export_dir"):
            if getattr(self, argument):
                raise ValueError(
                    f"`{argument}` needs a Sequential or Functional model: {type(self.model).__name__} is subclassed, and "
                    "its MaskHolders cannot be stripped to save a plain model. Leave it out and save the weights "
                    f"(`model.save_weights`) instead. Received: {argument}={getattr(self, argument)!r}"
                )

    def _names_and_shapes(self) -> tuple[list[str], list[tuple[int, ...]]]:
        return [e.name for e in self._entries], [tuple(e.mask.shape) for e in self._entries]

    def _block_sizes(self) -> list[tuple[int, int] | None]:
        return self.masking.block_sizes(self._entries, self.block_size)

    def _masks(self) -> list[np.ndarray]:
        return [self._numpy(e.mask) != 0 for e in self._entries]

    def _weights(self) -> list[np.ndarray]:
        return [self._numpy(e.weight) for e in self._entries]

    def _apply(self, masks: Sequence[np.ndarray]) -> None:
        """Sets `masks` and zeroes the pruned weights and their optimizer state."""
        self.masking.apply_masks(self._entries, masks, self.model.optimizer)

    def _learning_rate(self) -> float:
        return self.masking.last_learning_rate(self.model.optimizer)

    def _verify(self, where: str, previous: tuple[np.ndarray, ...] | None, **kwargs: Any) -> VerifyReport:
        """`verify`'s report; its error names `where` (" at the end of IMP cycle 2 of 3 (epoch 8)")."""
        try:
            return self._verify_model(previous_masks=previous, block_size=self.block_size, **kwargs)
        except InvariantError as e:
            raise broken(e.problems, where) from None

    def _save_rung(self, name: str) -> None:
        self._save_model(self.masking.strip(self.model), name)

    def _export_if_finished(self) -> None:
        if self.export_dir and self._finished_plan:
            options = dict(self.export_options)
            options.setdefault("verbose", min(self.verbose, 1))
            self.export_report = self._export_model(options)
