"""What `imp_keras.train` does with Keras 3 (TensorFlow, JAX or PyTorch backend): its session
settings, inputs, callbacks, backups and export. On JAX and PyTorch nothing here imports
TensorFlow: the inputs are NumPy batches (`imp_keras.numpy_data`), metrics go to metrics.csv only
(Keras' TensorBoard callback writes with TensorFlow: used on the TensorFlow backend only), and the
export writes the formats the backend can write without it."""

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import keras
import ml_collections
import numpy as np

import imp_keras.keras3 as adapter
from imp_keras import backup, experiment, files, rundir
from imp_keras.keras3 import masking
from imp_keras.keras3.report import sparsity_report
from imp_keras.keras3.schedules import learning_rates

__all__ = [
    "UNAVAILABLE",
    "Backup",
    "DenseLogs",
    "DenseSnapshot",
    "MetricsLogger",
    "adapter",
    "backup_callbacks",
    "check_callback",
    "check_inputs",
    "compile_options",
    "evaluation_inputs",
    "export",
    "keras",
    "learning_rates",
    "logging_callbacks",
    "make_strategy",
    "prunable",
    "replicas",
    "restore_last",
    "session",
    "sparsity_report",
    "train_inputs",
]

UNAVAILABLE: tuple[type[Exception], ...] = ()  # no multi-worker runs


class MetricsLogger(rundir.MetricsLogging, keras.callbacks.Callback):
    pass


class DenseLogs(rundir.DenseLogging, keras.callbacks.Callback):
    masking = masking


class DenseSnapshot(rundir.DenseSnapshotting, keras.callbacks.Callback):
    masking = masking


