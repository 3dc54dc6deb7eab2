"""The one module that chooses Keras: tf_keras (Keras 2), the Keras that tfmot works with.

Every other module imports `keras` from here. Objects built with Keras 3 (`import keras`, or
`tf.keras` on TensorFlow >= 2.16 without TF_USE_LEGACY_KERAS) cannot be pruned by tfmot; they are
refused here with a message that says how to build them instead, never with tfmot's own error.
"""

import os
from typing import Any

# What tfmot sets when imported, set here first so that it holds whichever is imported first.
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tf_keras as keras  # noqa: E402

from imp_keras._flavour import flavour_of  # noqa: E402

__all__ = ["keras", "require_tf_keras"]


def require_tf_keras(obj: Any, argument: str, expected: type | tuple[type, ...]) -> None:
    """Raises unless `obj` is a tf_keras object of the `expected` kind.

    Args:
      obj: the object a user handed to imp_keras.
      argument: the argument's name, used in the error message.
      expected: tf_keras class (or classes) `obj` must be an instance of.

    Raises:
      TypeError: `obj` is a Keras 3 object, or not an instance of `expected`.
    """
    if isinstance(obj, expected):
        return
    kinds = expected if isinstance(expected, tuple) else (expected,)
    wanted = " or ".join(f"tf_keras `{k.__name__}`" for k in kinds)
    if flavour_of(obj) == "keras3":
        cls = type(obj)
        raise TypeError(
            f"`{argument}` is a Keras 3 object ({cls.__module__}.{cls.__qualname__}), but imp_keras, "
            f"like tensorflow-model-optimization, needs a {wanted} (Keras 2). Build it with "
            "`import tf_keras as keras` (or `from imp_keras import keras`) instead of `import keras` "
            "or `tf.keras`, e.g. `keras.Sequential(...)`, `keras.optimizers.SGD(...)`."
        )
    raise TypeError(f"`{argument}` must be a {wanted}. Received: {argument}={obj!r}")
