"""SavedModel directories as Keras 3 writes them (`model.export(path, format="tf_saved_model")`):
run through their `serve` endpoint and their variables read from the checkpoint. TensorFlow is
imported when a function is called, never at import."""

import os
from collections.abc import Sequence

import numpy as np

from imp_keras.export import checks

__all__ = ["run", "variables"]

_OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"


def run(path: str, inputs: Sequence[np.ndarray], batch: int | None) -> list[np.ndarray]:
    """The outputs of the SavedModel's `serve` endpoint on `inputs` (one array per model input,
    passed as Keras passes them: one tensor, or a list), `batch` samples at a time."""
    import tensorflow as tf

    loaded = tf.saved_model.load(path)  # kept: its endpoints fail once it is collected

    def run_batch(arrays: list[np.ndarray]) -> list[np.ndarray]:
        outputs = loaded.serve(arrays[0] if len(arrays) == 1 else arrays)
        return [np.asarray(o) for o in tf.nest.flatten(outputs)]

    return checks.in_batches(run_batch, inputs, batch)


def variables(path: str) -> list[np.ndarray]:
    """Every variable the SavedModel holds, as stored (one array per checkpoint entry)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    return [reader.get_tensor(key) for key in sorted(reader.get_variable_to_shape_map()) if key != _OBJECT_GRAPH]
