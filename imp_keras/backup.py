"""The trainer's backups: BackupAndRestore's checkpoint in `<backup>/chief`, the one before it in
`<backup>/previous`, and the choice of which to resume from.

BackupAndRestore keeps one checkpoint, replaced at the end of every epoch. On tf_keras,
`KeepPrevious` (in `imp_keras.train_tf_keras`), placed before it in the callback list, hard-links
(or copies) that TensorFlow checkpoint into `<backup>/previous` before it is replaced. On Keras 3,
whose checkpoint is `latest.weights.h5` with `training_metadata.json` (rewritten in place), the
trainer's BackupAndRestore writes each backup into a new folder that replaces `chief/`, the replaced
one becoming `previous/`. Either way a damaged latest checkpoint (a truncated or corrupt file, say
after a power cut) costs one epoch instead of the run: `restore_point` reads every tensor of the
latest checkpoint (TensorFlow's checksums included) and, if that fails, moves it to
`<backup>/damaged` and puts the previous one in its place. TensorFlow is imported only for tf_keras
checkpoints.
"""

import dataclasses
import json
import os
import shutil

from imp_keras import files

__all__ = [
    "BackupError",
    "KERAS3_METADATA",
    "KERAS3_WEIGHTS",
    "LATEST",
    "PREVIOUS",
    "RestorePoint",
    "checkpoint_files",
    "latest_checkpoint",
    "restore_point",
    "saved_epoch",
]

LATEST = "chief"
PREVIOUS = "previous"
_DAMAGED = "damaged"
_STATE = "checkpoint"  # tf.train.CheckpointManager's list of checkpoints
_EPOCH_KEY = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"
# keras.callbacks.BackupAndRestore's files (Keras 3).
KERAS3_WEIGHTS = "latest.weights.h5"
KERAS3_METADATA = "training_metadata.json"


class BackupError(RuntimeError):
    """The backups of an unfinished run cannot be read; the message says what to do."""


class _Damaged(Exception):
    pass


def checkpoint_files(directory: str) -> list[str]:
    """The checkpoint files in `directory`: the state file, indexes and data shards (not the
    `*_temp` folder a save killed halfway leaves), or Keras 3's weights and metadata."""
    names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    return [n for n in names if n in (_STATE, KERAS3_WEIGHTS, KERAS3_METADATA) or n.endswith(".index") or ".data-" in n]


def _checked_epoch(directory: str) -> int | None:
    """The epoch of the checkpoint in `directory` after reading every tensor of it; None when the
    directory holds no files. Raises `_Damaged` when it holds files but no readable checkpoint."""
    names = checkpoint_files(directory)
    if not names:
        return None
    if KERAS3_WEIGHTS in names or KERAS3_METADATA in names:
        return _checked_keras3_epoch(directory)
    import tensorflow as tf  # a tf_keras checkpoint

    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        raise _Damaged(
            f"{directory} holds files but no checkpoint TensorFlow can find (its `{_STATE}` file or index is missing or damaged)"
        )
    try:
        reader = tf.train.load_checkpoint(latest)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)  # checks the stored checksum
        return int(reader.get_tensor(_EPOCH_KEY))
    except Exception as e:  # a damaged file fails in TensorFlow's reader in many ways (OpError, IndexError, ...)
        raise _Damaged(f"{latest} cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e


def _checked_keras3_epoch(directory: str) -> int:
    """The last epoch of Keras 3's backup in `directory` after reading its metadata and every array
    of its weights file (HDF5 keeps no checksums: truncation and broken structure are what show)."""
    import h5py  # Keras 3 writes its weights with it

    weights, metadata = os.path.join(directory, KERAS3_WEIGHTS), os.path.join(directory, KERAS3_METADATA)
    try:
        with open(metadata) as f:
            epoch = json.load(f)["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(f"its epoch is {epoch!r}")
        with h5py.File(weights, "r") as store:
            store.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except Exception as e:  # missing, truncated or foreign files fail in json, h5py or HDF5 in many ways
        raise _Damaged(f"the backup in {directory} cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    return epoch - 1  # the metadata holds the epoch to continue at


def latest_checkpoint(backup_dir: str) -> str | None:
    """The TensorFlow checkpoint tf_keras' BackupAndRestore keeps in `backup_dir` (its latest), None without one."""
    import tensorflow as tf

    return tf.train.latest_checkpoint(os.path.join(backup_dir, LATEST))


def saved_epoch(backup_dir: str) -> int | None:
    """The last epoch backed up in `backup_dir` (BackupAndRestore's checkpoint, either Keras), None without one."""
    try:
        return _checked_epoch(os.path.join(backup_dir, LATEST))
    except _Damaged:
        return None


@dataclasses.dataclass(frozen=True)
class RestorePoint:
    """Where an unfinished run continues: `epoch`, the first epoch to train (0 without a backup),
    and `fell_back`, what was damaged when the previous backup had to be used ('' otherwise)."""

    epoch: int
    fell_back: str = ""


def restore_point(backup_dir: str, chief: bool = True) -> RestorePoint:
    """Checks the latest backup in `backup_dir`; if it is damaged, falls back to the previous one.

    Only the chief moves files; another worker refuses a damaged backup.

    Raises:
      BackupError: the latest backup is damaged and there is no good previous one.
    """
    latest_dir, previous_dir = os.path.join(backup_dir, LATEST), os.path.join(backup_dir, PREVIOUS)
    damage = ""
    try:
        epoch = _checked_epoch(latest_dir)
    except _Damaged as e:
        epoch, damage = None, str(e)
    if epoch is not None:
        return RestorePoint(epoch + 1)
    stuck = (
        f"The run cannot continue: start it afresh in a new workdir (or move {backup_dir} and the files of finished "
        "epochs away)."
    )
    try:
        previous = _checked_epoch(previous_dir)
    except _Damaged as e:
        raise BackupError(
            f"The backup of this run is damaged: {damage or f'{latest_dir} is missing'}; and so is the previous one: {e}. {stuck}"
        ) from None
    if previous is None:
        if damage:
            raise BackupError(f"The backup of this run is damaged: {damage}; there is no previous backup to fall back to. {stuck}")
        return RestorePoint(0)
    if not chief:
        raise BackupError(
            f"The latest backup is damaged or missing ({damage or latest_dir}); the chief falls back to the previous one, "
            "not this worker."
        )
    damaged_dir = os.path.join(backup_dir, _DAMAGED)
    shutil.rmtree(damaged_dir, ignore_errors=True)
    if os.path.exists(latest_dir):
        os.rename(latest_dir, damaged_dir)
    with files.replacing(latest_dir) as partial:
        shutil.copytree(previous_dir, partial)
    return RestorePoint(previous + 1, damage or f"{latest_dir} is missing")
