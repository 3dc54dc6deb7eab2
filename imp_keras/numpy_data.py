"""Image-classification data as NumPy batches for Keras 3 on any backend, without TensorFlow.

    data = load("mnist", source="files", data_dir="/data/mnist")
    model.fit(data.train(128, epochs=10), epochs=10, steps_per_epoch=data.steps_per_epoch(128),
              validation_data=data.evaluation(512), shuffle=False)

`shuffle=False` is needed: the batches of all epochs are one PyDataset, which Keras would otherwise
shuffle across epochs.

The same datasets, preprocessing and augmentation as the tf.data pipelines of `imp_keras.data`, for
the sources that need no TensorFlow: the original files (read by `imp_keras.datasets`) and synthetic
data. Training batches are a `keras.utils.PyDataset` whose batch i is a pure function of (seed,
epoch, i): the epoch's order is a permutation drawn from (seed, epoch), and each batch's augmentation
(CIFAR: a random crop of the image padded by 4 zero pixels, a horizontal flip, for CIFAR-100 a
rotation of up to +-15 degrees, nearest pixel) from (seed, epoch, batch). A run restarted with
`train(..., first_epoch=k)` therefore sees exactly the batches the uninterrupted run saw in epoch k
and after. The random numbers are NumPy's, not TensorFlow's: the two pipelines draw different crops.
"""

import dataclasses
import math
import os

import keras
import numpy as np

from imp_keras import datasets
from imp_keras.core.checks import check_int

__all__ = ["Data", "augment", "load"]

_ORDER, _AUGMENT = 0, 1  # streams of (seed, epoch, ...): an epoch's order, its batches' augmentation


