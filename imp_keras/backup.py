"""The trainer's backups: BackupAndRestore's checkpoint in `<backup>/chief`, the one before it in
`<backup>/previous`, and the choice of which to resume from.

BackupAndRestore keeps one checkpoint, replaced at the end of every epoch. `KeepPrevious`,
placed before it in the callback list, hard-links (or copies) that checkpoint into
`<backup>/previous` before it is replaced, so that a damaged latest checkpoint (a truncated or
corrupt file, say after a power cut) costs one epoch instead of the run: `restore_point` reads
every tensor of the latest checkpoint (checksums included) and, if that fails, moves it to
`<backup>/damaged` and puts the previous one in its place.
"""

import dataclasses
import os
import shutil

import tensorflow as tf

from imp_keras import distribution, files
from imp_keras.tf_keras._keras import keras

__all__ = ["BackupError", "KeepPrevious", "RestorePoint", "latest_checkpoint", "restore_point", "saved_epoch"]

_LATEST = "chief"
_PREVIOUS = "previous"
_DAMAGED = "damaged"
_STATE = "checkpoint"  # tf.train.CheckpointManager's list of checkpoints
_EPOCH_KEY = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"


class BackupError(RuntimeError):
    """The backups of an unfinished run cannot be read; the message says what to do."""


class _Damaged(Exception):
    pass


def _checkpoint_files(directory: str) -> list[str]:
    """The checkpoint files in `directory`: the state file, indexes and data shards (not the
    `*_temp` folder a save killed halfway leaves)."""
    names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
    return [n for n in names if n == _STATE or n.endswith(".index") or ".data-" in n]


def _checked_epoch(directory: str) -> int | None:
    """The epoch of the checkpoint in `directory` after reading every tensor of it; None when the
    directory holds no files. Raises `_Damaged` when it holds files but no readable checkpoint."""
    if not _checkpoint_files(directory):
        return None
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


def latest_checkpoint(backup_dir: str) -> str | None:
    """The checkpoint BackupAndRestore keeps in `backup_dir` (its latest), None without one."""
    return tf.train.latest_checkpoint(os.path.join(backup_dir, _LATEST))


def saved_epoch(backup_dir: str) -> int | None:
    """The last epoch backed up in `backup_dir` (BackupAndRestore's checkpoint), None without one."""
    latest = latest_checkpoint(backup_dir)
    return None if latest is None else int(tf.train.load_checkpoint(latest).get_tensor(_EPOCH_KEY))


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
    latest_dir, previous_dir = os.path.join(backup_dir, _LATEST), os.path.join(backup_dir, _PREVIOUS)
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


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


class KeepPrevious(keras.callbacks.Callback):
    """Keeps BackupAndRestore's checkpoint in `<backup_dir>/previous` before BackupAndRestore
    replaces it; must come before BackupAndRestore in the callback list. Only the chief writes."""

    def __init__(self, backup_dir: str):
        super().__init__()
        self.backup_dir = backup_dir

    def on_epoch_end(self, epoch, logs=None):
        if not distribution.is_chief(self.model.distribute_strategy):
            return
        latest_dir = os.path.join(self.backup_dir, _LATEST)
        latest = tf.train.latest_checkpoint(latest_dir)
        if latest is None:
            return
        prefix = os.path.basename(latest)
        with files.replacing(os.path.join(self.backup_dir, _PREVIOUS)) as partial:
            os.makedirs(partial)
            for name in _checkpoint_files(latest_dir):
                if name == _STATE or name.startswith(prefix + "."):
                    _link_or_copy(os.path.join(latest_dir, name), os.path.join(partial, name))
