"""Image-classification data as deterministic tf.data pipelines, from tfds or from the original files.

    data = load("cifar10", source="files", data_dir="/data", validation_split=0.1)
    model.fit(data.train(128, epochs=200), steps_per_epoch=data.steps_per_epoch(128), epochs=200,
              validation_data=data.evaluation(512))

Every epoch is a pure function of (seed, epoch): its order comes from a stateless shuffle seeded by
(seed, epoch) and each example's augmentation from stateless random ops seeded by (seed, epoch,
example index). A run killed at epoch k and restarted with `train(..., first_epoch=k)` therefore sees
exactly the batches the uninterrupted run saw, also with `tf.config.experimental.enable_op_determinism()`.

Preprocessing follows the paper's code (Zimmer et al., github.com/ZIB-IOL/BIMP, `config.py`):
MNIST and Fashion-MNIST as float32 in [0, 1]; CIFAR normalised per channel, trained with a random
32x32 crop of the image padded by 4 zero pixels and a horizontal flip (CIFAR-100 also a rotation of
up to +-15 degrees); ImageNet trained with a random-resized crop to 224 and a flip, evaluated on the
central 224x224 crop of the image resized to a shorter side of 256.

Sources:
  "files": the original files in `data_dir`: the four gzip-compressed IDX files of MNIST or
    Fashion-MNIST; for CIFAR the python or binary archive (`cifar-10-python.tar.gz`,
    `cifar-10-binary.tar.gz`, `cifar-100-python.tar.gz`, `cifar-100-binary.tar.gz`) or the folder it
    unpacks to. The python batches are read with an unpickler that builds numpy arrays and plain
    containers only, so a tampered archive cannot run code.
  "tfds": a dataset prepared by tensorflow-datasets in `data_dir`, never downloaded.
  "synthetic": seeded random images of the dataset's raw shape and random labels, for quick runs.

A missing file is a `FileNotFoundError` and a truncated or foreign one a `ValueError`, both naming the
path and what was expected.
"""

from collections.abc import Callable
import dataclasses
import functools
import gzip
import io
import math
import numbers
import os
import pickle
import tarfile
from typing import Any
import zlib

import numpy as np
import tensorflow as tf

from imp_keras.core.checks import check_int

