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
  "files": the original files in `data_dir`, read by `imp_keras.datasets` (NumPy).
  "tfds": a dataset prepared by tensorflow-datasets in `data_dir`, never downloaded.
  "synthetic": seeded random images of the dataset's raw shape and random labels, for quick runs.

A missing file is a `FileNotFoundError` and a truncated or foreign one a `ValueError`, both naming the
path and what was expected.
"""

from collections.abc import Callable
import dataclasses
import functools
import math
import os

import numpy as np
import tensorflow as tf

from imp_keras import datasets
from imp_keras.core.checks import check_int
from imp_keras.datasets import (
    DATASETS,
    IDX_FILES,
    IMAGENET_SIZE as _IMAGENET_SIZE,
    INFO,
    INPUT_SHAPES,
    SOURCES,
    load_cifar,
    load_idx,
    load_idx_dataset,
    validation_count,
)

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

# ---------------------------------------------------------------------------------------------------
# Preprocessing

_AUTOTUNE = tf.data.AUTOTUNE
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
    pad = INFO["cifar10"].crop_padding
    padding = [[pad, pad], [pad, pad], [0, 0]]
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
    """How a dataset's raw examples (uint8 images; JPEG bytes for ImageNet) become inputs in TensorFlow."""

    info: datasets.DatasetInfo
    decode: Callable[[tf.Tensor], tf.Tensor] = _to_float  # raw batch to float32 pixels in [0, 255], unaugmented
    augment: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None  # (raw example, seed) to float32 pixels

    def __getattr__(self, name: str):
        return getattr(self.info, name)  # raw_shape, input_shape, classes, mean, std, tfds_test_split

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


def _augment_of(info: datasets.DatasetInfo) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None:
    if not info.crop_padding:
        return None
    return functools.partial(_cifar_augment, rotation_degrees=info.rotation_degrees)


_SPECS = {name: _Spec(info, augment=_augment_of(info)) for name, info in INFO.items()}
_SPECS["imagenet2012"] = _Spec(INFO["imagenet2012"], decode=_imagenet_center_crops, augment=_imagenet_random_resized_crop)



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


# ---------------------------------------------------------------------------------------------------
# Sources


def _from_files(name: str, data_dir: str) -> tuple[_InMemory, _InMemory]:
    splits = datasets.read_files(name, data_dir)
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
    splits = datasets.synthetic(name, train_examples, seed, encode_jpeg=lambda image: tf.io.encode_jpeg(image).numpy())
    return _InMemory(*splits["train"]), _InMemory(*splits["test"])


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
        return datasets.steps_per_epoch(self.train_examples, batch_size)

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
    datasets.check_load_arguments(name, source, validation_split, seed, synthetic_examples, max_examples, augment=augment, cache=cache)

    if source == "files":
        if data_dir is None:
            raise ValueError("`data_dir` is required with source='files'. Received: data_dir=None")
        train, test = _from_files(name, os.fspath(data_dir))
    elif source == "tfds":
        train, test = _from_tfds(name, None if data_dir is None else os.fspath(data_dir), cache)
    else:
        train, test = _synthetic(name, synthetic_examples, seed)
    if validation_split:
        train, test = train.split(datasets.validation_mask(train.count, validation_split, seed))
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
