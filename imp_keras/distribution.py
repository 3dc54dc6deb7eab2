"""Where training runs: the tf.distribute strategy of a run, which worker is the chief, and how
every worker takes part in a save that only the chief keeps. TensorFlow is imported by
`make_strategy` only: a Keras 3 run on JAX or PyTorch has no strategy (None), and is its own chief."""

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from imp_keras import files

__all__ = ["STRATEGIES", "chief_directory", "is_chief", "make_strategy", "save_model"]

# tf.distribute strategies (tf_keras), and Keras 3's keras.distribution.DataParallel over every local
# device (JAX; made by imp_keras.train_keras3).
STRATEGIES = ("none", "mirrored", "multi_worker", "data_parallel")


def make_strategy(name: str) -> Any:
    """The strategy for `config.distribution`.

    `none` is the default strategy (one device), `mirrored` replicates over every local GPU (or,
    without GPUs, every logical CPU device), `multi_worker` reads the
    cluster from the `TF_CONFIG` environment variable.
    """
    import tensorflow as tf  # only tf.distribute needs it

    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # Without GPUs, MirroredStrategy() would take one CPU; logical CPU devices (set up before
        # TensorFlow starts) stand in for GPUs in tests.
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "`distribution`='multi_worker' needs the TF_CONFIG environment variable describing the cluster "
                "and this worker's task. Received: TF_CONFIG unset."
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON ({e}). Received: TF_CONFIG={os.environ['TF_CONFIG']!r}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"`distribution` must be one of {STRATEGIES[:3]} for tf_keras. Received: distribution={name!r}")


def is_chief(strategy: Any) -> bool:
    """True on the worker that writes the run's files: the only one (also with no strategy, None),
    the `chief`, or worker 0 of a cluster without a chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


@contextlib.contextmanager
def chief_directory(directory: str, strategy: Any) -> Iterator[str]:
    """`directory` on the chief, a scratch directory removed afterwards on every other worker.

    Saving a distributed model takes collective ops that must run on all workers, so every
    worker saves; only the chief's files are kept.
    """
    chief = is_chief(strategy)
    target = directory if chief else tempfile.mkdtemp(prefix="imp_keras_worker_")
    try:
        os.makedirs(target, exist_ok=True)
        yield target
    finally:
        if not chief:
            shutil.rmtree(target, ignore_errors=True)


def save_model(model, path: str) -> None:
    """Saves a tf_keras model to `path` (`.keras`) under a temporary name first, so a crash never
    leaves a file that looks complete."""
    with files.replacing(path) as partial:
        model.save(partial)