__all__ = [
    "DATASETS",
    "Data",
    "IDX_FILES",
    "INPUT_SHAPES",
    "SOURCES",
    "load",
    "load_cifar",
    "load_idx",
    "load_idx_dataset",
    "validation_count",
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
    classes = _SPECS[name].classes
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
# Preprocessing

_AUTOTUNE = tf.data.AUTOTUNE
_CIFAR_PADDING = 4
_IMAGENET_SIZE = 224
_IMAGENET_RESIZE = 256
# tfds' ImageNet files are shuffled when prepared; streaming reads reorder them within windows this long.
_SHUFFLE_WINDOW = 10_000


def _split_seed(seed: tf.Tensor, count: int) -> list[tf.Tensor]:
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _to_float(image: tf.Tensor) -> tf.Tensor:
    return tf.cast(image, tf.float32)


def _rotate(image: tf.Tensor, angle: tf.Tensor) -> tf.Tensor:
    """Rotates an HWC image by `angle` radians about its centre, nearest pixel, zeros outside (as torchvision)."""
    height, width = tf.unstack(tf.cast(tf.shape(image)[:2], tf.float32))
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Maps each output pixel (x, y) to the input pixel it is read from.
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2
    transform = tf.stack([cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform[None], output_shape=tf.shape(image)[:2], fill_value=0.0,
        interpolation="NEAREST", fill_mode="CONSTANT",
    )[0]


def _cifar_augment(image: tf.Tensor, seed: tf.Tensor, rotation_degrees: float = 0.0) -> tf.Tensor:
    """Random 32x32 crop of the image padded by 4 zero pixels, horizontal flip, optional rotation; float32."""
    crop_seed, flip_seed, rotation_seed = _split_seed(seed, 3)
    image = _to_float(image)
    padding = [[_CIFAR_PADDING, _CIFAR_PADDING], [_CIFAR_PADDING, _CIFAR_PADDING], [0, 0]]
    image = tf.image.stateless_random_crop(tf.pad(image, padding), tf.shape(image), crop_seed)
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    if rotation_degrees:
        angle = tf.random.stateless_uniform([], rotation_seed, -rotation_degrees, rotation_degrees) * (math.pi / 180)
        image = _rotate(image, angle)
    return image


def _imagenet_random_resized_crop(encoded: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Decodes a random crop (area 8-100 %, aspect ratio 3/4-4/3) of a JPEG, resized to 224x224 and flipped at random.

    TensorFlow's sampler draws the aspect ratio uniformly (torchvision: log-uniformly) and falls back to
    the whole image when 10 attempts fail (torchvision: a central crop).
    """
    crop_seed, flip_seed = _split_seed(seed, 2)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.io.extract_jpeg_shape(encoded), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=crop_seed,
        min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.io.decode_and_crop_jpeg(encoded, tf.stack([begin[0], begin[1], size[0], size[1]]), channels=3)
    image = tf.image.resize(crop, [_IMAGENET_SIZE, _IMAGENET_SIZE], antialias=True)
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def _imagenet_center_crop(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes a JPEG, resizes its shorter side to 256 (aspect kept) and takes the central 224x224; float32."""
    image = tf.io.decode_jpeg(encoded, channels=3)
    height, width = tf.unstack(tf.shape(image)[:2])
    shorter = tf.minimum(height, width)
    # As torchvision's Resize(256): the longer side is truncated, not rounded.
    new_height = tf.where(height == shorter, _IMAGENET_RESIZE, height * _IMAGENET_RESIZE // shorter)
    new_width = tf.where(width == shorter, _IMAGENET_RESIZE, width * _IMAGENET_RESIZE // shorter)
    image = tf.image.resize(image, tf.stack([new_height, new_width]), antialias=True)
    top = tf.cast(tf.round((new_height - _IMAGENET_SIZE) / 2), tf.int32)
    left = tf.cast(tf.round((new_width - _IMAGENET_SIZE) / 2), tf.int32)
    return image[top : top + _IMAGENET_SIZE, left : left + _IMAGENET_SIZE]


def _imagenet_center_crops(encoded: tf.Tensor) -> tf.Tensor:
    return tf.map_fn(_imagenet_center_crop, encoded, fn_output_signature=tf.float32)


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What a dataset is and how its raw examples (uint8 images; JPEG bytes for ImageNet) become inputs."""

    raw_shape: tuple[int, ...]  # ImageNet's sizes vary; this is a typical one
    input_shape: tuple[int, ...]
    classes: int
    decode: Callable[[tf.Tensor], tf.Tensor] = _to_float  # raw batch to float32 pixels in [0, 255], unaugmented
    augment: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None  # (raw example, seed) to float32 pixels
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    tfds_test_split: str = "test"

    def inputs(self, raws: tf.Tensor, indices: tf.Tensor | None = None, augment_seed: tf.Tensor | None = None) -> tf.Tensor:
        """A batch of network inputs: scaled to [0, 1], normalised if the dataset has a mean and std.

        Given `augment_seed`, the example of index i is augmented with the stateless seed
        fold_in(augment_seed, i); otherwise it is only decoded.
        """
        if augment_seed is None or self.augment is None:
            images = self.decode(raws)
        else:
            images = tf.map_fn(
                lambda example: self.augment(example[0], tf.random.experimental.stateless_fold_in(augment_seed, example[1])),
                (raws, indices), fn_output_signature=tf.float32,
            )
        images = images / 255.0
        if self.mean is not None:
            images = (images - tf.constant(self.mean)) / tf.constant(self.std)
        return tf.ensure_shape(images, (None, *self.input_shape))


# Means and standard deviations of the paper's code (ZIB-IOL/BIMP, config.py); ImageNet's are torchvision's.
# CIFAR-10's std there is the widely copied (0.2023, 0.1994, 0.2010), not the pixel std of its training
# set (about 0.247, 0.243, 0.261); kept to reproduce the paper's preprocessing.
_SPECS = {
    "mnist": _Spec((28, 28, 1), (28, 28, 1), 10),
    "fashion_mnist": _Spec((28, 28, 1), (28, 28, 1), 10),
    "cifar10": _Spec((32, 32, 3), (32, 32, 3), 10, augment=_cifar_augment,
                     mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010)),
    "cifar100": _Spec((32, 32, 3), (32, 32, 3), 100, augment=functools.partial(_cifar_augment, rotation_degrees=15.0),
                      mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761)),
    "imagenet2012": _Spec((375, 500, 3), (_IMAGENET_SIZE, _IMAGENET_SIZE, 3), 1000, decode=_imagenet_center_crops,
                          augment=_imagenet_random_resized_crop, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                          tfds_test_split="validation"),
}

INPUT_SHAPES = {name: spec.input_shape for name, spec in _SPECS.items()}


# ---------------------------------------------------------------------------------------------------
# Example sources: held in memory (exact permutation per epoch) or streamed (windowed permutation)


class _InMemory:
    """Decoded examples held in memory; each epoch is an exact stateless permutation of them."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self._images, self._labels = images, labels.astype(np.int32)
        self.count = len(labels)

    @functools.cached_property
    def _tensors(self) -> tuple[tf.Tensor, tf.Tensor]:
        # Eager tensors, made once and captured by every pipeline, even when first asked for while tracing one.
        with tf.init_scope():
            return tf.constant(self._images), tf.constant(self._labels)

    def split(self, is_validation: np.ndarray) -> tuple["_InMemory", "_InMemory"]:
        return (_InMemory(self._images[~is_validation], self._labels[~is_validation]),
                _InMemory(self._images[is_validation], self._labels[is_validation]))

    def first(self, count: int) -> "_InMemory":
        return _InMemory(self._images[:count], self._labels[:count])

    def shuffled(self, seed: tf.Tensor) -> tf.data.Dataset:
        """(index, raw, label) in the order of a stateless permutation drawn from `seed`."""
        images, labels = self._tensors
        order = tf.random.experimental.stateless_shuffle(tf.range(self.count, dtype=tf.int64), seed)
        return tf.data.Dataset.from_tensor_slices((order, tf.gather(images, order), tf.gather(labels, order)))

    def in_order(self) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(self._tensors)


class _Stream:
    """Examples read from tfds files in their fixed order; an epoch permutes them within windows."""

    def __init__(self, dataset: tf.data.Dataset, selected: np.ndarray):
        self._dataset, self._selected = dataset, selected
        self.count = int(selected.sum())

    def split(self, is_validation: np.ndarray) -> tuple["_Stream", "_Stream"]:
        return _Stream(self._dataset, self._selected & ~is_validation), _Stream(self._dataset, self._selected & is_validation)

    def first(self, count: int) -> "_Stream":
        return _Stream(self._dataset, self._selected & (np.cumsum(self._selected) <= count))

    def _indexed(self) -> tf.data.Dataset:
        selected = tf.constant(self._selected)
        return (
            self._dataset.enumerate()
            .filter(lambda index, example: selected[index])
            .map(lambda index, example: (index, example[0], tf.cast(example[1], tf.int32)))
        )

    def shuffled(self, seed: tf.Tensor) -> tf.data.Dataset:
        """(index, raw, label), each window of examples permuted by a stateless shuffle drawn from `seed`."""

        def permute(window_number, window):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(window[0])[0]), tf.random.experimental.stateless_fold_in(seed, window_number)
            )
            return tuple(tf.gather(part, order) for part in window)

        windows = self._indexed().batch(_SHUFFLE_WINDOW).enumerate()
        return windows.map(permute).unbatch()

    def in_order(self) -> tf.data.Dataset:
        return self._indexed().map(lambda index, raw, label: (raw, label))


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


def _validation_mask(count: int, validation_split: float, seed: int) -> np.ndarray:
    """True for the round(validation_split * count) examples a `seed`-permutation puts first."""
    validation = validation_count(count, validation_split)
    is_validation = np.zeros(count, dtype=bool)
    is_validation[np.random.default_rng(seed).permutation(count)[:validation]] = True
    return is_validation


# ---------------------------------------------------------------------------------------------------
# Sources


def _from_files(name: str, data_dir: str) -> tuple[_InMemory, _InMemory]:
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
    return _InMemory(*splits["train"]), _InMemory(*splits["test"])


def _from_tfds(name: str, data_dir: str | None, cache: bool) -> tuple[_InMemory | _Stream, _InMemory | _Stream]:
    import tensorflow_datasets as tfds  # slow to import; only this source needs it

    spec = _SPECS[name]
    splits = ["train", spec.tfds_test_split]
    decoders = {"image": tfds.decode.SkipDecoding()} if name == "imagenet2012" else None
    try:
        datasets = tfds.load(name, split=splits, data_dir=data_dir, download=False, as_supervised=True,
                             shuffle_files=False, decoders=decoders)
    except AssertionError as e:  # tfds' "could not find data"; without download=False it would retry for minutes
        place = data_dir or "the tfds default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
        manual = (" imagenet2012 also needs ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in "
                  "<data_dir>/downloads/manual to build.") if name == "imagenet2012" else ""
        raise FileNotFoundError(
            f"tfds dataset {name!r} is not prepared in {place}; imp_keras loads it with download=False and never "
            f"downloads. Build it where there is internet (`tfds build {name} --data_dir=<data_dir>`) and copy "
            f"<data_dir>/{name}/ into {place}.{manual}"
        ) from e
    sources = []
    for split, dataset in zip(splits, datasets):
        count = int(dataset.cardinality())
        if count < 0:
            raise ValueError(f"tfds {name} split {split!r} in {data_dir} does not know its size; expected a prepared dataset.")
        if name == "imagenet2012" or not cache:
            sources.append(_Stream(dataset, np.ones(count, dtype=bool)))
        else:
            images, labels = dataset.batch(count).get_single_element()
            sources.append(_InMemory(images.numpy(), labels.numpy()))
    return sources[0], sources[1]


def _synthetic(name: str, train_examples: int, seed: int) -> tuple[_InMemory, _InMemory]:
    spec = _SPECS[name]
    rng = np.random.default_rng(seed)
    sources = []
    for count in (train_examples, max(1, train_examples // 4)):
        labels = rng.integers(0, spec.classes, count)
        if name == "imagenet2012":
            # ImageNet images are JPEGs of varying size: encode random ones between half and all the typical size.
            shapes = rng.integers(np.array(spec.raw_shape[:2]) // 2, spec.raw_shape[:2], (count, 2), endpoint=True)
            images = np.array([tf.io.encode_jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).numpy()
                               for h, w in shapes], dtype=object)
        else:
            images = rng.integers(0, 256, (count, *spec.raw_shape), dtype=np.uint8)
        sources.append(_InMemory(images, labels))
    return sources[0], sources[1]


# ---------------------------------------------------------------------------------------------------
# Public interface


@dataclasses.dataclass(frozen=True)
class Data:
    """A dataset ready for training: deterministic, seeded tf.data pipelines and their sizes.

    Build it with `load`. Attributes:
      name: one of `DATASETS`.
      input_shape: shape of one preprocessed image, e.g. (32, 32, 3).
      classes: number of classes; labels are int32 in [0, classes).
      train_examples: training examples (after the validation split, if any).
      eval_examples: examples `evaluation` yields.
      eval_split: "validation" (the held-out part of the training set) or "test" (the dataset's test set;
        ILSVRC2012's validation set for imagenet2012).
    """

    name: str
    input_shape: tuple[int, ...]
    classes: int
    train_examples: int
    eval_examples: int
    eval_split: str
    _train_source: _InMemory | _Stream = dataclasses.field(repr=False, compare=False)
    _eval_source: _InMemory | _Stream = dataclasses.field(repr=False, compare=False)
    _augment: bool = dataclasses.field(repr=False)
    _seed: int = dataclasses.field(repr=False)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches per training epoch: train_examples // batch_size (the remainder is dropped)."""
        batch_size = check_int("batch_size", batch_size, 1)
        if batch_size > self.train_examples:
            raise ValueError(
                f"`batch_size` must be at most the {self.train_examples} training examples. Received: batch_size={batch_size}"
            )
        return self.train_examples // batch_size

    def train(self, batch_size: int, first_epoch: int = 0, epochs: int = 1) -> tf.data.Dataset:
        """Training batches of epochs [first_epoch, first_epoch + epochs), back to back.

        Each epoch is exactly `steps_per_epoch(batch_size)` batches of (images float32, labels int32),
        shuffled and augmented as a pure function of (seed, epoch), so `first_epoch=k` reproduces
        epoch k of a run started at 0.

        Args:
          batch_size: examples per batch (the global batch size under a distribution strategy).
          first_epoch: the first epoch to yield, counted from 0.
          epochs: number of epochs.
        """
        steps = self.steps_per_epoch(batch_size)
        first_epoch = check_int("first_epoch", first_epoch, 0)
        epochs = check_int("epochs", epochs, 1)
        spec = _SPECS[self.name]
        seed_key = tf.constant([self._seed, 0], tf.int64)

        def epoch_batches(epoch):
            shuffle_seed, augment_seed = _split_seed(tf.random.experimental.stateless_fold_in(seed_key, epoch), 2)

            seed = augment_seed if self._augment else None
            batches = self._train_source.shuffled(shuffle_seed).batch(batch_size, drop_remainder=True)
            return batches.map(lambda indices, raws, labels: (spec.inputs(raws, indices, seed), labels), _AUTOTUNE,
                               deterministic=True)

        return _finished(tf.data.Dataset.range(first_epoch, first_epoch + epochs).flat_map(epoch_batches), steps * epochs)

    def evaluation(self, batch_size: int) -> tf.data.Dataset:
        """All evaluation examples in a fixed order, without augmentation; the last batch may be smaller.

        Args:
          batch_size: examples per batch.
        """
        batch_size = check_int("batch_size", batch_size, 1)
        spec = _SPECS[self.name]
        batches = self._eval_source.in_order().batch(batch_size)
        batches = batches.map(lambda raws, labels: (spec.inputs(raws), labels), _AUTOTUNE, deterministic=True)
        return _finished(batches, -(-self.eval_examples // batch_size))


def _finished(batches: tf.data.Dataset, count: int) -> tf.data.Dataset:
    """`batches` with its known length, sharded by batch across workers, prefetched."""
    options = tf.data.Options()
    # Multi-worker auto-sharding by file would renumber the examples each worker reads, and with them its
    # validation split, order and augmentation seeds.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return batches.apply(tf.data.experimental.assert_cardinality(count)).with_options(options).prefetch(_AUTOTUNE)


def load(
    name: str,
    source: str = "files",
    data_dir: str | os.PathLike | None = None,
    *,
    validation_split: float = 0.0,
    seed: int = 0,
    augment: bool = True,
    synthetic_examples: int = 256,
    cache: bool = True,
    max_examples: int = 0,
) -> Data:
    """Loads a dataset as a `Data`: sizes plus deterministic training and evaluation pipelines.

    Args:
      name: one of `DATASETS`: "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet2012".
      source: "files" (the original files in `data_dir`; not for imagenet2012), "tfds" (a dataset
        prepared by tensorflow-datasets in `data_dir`, or its default data_dir if None; never
        downloaded) or "synthetic" (seeded random images and labels; `data_dir` is ignored).
      data_dir: where the files or the prepared tfds dataset are.
      validation_split: 0 to evaluate on the test set, or the fraction in (0, 1) of the training set to
        hold out (a permutation drawn from `seed`) and evaluate on instead.
      seed: seeds the validation split, the synthetic data, and every epoch's order and augmentation.
      augment: apply the training augmentation; without it training images are only normalised.
      synthetic_examples: training examples of the "synthetic" source (its test set has a quarter).
      cache: hold the decoded examples of the small datasets in memory; with False, those from tfds are
        read and decoded every epoch. The "files" and "synthetic" sources are always in memory and
        imagenet2012 always streamed.
      max_examples: when > 0, keep only the first `max_examples` training and evaluation examples (after
        the validation split): real data at a smoke-test budget.

    Raises:
      FileNotFoundError: the files, or the prepared tfds dataset, are not in `data_dir`.
      ValueError: an argument is invalid, or a file is truncated or corrupt.
    """
    if name not in DATASETS:
        raise ValueError(f"`name` must be one of {DATASETS}. Received: name={name!r}")
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {SOURCES}. Received: source={source!r}")
    if isinstance(validation_split, bool) or not isinstance(validation_split, numbers.Real) or not 0 <= validation_split < 1:
        raise ValueError(f"`validation_split` must be in [0, 1). Received: validation_split={validation_split!r}")
    seed = check_int("seed", seed, 0)
    synthetic_examples = check_int("synthetic_examples", synthetic_examples, 1)
    max_examples = check_int("max_examples", max_examples, 0)
    for argument, value in (("augment", augment), ("cache", cache)):
        if not isinstance(value, bool):
            raise ValueError(f"`{argument}` must be a bool. Received: {argument}={value!r}")

    if source == "files":
        if data_dir is None:
            raise ValueError("`data_dir` is required with source='files'. Received: data_dir=None")
        train, test = _from_files(name, os.fspath(data_dir))
    elif source == "tfds":
        train, test = _from_tfds(name, None if data_dir is None else os.fspath(data_dir), cache)
    else:
        train, test = _synthetic(name, synthetic_examples, seed)
    if validation_split:
        train, test = train.split(_validation_mask(train.count, validation_split, seed))
    if max_examples:
        train, test = train.first(max_examples), test.first(max_examples)
    spec = _SPECS[name]
    return Data(
        name=name,
        input_shape=spec.input_shape,
        classes=spec.classes,
        train_examples=train.count,
        eval_examples=test.count,
        eval_split="validation" if validation_split else "test",
        _train_source=train,
        _eval_source=test,
        _augment=augment,
        _seed=seed,
    )
