"""What `imp_keras.train` does with tf_keras (Keras 2 and tfmot, on TensorFlow): its session
settings, tf.distribute strategy, tf.data inputs, callbacks, backups and export."""

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import Any

import ml_collections
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # disable_op_determinism has no public name

import imp_keras.tf_keras as adapter
from imp_keras import backup, distribution, experiment, files, rundir
from imp_keras.export.tf_keras import export as _export
from imp_keras.tf_keras import masking
from imp_keras.tf_keras._keras import keras, require_tf_keras
from imp_keras.tf_keras.report import sparsity_report
from imp_keras.tf_keras.schedules import learning_rates

__all__ = [
    "UNAVAILABLE",
    "DenseLogs",
    "DenseSnapshot",
    "KeepPrevious",
    "LayerSparsityLogger",
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

# What a worker of a multi-worker cluster raises when it lost contact with another.
UNAVAILABLE: tuple[type[Exception], ...] = (tf.errors.UnavailableError,)


class MetricsLogger(rundir.MetricsLogging, keras.callbacks.Callback):
    pass


class DenseLogs(rundir.DenseLogging, keras.callbacks.Callback):
    masking = masking


class DenseSnapshot(rundir.DenseSnapshotting, keras.callbacks.Callback):
    masking = masking


class LayerSparsityLogger(keras.callbacks.Callback):
    """Per-layer sparsity as TensorBoard scalars `sparsity/<tensor>`, every epoch."""

    def __init__(self, log_dir: str):
        super().__init__()
        self.log_dir = log_dir
        self._writer = None

    def on_train_begin(self, logs=None):
        if distribution.is_chief(self.model.distribute_strategy):
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            return
        report = sparsity_report(self.model)
        with self._writer.as_default(step=epoch):
            for layer in report.layers:
                tf.summary.scalar(f"sparsity/{layer.name}", layer.sparsity)
            tf.summary.scalar("sparsity/global", report.sparsity)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


class KeepPrevious(keras.callbacks.Callback):
    """Keeps BackupAndRestore's checkpoint in `<backup_dir>/previous` before BackupAndRestore
    replaces it; must come before BackupAndRestore in the callback list. Only the chief writes.
    TensorFlow writes every checkpoint under a new name, so hard links keep the previous one."""

    def __init__(self, backup_dir: str):
        super().__init__()
        self.backup_dir = backup_dir

    def on_epoch_end(self, epoch, logs=None):
        if not distribution.is_chief(self.model.distribute_strategy):
            return
        latest_dir = os.path.join(self.backup_dir, backup.LATEST)
        latest = tf.train.latest_checkpoint(latest_dir)
        if latest is None:
            return
        prefix = os.path.basename(latest)
        with files.replacing(os.path.join(self.backup_dir, backup.PREVIOUS)) as partial:
            os.makedirs(partial)
            for name in backup.checkpoint_files(latest_dir):
                if name == "checkpoint" or name.startswith(prefix + "."):
                    _link_or_copy(os.path.join(latest_dir, name), os.path.join(partial, name))


@contextlib.contextmanager
def session(config: ml_collections.ConfigDict, strategy: tf.distribute.Strategy) -> Iterator[None]:
    """A fresh Keras session seeded by the config, with its precision policy and op determinism;
    the caller's policy and determinism are restored afterwards. `strategy`'s scope is entered
    where the model is built (`imp_keras.train`)."""
    policy = keras.mixed_precision.global_policy()
    deterministic = tf_config.is_op_determinism_enabled()
    try:
        keras.backend.clear_session()
        keras.utils.set_random_seed(config.seed)
        if config.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.mixed_precision.set_global_policy("mixed_float16" if config.mixed_precision else "float32")
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
        if not deterministic:
            tf_config.disable_op_determinism()


def make_strategy(config: ml_collections.ConfigDict) -> tf.distribute.Strategy:
    return distribution.make_strategy(config.distribution)


def replicas(strategy: tf.distribute.Strategy) -> int:
    return strategy.num_replicas_in_sync


def check_inputs(data, batch_size: int, strategy: tf.distribute.Strategy) -> None:
    """Nothing to refuse: tf.distribute splits any batch, a partial last one included."""


def check_callback(callback: Any) -> None:
    require_tf_keras(callback, "callbacks", keras.callbacks.Callback)


def prunable(model: keras.Model) -> keras.Model:
    return masking.prunable(model)


def compile_options(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return {"jit_compile": config.xla}


def _sharded(dataset: tf.data.Dataset) -> tf.data.Dataset:
    # In-memory data has no files to shard by; each worker takes its share of every batch.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def train_inputs(data, batch_size: int, first_epoch: int, epochs: int) -> tf.data.Dataset:
    return _sharded(data.train(batch_size, first_epoch, epochs))


def evaluation_inputs(data, batch_size: int) -> tf.data.Dataset:
    return _sharded(data.evaluation(batch_size))


def logging_callbacks(workdir: str, pruning: bool) -> list[keras.callbacks.Callback]:
    """metrics.csv, TensorBoard's scalars and (when pruning) per-layer sparsity."""
    callbacks = [
        MetricsLogger(os.path.join(workdir, rundir.METRICS)),
        keras.callbacks.TensorBoard(os.path.join(workdir, rundir.TENSORBOARD), write_graph=False, profile_batch=0),
    ]
    if pruning:
        callbacks.append(LayerSparsityLogger(os.path.join(workdir, rundir.TENSORBOARD, "sparsity")))
    return callbacks


def backup_callbacks(backup_dir: str) -> list[keras.callbacks.Callback]:
    return [KeepPrevious(backup_dir), keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)]


def restore_last(model: keras.Model, backup_dir: str) -> None:
    """Loads the last backup into `model` (a run whose every epoch was backed up)."""
    tf.train.Checkpoint(model=model).restore(backup.latest_checkpoint(backup_dir)).expect_partial()


def export(config: ml_collections.ConfigDict, model: keras.Model, directory: str, samples: np.ndarray, chief: bool, verbose: int):
    """The export report of the config's formats written into `directory` (latency on the chief only)."""
    return _export(
        model, directory, formats=experiment.export_formats(config), representative_data=samples,
        latency_runs=config.export_latency_runs if chief else 0, verbose=min(verbose, 1) if chief else 0,
    )

