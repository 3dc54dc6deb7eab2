"""Checks of user arguments shared by every module: one message format, naming the argument."""

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_bool", "check_int", "check_learning_rate", "check_masks"]


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """`value` as an int in [minimum, maximum]; ValueError naming `name` otherwise (bools refused)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"`{name}` must be an integer {bound}. Received: {name}={value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return value


def check_learning_rate(name: str, value: Any) -> float | None:
    """None, or `value` as a finite float >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < math.inf:
        raise ValueError(f"`{name}` must be a finite number >= 0. Received: {name}={value!r}")
    return float(value)


def _binary_mask(name: str, mask: Any) -> np.ndarray:
    """`mask` as an array of 0s and 1s (booleans allowed); ValueError naming the tensor otherwise:
    a mask of 0.5 would scale the weights it keeps."""
    array = np.asarray(mask)
    if array.dtype == bool:
        return array
    binary = (array == 0) | (array == 1)
    if not np.all(binary):
        raise ValueError(
            f"The mask of {name} must hold only 0 and 1 (or booleans). Received: {int(np.size(binary) - np.count_nonzero(binary))} "
            f"other value(s), e.g. {array[~binary].flat[0].item()!r}"
        )
    return array


def check_masks(names: list[str], masks: Any) -> list[np.ndarray] | None:
    """`masks`, one per tensor named in `names`, each checked to hold only 0 and 1 before any is
    set; None for None."""
    if masks is None:
        return None
    if len(masks) != len(names):
        raise ValueError(f"Got {len(masks)} masks for {len(names)} prunable tensors.")
    return [_binary_mask(name, mask) for name, mask in zip(names, masks)]
