"""Which Keras an object belongs to, found without importing either: `tf_keras` (Keras 2, the
tfmot path) or `keras3` (Keras 3 on TensorFlow, JAX or PyTorch)."""

import importlib
import os
import types
from typing import Any

__all__ = ["FLAVOURS", "adapter", "default_flavour", "flavour_of"]

FLAVOURS = ("tf_keras", "keras3")


def flavour_of(obj: Any) -> str | None:
    """`tf_keras`, `keras3`, or None for an object of neither (a float, a NumPy array)."""
    cls = obj if isinstance(obj, type) else type(obj)
    for c in cls.__mro__:
        module = c.__module__ or ""
        if module == "tf_keras" or module.startswith(("tf_keras.", "imp_keras.tf_keras")):
            return "tf_keras"
        if module == "keras" or module.startswith(("keras.", "imp_keras.keras3")):
            return "keras3"
    return None


def default_flavour() -> str:
    """The flavour of objects made from no Keras object (a `RetrainSchedule` of a float base, an
    `IMPCallback` without a schedule): tf_keras when TF_USE_LEGACY_KERAS is on (as tfmot,
    `imp_keras.tf_keras` and `from imp_keras import keras` set it), else Keras 3."""
    legacy = os.environ.get("TF_USE_LEGACY_KERAS", "").strip().lower() in ("1", "true", "yes")
    return "tf_keras" if legacy else "keras3"


def adapter(flavour: str) -> types.ModuleType:
    """The module of a flavour, `imp_keras.tf_keras` or `imp_keras.keras3` (imported now)."""
    if flavour not in FLAVOURS:
        raise ValueError(f"`flavour` must be one of {FLAVOURS}. Received: flavour={flavour!r}")
    return importlib.import_module(f"imp_keras.{flavour}")