def _rotate(images: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotates NHWC images by `angles` radians about their centres, nearest pixel, zeros outside
    (the transform of `imp_keras.data`'s rotation)."""
    n, height, width, _ = images.shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cos, sin = np.cos(angles)[:, None, None], np.sin(angles)[:, None, None]
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2
    source_x = np.rint(cos * x - sin * y + x_offset).astype(np.int64)
    source_y = np.rint(sin * x + cos * y + y_offset).astype(np.int64)
    inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
    rotated = images[np.arange(n)[:, None, None], np.clip(source_y, 0, height - 1), np.clip(source_x, 0, width - 1)]
    return np.where(inside[..., None], rotated, 0).astype(images.dtype)


def augment(images: np.ndarray, info: datasets.DatasetInfo, rng: np.random.Generator) -> np.ndarray:
    """The training augmentation of `info` on a uint8 or float NHWC batch, drawn from `rng`: a
    random crop after zero padding by `info.crop_padding`, a flip, a rotation by up to
    `info.rotation_degrees`. float32 pixels in [0, 255]."""
    images = images.astype(np.float32)
    if not info.crop_padding:
        return images
    n, height, width, _ = images.shape
    pad = info.crop_padding
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    top, left = rng.integers(0, 2 * pad, (2, n), endpoint=True)
    rows = (top[:, None] + np.arange(height))[:, :, None]
    columns = (left[:, None] + np.arange(width))[:, None, :]
    images = padded[np.arange(n)[:, None, None], rows, columns]
    flip = rng.random(n) < 0.5
    images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
    if info.rotation_degrees:
        angles = rng.uniform(-info.rotation_degrees, info.rotation_degrees, n) * (math.pi / 180)
        images = _rotate(images, angles.astype(np.float32))
    return images


def _inputs(images: np.ndarray, info: datasets.DatasetInfo) -> np.ndarray:
    """Float32 network inputs: pixels scaled to [0, 1], normalised if the dataset has a mean and std."""
    images = images.astype(np.float32) / np.float32(255.0)
    if info.mean is not None:
        images = (images - np.asarray(info.mean, np.float32)) / np.asarray(info.std, np.float32)
    return images


class _Training(keras.utils.PyDataset):
    """Batches of epochs [first_epoch, first_epoch + epochs) back to back; batch i is a pure function of i."""

    def __init__(self, data: "Data", batch_size: int, first_epoch: int, epochs: int):
        super().__init__()
        self._data, self._batch_size, self._first_epoch = data, batch_size, first_epoch
        self._steps = data.steps_per_epoch(batch_size)
        self._count = self._steps * epochs
        self._order: tuple[int, np.ndarray] | None = None  # the permutation of the epoch last asked for

    def __len__(self) -> int:
        return self._count

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            rng = np.random.default_rng([self._data._seed, epoch, _ORDER])
            self._order = (epoch, rng.permutation(self._data.train_examples))
        return self._order[1]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self._count:
            raise IndexError(f"batch {index} of {self._count}")
        epoch, batch = self._first_epoch + index // self._steps, index % self._steps
        chosen = self._permutation(epoch)[batch * self._batch_size : (batch + 1) * self._batch_size]
        images, labels = self._data._train[0][chosen], self._data._train[1][chosen]
        info = datasets.INFO[self._data.name]
        if self._data._augment:
            images = augment(images, info, np.random.default_rng([self._data._seed, epoch, _AUGMENT, batch]))
        return _inputs(images, info), labels


class _Evaluation(keras.utils.PyDataset):
    """Every evaluation example in a fixed order; the last batch may be smaller."""

    def __init__(self, data: "Data", batch_size: int):
        super().__init__()
        self._data, self._batch_size = data, batch_size

    def __len__(self) -> int:
        return -(-self._data.eval_examples // self._batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        part = slice(index * self._batch_size, (index + 1) * self._batch_size)
        return _inputs(self._data._eval[0][part], datasets.INFO[self._data.name]), self._data._eval[1][part]


@dataclasses.dataclass(frozen=True)
class Data:
    """A dataset held in memory as NumPy arrays, with deterministic seeded batches (see the module
    docstring). The attributes are those of `imp_keras.data.Data`."""

    name: str
    input_shape: tuple[int, ...]
    classes: int
    train_examples: int
    eval_examples: int
    eval_split: str
    _train: tuple[np.ndarray, np.ndarray] = dataclasses.field(repr=False, compare=False)
    _eval: tuple[np.ndarray, np.ndarray] = dataclasses.field(repr=False, compare=False)
    _augment: bool = dataclasses.field(repr=False)
    _seed: int = dataclasses.field(repr=False)

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches per training epoch: train_examples // batch_size (the remainder is dropped)."""
        return datasets.steps_per_epoch(self.train_examples, batch_size)

    def train(self, batch_size: int, first_epoch: int = 0, epochs: int = 1) -> keras.utils.PyDataset:
        """Training batches of epochs [first_epoch, first_epoch + epochs), back to back: give `fit`
        `steps_per_epoch=steps_per_epoch(batch_size)`. Each epoch is shuffled and augmented as a pure
        function of (seed, epoch), so `first_epoch=k` reproduces epoch k of a run started at 0."""
        self.steps_per_epoch(batch_size)
        return _Training(self, batch_size, check_int("first_epoch", first_epoch, 0), check_int("epochs", epochs, 1))

    def evaluation(self, batch_size: int) -> keras.utils.PyDataset:
        """All evaluation examples in a fixed order, without augmentation; the last batch may be smaller."""
        return _Evaluation(self, check_int("batch_size", batch_size, 1))

    def samples(self, count: int) -> np.ndarray:
        """The first `count` evaluation inputs (or all, if fewer), preprocessed."""
        return _inputs(self._eval[0][:count], datasets.INFO[self.name])


def load(
    name: str,
    source: str = "files",
    data_dir: str | os.PathLike | None = None,
    *,
    validation_split: float = 0.0,
    seed: int = 0,
    augment: bool = True,
    synthetic_examples: int = 256,
    max_examples: int = 0,
) -> Data:
    """Loads a dataset as a `Data`: the arguments of `imp_keras.data.load` for the "files" and
    "synthetic" sources (the "tfds" source and imagenet2012 need TensorFlow: use `imp_keras.data`).

    Raises:
      FileNotFoundError: the files are not in `data_dir`.
      ValueError: an argument is invalid, the source needs TensorFlow, or a file is truncated or corrupt.
    """
    datasets.check_load_arguments(name, source, validation_split, seed, synthetic_examples, max_examples, augment=augment)
    if source == "tfds" or name == "imagenet2012":
        raise ValueError(
            "The NumPy pipeline reads the original files and synthetic data of MNIST, Fashion-MNIST and CIFAR; "
            f"tfds datasets and imagenet2012 need TensorFlow (imp_keras.data). Received: name={name!r}, source={source!r}"
        )
    if source == "files":
        if data_dir is None:
            raise ValueError("`data_dir` is required with source='files'. Received: data_dir=None")
        splits = datasets.read_files(name, os.fspath(data_dir))
    else:
        splits = datasets.synthetic(name, synthetic_examples, seed)
    (train_images, train_labels), (eval_images, eval_labels) = splits["train"], splits["test"]
    if validation_split:
        held = datasets.validation_mask(len(train_labels), validation_split, seed)
        (train_images, train_labels), (eval_images, eval_labels) = (
            (train_images[~held], train_labels[~held]), (train_images[held], train_labels[held])
        )
    if max_examples:
        train_images, train_labels = train_images[:max_examples], train_labels[:max_examples]
        eval_images, eval_labels = eval_images[:max_examples], eval_labels[:max_examples]
    info = datasets.INFO[name]
    return Data(
        name=name,
        input_shape=info.input_shape,
        classes=info.classes,
        train_examples=len(train_labels),
        eval_examples=len(eval_labels),
        eval_split="validation" if validation_split else "test",
        _train=(train_images, train_labels.astype(np.int32)),
        _eval=(eval_images, eval_labels.astype(np.int32)),
        _augment=augment,
        _seed=int(seed),
    )