class Backup(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` restoring from `<backup_dir>/chief`, where every epoch's
    backup is written whole: into a new folder that then takes the place of `chief/`, the replaced
    one becoming `previous/` (see `imp_keras.backup`). Keras' own save rewrites its weights file in
    place and its metadata after it, so a kill in between would leave the weights of one epoch with
    the epoch number of another."""

    def __init__(self, backup_dir: str):
        super().__init__(os.path.join(backup_dir, backup.LATEST), delete_checkpoint=False)
        self.root = backup_dir

    def on_epoch_end(self, epoch, logs=None):
        latest, previous = os.path.join(self.root, backup.LATEST), os.path.join(self.root, backup.PREVIOUS)
        partial = latest + ".partial"
        files.remove(partial)
        os.makedirs(partial)
        self.model.save_weights(os.path.join(partial, backup.KERAS3_WEIGHTS))
        with open(os.path.join(partial, backup.KERAS3_METADATA), "w") as f:
            json.dump({"epoch": epoch + 1, "batch": 0}, f)
        files.remove(previous)
        if os.path.exists(latest):
            os.rename(latest, previous)
        os.rename(partial, latest)


def _set_determinism(backend: str, on: bool) -> bool:
    """Sets deterministic ops on `backend` and returns the setting it had."""
    if backend == "tensorflow":
        import tensorflow as tf
        from tensorflow.python.framework import config as tf_config  # disable_op_determinism has no public name

        was = tf_config.is_op_determinism_enabled()
        tf.config.experimental.enable_op_determinism() if on else tf_config.disable_op_determinism()
        return was
    if backend == "torch":
        import torch

        was = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(on)
        return was
    return on  # JAX's CPU computations are deterministic; on GPU set XLA_FLAGS=--xla_gpu_deterministic_ops=true


@contextlib.contextmanager
def session(config: ml_collections.ConfigDict, strategy: Any) -> Iterator[None]:
    """A fresh Keras session seeded by the config, with its precision policy and deterministic ops,
    under `strategy` (a `keras.distribution.Distribution`, or None); the caller's policy and
    determinism are restored afterwards."""
    policy = keras.config.dtype_policy()
    deterministic = None
    try:
        keras.backend.clear_session()
        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            deterministic = _set_determinism(config.backend, True)
        keras.config.set_dtype_policy("mixed_float16" if config.mixed_precision else "float32")
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            yield
    finally:
        keras.config.set_dtype_policy(policy)
        if deterministic is not None:
            _set_determinism(config.backend, deterministic)


def make_strategy(config: ml_collections.ConfigDict) -> keras.distribution.DataParallel | None:
    """`keras.distribution.DataParallel` over every local device for `data_parallel` (each batch split
    over them; one process, so it is the chief), else None (one device)."""
    return keras.distribution.DataParallel() if config.distribution == "data_parallel" else None


def replicas(strategy: keras.distribution.DataParallel | None) -> int:
    return 1 if strategy is None else int(strategy.device_mesh.devices.size)


def check_inputs(data, batch_size: int, strategy: keras.distribution.DataParallel | None) -> None:
    """Refuses, before anything trains, batches that `strategy` cannot split evenly over its devices."""
    devices = replicas(strategy)
    last = data.eval_examples % batch_size
    if devices > 1 and (batch_size % devices or last % devices):
        raise ValueError(
            f"`batch_size` must split evenly over the {devices} devices of distribution='data_parallel', and so must "
            f"the last evaluation batch ({data.eval_examples} examples in batches of {batch_size} leave {last}). "
            f"Received: batch_size={batch_size}"
        )


def check_callback(callback: Any) -> None:
    if not isinstance(callback, keras.callbacks.Callback):
        raise TypeError(f"`callbacks` must hold Keras 3 `Callback`s. Received: {callback!r}")


def prunable(model: keras.Model) -> keras.Model:
    return masking.prunable(model, verbose=0)


def compile_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    # JAX always compiles its step (jit); `xla` is XLA on TensorFlow and torch.compile on PyTorch.
    return {"jit_compile": True if config.backend == "jax" else config.xla}


def train_inputs(data, batch_size: int, first_epoch: int, epochs: int):
    return data.train(batch_size, first_epoch, epochs)


def evaluation_inputs(data, batch_size: int):
    return data.evaluation(batch_size)


def logging_callbacks(workdir: str, pruning: bool) -> list[keras.callbacks.Callback]:
    """metrics.csv (IMPCallback's `learning_rate` as its `lr` column), and TensorBoard's scalars on TensorFlow."""
    callbacks = [MetricsLogger(os.path.join(workdir, rundir.METRICS), renames={"learning_rate": "lr"})]
    if keras.backend.backend() == "tensorflow":
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(workdir, rundir.TENSORBOARD), write_graph=False))
    return callbacks


def backup_callbacks(backup_dir: str) -> list[keras.callbacks.Callback]:
    return [Backup(backup_dir)]


def restore_last(model: keras.Model, backup_dir: str) -> None:
    """Loads the last backup into `model` (a run whose every epoch was backed up)."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    schedule = getattr(masking._inner(model.optimizer), "_learning_rate", None)
    if isinstance(schedule, adapter.RetrainSchedule):
        # As IMPCallback does before training: the backup holds ALLR's peaks among the optimizer's
        # variables, and without them Keras would skip loading the optimizer (and the plot its peaks).
        schedule.attach(model.optimizer)
    model.load_weights(os.path.join(backup_dir, backup.LATEST, backup.KERAS3_WEIGHTS))


def _left_out(config: ml_collections.ConfigDict, formats: tuple[str, ...]) -> list[str]:
    """Each format of the Keras 3 exporter that `formats` leaves out, with why."""
    from imp_keras.export import keras3 as exporter

    return [
        f"{format} ({exporter.refusal(format, config.backend) or 'it imports TensorFlow: name it in export_formats to write it'})"
        for format in exporter.FORMATS if format not in formats
    ]


def export(config: ml_collections.ConfigDict, model: keras.Model, directory: str, samples: np.ndarray, chief: bool, verbose: int):
    """The export report of the config's formats written into `directory`, each file checked on
    `samples`; with the "all" preset, says which formats it left out and why."""
    formats = experiment.export_formats(config)
    left_out = _left_out(config, formats) if tuple(config.export_formats) == ("all",) else []
    if verbose and left_out:
        print(f"imp_keras: not exported on the {config.backend} backend: {'; '.join(left_out)}.")
    return adapter.export(model, directory, formats, sample_inputs=samples, verbose=min(verbose, 1))
