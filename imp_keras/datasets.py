"""The datasets of the experiments as NumPy arrays: what each dataset is, and its original files
read without TensorFlow. `imp_keras.data` (tf.data) and `imp_keras.numpy_data` (NumPy batches for
Keras 3 on any backend) build their pipelines on these.

Files (the "files" source): the four gzip-compressed IDX files of MNIST or Fashion-MNIST; for CIFAR
the python or binary archive (`cifar-10-python.tar.gz`, `cifar-10-binary.tar.gz`,
`cifar-100-python.tar.gz`, `cifar-100-binary.tar.gz`) or the folder it unpacks to. The python
batches are read with an unpickler that builds numpy arrays and plain containers only, so a
tampered archive cannot run code. A missing file is a `FileNotFoundError` and a truncated or
foreign one a `ValueError`, both naming the path and what was expected.
"""

from collections.abc import Callable
import dataclasses
import functools
import gzip
import io
import numbers
import os
import pickle
import tarfile
from typing import Any
import zlib

import numpy as np

from imp_keras.core.checks import check_int

__all__ = [
    "DATASETS",
    "IDX_FILES",
    "INFO",
    "INPUT_SHAPES",
    "SOURCES",
    "DatasetInfo",
    "check_load_arguments",
    "load_cifar",
    "load_idx",
    "load_idx_dataset",
    "read_files",
    "steps_per_epoch",
    "synthetic",
    "validation_count",
    "validation_mask",
]

DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet2012")
SOURCES = ("files", "tfds", "synthetic")

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# ---------------------------------------------------------------------------------------------------
# Original files: IDX (MNIST, Fashion-MNIST)


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one gzip-compressed IDX file: images as uint8 [count, rows, cols], labels as uint8 [count]."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a readable gzip file ({e}); expected a gzip-compressed IDX file.") from e
    if len(raw) < 8:
        raise ValueError(f"{path}: {len(raw)} bytes is too short for an IDX header.")
    magic, count = np.frombuffer(raw[:8], dtype=">u4")
    if magic == _IMAGES_MAGIC:
        if len(raw) < 16:
            raise ValueError(f"{path}: truncated IDX image header.")
        rows, cols = np.frombuffer(raw[8:16], dtype=">u4")
        shape, offset = (int(count), int(rows), int(cols)), 16
    elif magic == _LABELS_MAGIC:
        shape, offset = (int(count),), 8
    else:
        raise ValueError(
            f"{path}: magic number {int(magic)} is neither {_IMAGES_MAGIC} (IDX images) nor {_LABELS_MAGIC} (IDX labels)."
        )
    expected = int(np.prod(shape))
    if len(raw) - offset != expected:
        raise ValueError(
            f"{path}: header announces {expected} values of shape {shape} but the file holds {len(raw) - offset} "
            "(truncated or corrupt)."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def load_idx_dataset(data_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Loads MNIST or Fashion-MNIST from `data_dir` holding the four original IDX files.

    Returns:
      {"train": (images, labels), "test": (images, labels)}, images uint8 [n, 28, 28], labels uint8 [n].
    """
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"Data directory not found: {data_dir} (expected the four IDX files: "
            f"{', '.join(name for pair in IDX_FILES.values() for name in pair)})."
        )
    splits = {}
    for split, (images_name, labels_name) in IDX_FILES.items():
        images = load_idx(os.path.join(data_dir, images_name))
        labels = load_idx(os.path.join(data_dir, labels_name))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{data_dir}: {split} images {images.shape} and labels {labels.shape} do not match "
                "(expected [n, rows, cols] images and [n] labels)."
            )
        splits[split] = (images, labels)
    return splits


# ---------------------------------------------------------------------------------------------------
# Original files: CIFAR python and binary archives

_CIFAR_PIXELS = 32 * 32 * 3

# numpy's array-unpickling function, wherever this numpy version keeps it (numpy.core or numpy._core).
_NDARRAY_RECONSTRUCT = np.empty(0).__reduce__()[0]

# The globals a CIFAR python batch refers to (pickled by Python 2 with numpy 1): the uint8 `data` array.
_CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _NDARRAY_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _CifarUnpickler(pickle.Unpickler):
    """Builds dicts, lists, bytes, numbers and numpy arrays; refuses every other global, so no code runs."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _CIFAR_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused global {module}.{name}: a CIFAR batch holds only a dict of lists, bytes and a "
                "numpy uint8 array"
            ) from None


def _parse_pickled_batch(raw: bytes, where: str, labels_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    expected = f"a pickled dict with b'data' (uint8 [n, {_CIFAR_PIXELS}]) and {labels_key!r} (n labels)"
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # a damaged pickle can fail in any of pickle's or numpy's constructors
        raise ValueError(f"{where}: not a readable CIFAR python batch ({type(e).__name__}: {e}); expected {expected}.") from e
    if not isinstance(batch, dict) or b"data" not in batch or labels_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{where}: holds {keys}; expected {expected}.")
    images, labels = batch[b"data"], np.asarray(batch[labels_key])
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != _CIFAR_PIXELS:
        shape = getattr(images, "shape", None)
        raise ValueError(f"{where}: b'data' is {type(images).__name__} {shape}; expected {expected}.")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{where}: {labels_key!r} holds {labels.shape} {labels.dtype} values; expected {expected}.")
    return images, labels


def _parse_binary_batch(raw: bytes, where: str, label_bytes: int) -> tuple[np.ndarray, np.ndarray]:
    record = label_bytes + _CIFAR_PIXELS
    if not raw or len(raw) % record:
        raise ValueError(
            f"{where}: {len(raw)} bytes is not a whole number of {record}-byte records ({label_bytes} label "
            f"byte{'s' if label_bytes > 1 else ''} + {_CIFAR_PIXELS} pixel bytes); truncated or not a CIFAR binary batch."
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
    # CIFAR-100 records start with the coarse label; the fine label is the last label byte.
    return records[:, label_bytes:], records[:, label_bytes - 1]


@dataclasses.dataclass(frozen=True)
class _CifarFormat:
    """One published form of a CIFAR dataset: the archive, the folder it unpacks to, and its batches."""

    archive: str
    folder: str
    train_batches: tuple[str, ...]
    test_batches: tuple[str, ...]
    parse: Callable[[bytes, str], tuple[np.ndarray, np.ndarray]]

    def read(self, data_dir: str) -> dict[str, list[tuple[str, bytes]]]:
        """Each split's batches as (path to name in errors, raw bytes), from the folder or else the archive."""
        members = {split: [f"{self.folder}/{batch}" for batch in batches]
                   for split, batches in (("train", self.train_batches), ("test", self.test_batches))}
        every_member = members["train"] + members["test"]
        if os.path.isdir(os.path.join(data_dir, self.folder)):
            contents = {member: _read_file(os.path.join(data_dir, member), every_member) for member in every_member}
            where = {member: os.path.join(data_dir, member) for member in every_member}
        else:
            archive = os.path.join(data_dir, self.archive)
            contents = _read_archive(archive, every_member)
            where = {member: f"{archive} member {member}" for member in every_member}
        return {split: [(where[member], contents[member]) for member in names] for split, names in members.items()}

    def present(self, data_dir: str) -> bool:
        return os.path.isdir(os.path.join(data_dir, self.folder)) or os.path.isfile(os.path.join(data_dir, self.archive))


def _read_file(path: str, expected: list[str]) -> bytes:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CIFAR batch not found: {path} (expected {', '.join(expected)}).")
    with open(path, "rb") as f:
        return f.read()


def _read_archive(path: str, members: list[str]) -> dict[str, bytes]:
    """Reads the named regular-file members of a tar.gz in one pass, without extracting anything to disk."""
    contents = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if member.name in members and member.isfile():
                    contents[member.name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ValueError(f"{path}: not a readable tar.gz archive ({e}); truncated or corrupt.") from e
    missing = [name for name in members if name not in contents]
    if missing:
        raise ValueError(
            f"{path}: no member {', '.join(missing)}; expected the original archive with {', '.join(members)}."
        )
    return contents


_CIFAR_FORMATS = {
    "cifar10": (
        _CifarFormat("cifar-10-python.tar.gz", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                     ("test_batch",), functools.partial(_parse_pickled_batch, labels_key=b"labels")),
        _CifarFormat("cifar-10-binary.tar.gz", "cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                     ("test_batch.bin",), functools.partial(_parse_binary_batch, label_bytes=1)),
    ),
    "cifar100": (
        _CifarFormat("cifar-100-python.tar.gz", "cifar-100-python", ("train",), ("test",),
                     functools.partial(_parse_pickled_batch, labels_key=b"fine_labels")),
        _CifarFormat("cifar-100-binary.tar.gz", "cifar-100-binary", ("train.bin",), ("test.bin",),
                     functools.partial(_parse_binary_batch, label_bytes=2)),
    ),
}


def load_cifar(data_dir: str | os.PathLike, name: str = "cifar10") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Loads CIFAR-10 or CIFAR-100 (fine labels) from the original python or binary archive in `data_dir`.

    Looks, in this order, for the python version (folder, then archive) and the binary version (folder,
    then archive): `cifar-10-batches-py/`, `cifar-10-python.tar.gz`, `cifar-10-batches-bin/`,
    `cifar-10-binary.tar.gz`; for CIFAR-100 `cifar-100-python/`, `cifar-100-python.tar.gz`,
    `cifar-100-binary/`, `cifar-100-binary.tar.gz`. Archives are read in memory, never extracted.

    Args:
      data_dir: folder holding one of the archives or unpacked folders.
      name: "cifar10" or "cifar100".

    Returns:
      {"train": (images, labels), "test": (images, labels)}, images uint8 [n, 32, 32, 3] (HWC, RGB),
      labels uint8 [n].

    Raises:
      FileNotFoundError: `data_dir` holds none of them, or an unpacked folder lacks a batch.
      ValueError: an archive or batch is truncated, corrupt, or holds anything but CIFAR data.
    """
    if name not in _CIFAR_FORMATS:
        raise ValueError(f"`name` must be one of {tuple(_CIFAR_FORMATS)}. Received: name={name!r}")
    data_dir = os.fspath(data_dir)
    formats = _CIFAR_FORMATS[name]
    found = next((form for form in formats if form.present(data_dir)), None)
    if found is None:
        expected = ", ".join(f"{form.folder}/, {form.archive}" for form in formats)
        raise FileNotFoundError(f"No {name} data in {data_dir} (expected one of: {expected}).")
    classes = INFO[name].classes
    splits = {}
    for split, batches in found.read(data_dir).items():
        images, labels = zip(*(found.parse(raw, where) for where, raw in batches))
        for (where, _), batch_labels in zip(batches, labels):
            if batch_labels.size and not 0 <= batch_labels.min() <= batch_labels.max() < classes:
                raise ValueError(f"{where}: labels outside [0, {classes}); expected {name} labels.")
        images = np.concatenate(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        splits[split] = (np.ascontiguousarray(images), np.concatenate(labels).astype(np.uint8))
    return splits



# ---------------------------------------------------------------------------------------------------
# What each dataset is


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is and how its images are preprocessed (the paper's code, ZIB-IOL/BIMP `config.py`).

    raw_shape: one stored image (ImageNet's sizes vary; this is a typical one).
    input_shape: one network input.
    classes: number of classes.
    mean, std: per-channel normalisation of pixels scaled to [0, 1]; None for none.
    crop_padding: > 0: training images are randomly cropped back to their size after this many zero
      pixels of padding on every side, then flipped left-right at random (CIFAR).
    rotation_degrees: > 0: then rotated by a uniform angle in [-r, r] (CIFAR-100), nearest pixel.
    tfds_test_split: the split tfds evaluates on.
    """

    raw_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    classes: int
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    crop_padding: int = 0
    rotation_degrees: float = 0.0
    tfds_test_split: str = "test"


IMAGENET_SIZE = 224
# Means and standard deviations of the paper's code (ZIB-IOL/BIMP, config.py); ImageNet's are torchvision's.
# CIFAR-10's std there is the widely copied (0.2023, 0.1994, 0.2010), not the pixel std of its training
# set (about 0.247, 0.243, 0.261); kept to reproduce the paper's preprocessing.
INFO = {
    "mnist": DatasetInfo((28, 28, 1), (28, 28, 1), 10),
    "fashion_mnist": DatasetInfo((28, 28, 1), (28, 28, 1), 10),
    "cifar10": DatasetInfo((32, 32, 3), (32, 32, 3), 10, mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010),
                           crop_padding=4),
    "cifar100": DatasetInfo((32, 32, 3), (32, 32, 3), 100, mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761),
                            crop_padding=4, rotation_degrees=15.0),
    "imagenet2012": DatasetInfo((375, 500, 3), (IMAGENET_SIZE, IMAGENET_SIZE, 3), 1000, mean=(0.485, 0.456, 0.406),
                                std=(0.229, 0.224, 0.225), tfds_test_split="validation"),
}

INPUT_SHAPES = {name: info.input_shape for name, info in INFO.items()}


# ---------------------------------------------------------------------------------------------------
# Splits, sizes and arguments


def validation_count(count: int, validation_split: float, argument: str = "validation_split") -> int:
    """How many of `count` training examples `validation_split` holds out: round(validation_split * count).

    Raises:
      ValueError: that leaves no training or no validation example (`argument` names the split).
    """
    validation = round(validation_split * count)
    if not 0 < validation < count:
        raise ValueError(
            f"`{argument}` must leave at least one training and one validation example of the {count} "
            f"training examples. Received: {argument}={validation_split}"
        )
    return validation


def validation_mask(count: int, validation_split: float, seed: int) -> np.ndarray:
    """True for the round(validation_split * count) examples a `seed`-permutation puts first."""
    validation = validation_count(count, validation_split)
    is_validation = np.zeros(count, dtype=bool)
    is_validation[np.random.default_rng(seed).permutation(count)[:validation]] = True
    return is_validation



def read_files(name: str, data_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The original files of `name` in `data_dir`: {"train": (images, labels), "test": ...}, images
    uint8 [n, height, width, channels]."""
    if name == "imagenet2012":
        raise ValueError(
            "imagenet2012 cannot be read from the original files; prepare it with tensorflow-datasets and use "
            "source='tfds' with `data_dir` holding it. Received: name='imagenet2012', source='files'"
        )
    if name in _CIFAR_FORMATS:
        splits = load_cifar(data_dir, name)
    else:
        splits = load_idx_dataset(data_dir)
        for split, (images, labels) in splits.items():
            if images.shape[1:] != (28, 28) or (labels >= 10).any():
                raise ValueError(
                    f"{data_dir}: {split} images of shape {images.shape[1:]}, labels {sorted(set(labels.tolist()))}; "
                    f"expected {name}: 28x28 images, labels 0-9."
                )
        splits = {split: (images[..., None], labels) for split, (images, labels) in splits.items()}
    return splits



def synthetic(
    name: str, train_examples: int, seed: int, encode_jpeg: Callable[[np.ndarray], bytes] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Seeded random images of the dataset's raw shape and random labels: `train_examples` for
    training, a quarter of them (at least one) for testing. ImageNet images are JPEGs of varying
    size, between half and all the typical size, encoded by `encode_jpeg` (required for it)."""
    info = INFO[name]
    rng = np.random.default_rng(seed)
    splits = {}
    for split, count in (("train", train_examples), ("test", max(1, train_examples // 4))):
        labels = rng.integers(0, info.classes, count)
        if name == "imagenet2012":
            if encode_jpeg is None:
                raise ValueError("Synthetic imagenet2012 images are JPEGs: `encode_jpeg` is required for them.")
            shapes = rng.integers(np.array(info.raw_shape[:2]) // 2, info.raw_shape[:2], (count, 2), endpoint=True)
            images = np.array([encode_jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes], dtype=object)
        else:
            images = rng.integers(0, 256, (count, *info.raw_shape), dtype=np.uint8)
        splits[split] = (images, labels)
    return splits


def steps_per_epoch(train_examples: int, batch_size: int) -> int:
    """Batches per training epoch: train_examples // batch_size (the remainder is dropped)."""
    batch_size = check_int("batch_size", batch_size, 1)
    if batch_size > train_examples:
        raise ValueError(
            f"`batch_size` must be at most the {train_examples} training examples. Received: batch_size={batch_size}"
        )
    return train_examples // batch_size


def check_load_arguments(
    name: str, source: str, validation_split: Any, seed: Any, synthetic_examples: Any, max_examples: Any, **flags: Any
) -> None:
    """The checks of `load`'s arguments shared by both pipelines; `flags` are its bool arguments."""
    if name not in DATASETS:
        raise ValueError(f"`name` must be one of {DATASETS}. Received: name={name!r}")
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}. Received: source={source!r}")
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) or not 0 <= validation_split < 1:
        raise ValueError(f"`validation_split` must be in [0, 1). Received: validation_split={validation_split!r}")
    check_int("seed", seed, 0)
    check_int("synthetic_examples", synthetic_examples, 1)
    check_int("max_examples", max_examples, 0)
    for argument, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"`{argument}` must be a bool. Received: {argument}={value!r}")
