"""Which Keras a run trains with: the config fields `keras` (`tf_keras` or `keras3`) and `backend`
(`tensorflow`, `jax` or `torch`), made to hold before anything imports Keras.

Keras 3 fixes its backend when `keras` is first imported (from `KERAS_BACKEND`), so `use` sets the
variable while Keras is not imported yet, and refuses a process whose Keras 3 already runs on
another backend instead of training on the wrong one. Importing this module imports no Keras.
"""

import os
import sys
import types

from imp_keras._flavour import FLAVOURS, adapter

__all__ = ["BACKENDS", "FLAVOURS", "backend_problem", "use"]

BACKENDS = ("tensorflow", "jax", "torch")


def backend_problem(flavour: str, backend: str) -> str | None:
    """Why `backend` cannot run `flavour` in this process, as the end of a sentence; None when it can."""
    if flavour == "tf_keras" and backend != "tensorflow":
        return "'tensorflow' with keras='tf_keras' (tf_keras runs on TensorFlow only; keras='keras3' runs on jax and torch)"
    keras3 = sys.modules.get("keras")
    if flavour == "keras3" and keras3 is not None and hasattr(keras3, "backend"):
        running = keras3.backend.backend()
        if running != backend:
            return (
                f"the backend Keras 3 already runs on in this process, {running!r}: Keras fixes its backend when "
                f"first imported. Run in a fresh process (`python -m imp_keras.train` sets KERAS_BACKEND={backend} "
                "before importing Keras), or set KERAS_BACKEND before anything imports Keras"
            )
    return None


def use(flavour: str, backend: str) -> types.ModuleType:
    """Makes `flavour` on `backend` the Keras of this process and returns its adapter module
    (`imp_keras.tf_keras` or `imp_keras.keras3`, whose `keras` is that Keras).

    Raises:
      ValueError: an unknown flavour or backend, tf_keras on a backend other than TensorFlow, or
        Keras 3 already imported on another backend.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"`keras` must be one of {FLAVOURS}. Received: keras={flavour!r}")
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}. Received: backend={backend!r}")
    problem = backend_problem(flavour, backend)
    if problem:
        raise ValueError(f"`backend` must be {problem}. Received: backend={backend!r}")
    if flavour == "keras3" and "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = backend
    return adapter(flavour)
