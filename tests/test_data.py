"""Data: IDX and CIFAR readers on synthetic files of the real formats, damaged and malicious files,
tfds through `tfds.testing.mock_data`, augmentations, and pipelines that are pure functions of
(seed, epoch) so a resumed run sees the same batches."""

import gzip
import io
import math
import os
import pickle
import struct
import tarfile
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from imp_keras.data import (
    DATASETS,
    IDX_FILES,
    SOURCES,
    _SPECS,
    _cifar_augment,
    _imagenet_center_crop,
    _rotate,
    load,
    load_cifar,
    load_idx,
    load_idx_dataset,
)

from conftest import SHARED_DATA


def write_idx(path, array, magic):
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def synthetic_dir(tmp_path, n_train=5, n_test=3):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        images_name, labels_name = IDX_FILES[split]
        write_idx(tmp_path / images_name, images, 2051)
        write_idx(tmp_path / labels_name, labels, 2049)
        arrays[split] = (images, labels)
    return arrays


def test_reads_synthetic_idx_dataset(tmp_path):
    arrays = synthetic_dir(tmp_path)
    loaded = load_idx_dataset(tmp_path)
    for split in ("train", "test"):
        np.testing.assert_array_equal(loaded[split][0], arrays[split][0])
        np.testing.assert_array_equal(loaded[split][1], arrays[split][1])


def test_truncated_file(tmp_path):
    path = tmp_path / "images.gz"
    with gzip.open(path, "wb") as f:
        f.write(np.array([2051, 2, 28, 28], ">u4").tobytes() + bytes(28 * 28))  # one image of two
    with pytest.raises(ValueError, match=r"images.gz: header announces 1568 values of shape \(2, 28, 28\) but the file holds 784"):
        load_idx(path)


def test_foreign_magic(tmp_path):
    path = tmp_path / "labels.gz"
    with gzip.open(path, "wb") as f:
        f.write(np.array([1234, 1], ">u4").tobytes() + b"\x00")
    with pytest.raises(ValueError, match="magic number 1234 is neither 2051"):
        load_idx(path)


def test_not_gzip(tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(b"not a gzip file at all")
    with pytest.raises(ValueError, match="plain.gz: not a readable gzip file"):
        load_idx(path)


def test_missing_file_and_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="IDX file not found"):
        load_idx(tmp_path / "nope.gz")
    with pytest.raises(FileNotFoundError, match="Data directory not found"):
        load_idx_dataset(tmp_path / "nodir")


def test_mismatched_counts(tmp_path):
    synthetic_dir(tmp_path)
    write_idx(tmp_path / IDX_FILES["test"][1], np.zeros(2, np.uint8), 2049)
    with pytest.raises(ValueError, match=r"test images \(3, 28, 28\) and labels \(2,\) do not match"):
        load_idx_dataset(tmp_path)


@pytest.mark.parametrize(
    "name, train_counts, test_counts",
    [
        ("mnist", [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949], [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
        ("fashion-mnist", [6000] * 10, [1000] * 10),
    ],
)
def test_shared_files(name, train_counts, test_counts):
    data_dir = os.path.join(SHARED_DATA, name)
    if not os.path.isdir(data_dir):
        pytest.skip(f"shared data not present at {data_dir}")
    data = load_idx_dataset(data_dir)
    assert data["train"][0].shape == (60000, 28, 28) and data["test"][0].shape == (10000, 28, 28)
    assert np.bincount(data["train"][1]).tolist() == train_counts
    assert np.bincount(data["test"][1]).tolist() == test_counts


def test_loads_shared_idx_files_as_pipelines():
    data_dir = os.path.join(SHARED_DATA, "mnist")
    if not os.path.isdir(data_dir):
        pytest.skip(f"shared data not present at {data_dir}")
    data = load("mnist", "files", data_dir)
    assert (data.train_examples, data.eval_examples, data.eval_split) == (60000, 10000, "test")
    images, labels = next(iter(data.evaluation(1000)))
    test_images, test_labels = load_idx_dataset(data_dir)["test"]
    np.testing.assert_array_equal(images.numpy(), test_images[:1000, :, :, None] / np.float32(255))
    np.testing.assert_array_equal(labels.numpy(), test_labels[:1000])
    split = load("mnist", "files", data_dir, validation_split=0.1)
    assert (split.train_examples, split.eval_examples, split.eval_split) == (54000, 6000, "validation")
    assert split.steps_per_epoch(128) == 54000 // 128


# ---------------------------------------------------------------------------------------------------
# CIFAR archives in the real formats


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did for the CIFAR batches: str and bytes as Python 2 `str` (BINSTRING)."""

    def save_python2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, str: save_python2_str, bytes: save_python2_str}


def python2_pickle(obj):
    out = io.BytesIO()
    Python2Pickler(out, protocol=2).dump(obj)
    # numpy 1 (with which the batches were written) kept `_reconstruct` in numpy.core.multiarray.
    return out.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def planes(images):
    """HWC images to CIFAR rows: 1024 red, 1024 green, 1024 blue bytes, each plane row-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def cifar_members(name, form, train, test):
    """{member path: bytes} of the real archive layout holding `train` and `test` (images, fine labels)."""
    rng = np.random.default_rng(1)
    if name == "cifar10":
        folder = {"python": "cifar-10-batches-py", "binary": "cifar-10-batches-bin"}[form]
        batches = [(f"data_batch_{i + 1}", part) for i, part in enumerate(zip(*(np.array_split(a, 5) for a in train)))]
        batches.append(("test_batch", test))
    else:
        folder = {"python": "cifar-100-python", "binary": "cifar-100-binary"}[form]
        batches = [("train", train), ("test", test)]
    members = {}
    for batch_name, (images, labels) in batches:
        coarse = rng.integers(0, 20, len(labels), dtype=np.uint8)
        if form == "binary":
            header = labels[:, None] if name == "cifar10" else np.stack([coarse, labels], axis=1)
            members[f"{folder}/{batch_name}.bin"] = np.concatenate([header, planes(images)], axis=1).tobytes()
            continue
        batch = {b"batch_label": f"{batch_name} of the synthetic set", b"data": planes(images),
                 b"filenames": [f"image_{i}.png" for i in range(len(labels))]}
        if name == "cifar10":
            batch[b"labels"] = labels.tolist()
        else:
            batch.update({b"fine_labels": labels.tolist(), b"coarse_labels": coarse.tolist()})
        members[f"{folder}/{batch_name}"] = python2_pickle(batch)
    if form == "binary" and name == "cifar10":
        members[f"{folder}/batches.meta.txt"] = b"airplane\nautomobile\n"
    elif form == "binary":
        members[f"{folder}/fine_label_names.txt"] = b"apple\naquarium_fish\n"
    elif name == "cifar10":
        members[f"{folder}/batches.meta"] = python2_pickle({b"label_names": ["airplane"], b"num_vis": 3072})
    else:
        members[f"{folder}/meta"] = python2_pickle({b"fine_label_names": ["apple"], b"coarse_label_names": ["fish"]})
    return members


ARCHIVES = {("cifar10", "python"): "cifar-10-python.tar.gz", ("cifar10", "binary"): "cifar-10-binary.tar.gz",
            ("cifar100", "python"): "cifar-100-python.tar.gz", ("cifar100", "binary"): "cifar-100-binary.tar.gz"}


def write_cifar(tmp_path, name="cifar10", form="python", packed=True, n_train=15, n_test=4):
    """Writes the archive (packed) or the folder it unpacks to; returns the arrays and the written path."""
    rng = np.random.default_rng(0)
    classes = 10 if name == "cifar10" else 100
    arrays = {split: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, classes, n, dtype=np.uint8))
              for split, n in (("train", n_train), ("test", n_test))}
    members = cifar_members(name, form, arrays["train"], arrays["test"])
    if packed:
        path = tmp_path / ARCHIVES[(name, form)]
        with tarfile.open(path, "w:gz") as tar:
            for member, raw in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        for member, raw in members.items():
            (tmp_path / member).parent.mkdir(exist_ok=True)
            (tmp_path / member).write_bytes(raw)
        path = tmp_path / next(iter(members)).split("/")[0]
    return arrays, path


@pytest.mark.parametrize("packed", [True, False], ids=["archive", "folder"])
@pytest.mark.parametrize("form", ["python", "binary"])
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_reads_cifar_in_every_published_form(tmp_path, name, form, packed):
    arrays, _ = write_cifar(tmp_path, name, form, packed)
    loaded = load_cifar(tmp_path, name)
    for split in ("train", "test"):
        np.testing.assert_array_equal(loaded[split][0], arrays[split][0])
        np.testing.assert_array_equal(loaded[split][1], arrays[split][1])  # CIFAR-100: the fine labels


def test_cifar_files_pipeline_normalises_per_channel(tmp_path):
    arrays, _ = write_cifar(tmp_path, "cifar10", "binary")
    data = load("cifar10", "files", tmp_path)
    assert (data.train_examples, data.eval_examples, data.input_shape, data.classes) == (15, 4, (32, 32, 3), 10)
    images, labels = next(iter(data.evaluation(4)))
    mean, std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2023, 0.1994, 0.2010])
    np.testing.assert_allclose(images.numpy(), (arrays["test"][0] / 255 - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(labels.numpy(), arrays["test"][1])
    # Pixels at the channel means come out as 0.
    mean_image = tf.constant(np.broadcast_to(mean * 255, (1, 32, 32, 3)), tf.float32)
    np.testing.assert_allclose(_SPECS["cifar10"].inputs(mean_image).numpy(), 0, atol=1e-6)


def truncate(path):
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])


def drop_member(path):
    with tarfile.open(path, "r:gz") as tar:
        kept = [(m, tar.extractfile(m).read()) for m in tar if not m.name.endswith("test_batch")]
    with tarfile.open(path, "w:gz") as tar:
        for member, raw in kept:
            tar.addfile(member, io.BytesIO(raw))


@pytest.mark.parametrize(
    "form, packed, damage, error, message",
    [
        ("python", True, truncate, ValueError, r"cifar-10-python.tar.gz: not a readable tar.gz archive .*truncated or corrupt"),
        ("python", True, drop_member, ValueError, r"cifar-10-python.tar.gz: no member cifar-10-batches-py/test_batch; expected"),
        ("python", False, lambda path: (path / "data_batch_3").unlink(), FileNotFoundError,
         r"CIFAR batch not found: .*cifar-10-batches-py/data_batch_3 \(expected cifar-10-batches-py/data_batch_1"),
        ("python", False, lambda path: truncate(path / "data_batch_2"), ValueError,
         r"cifar-10-batches-py/data_batch_2: not a readable CIFAR python batch .*expected a pickled dict with b'data'"),
        ("python", False, lambda path: (path / "test_batch").write_bytes(python2_pickle({b"labels": [1]})), ValueError,
         r"test_batch: holds \[b'labels'\]; expected a pickled dict with b'data' \(uint8 \[n, 3072\]\) and b'labels'"),
        ("binary", False, lambda path: truncate(path / "test_batch.bin"), ValueError,
         r"test_batch.bin: 12192 bytes is not a whole number of 3073-byte records \(1 label byte \+ 3072 pixel bytes\)"),
        ("binary", False, lambda path: (path / "test_batch.bin").write_bytes(bytes([10]) + bytes(3072)), ValueError,
         r"test_batch.bin: labels outside \[0, 10\); expected cifar10 labels"),
    ],
    ids=["truncated-archive", "missing-member", "missing-batch", "truncated-pickle", "foreign-pickle",
         "truncated-binary", "bad-label"],
)
def test_damaged_cifar_files_name_path_and_expectation(tmp_path, form, packed, damage, error, message):
    _, path = write_cifar(tmp_path, "cifar10", form, packed, n_test=4)
    damage(path)
    with pytest.raises(error, match=message):
        load_cifar(tmp_path, "cifar10")


def test_missing_cifar_names_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No cifar100 data in .* \(expected one of: cifar-100-python/, "
                       r"cifar-100-python.tar.gz, cifar-100-binary/, cifar-100-binary.tar.gz\)"):
        load("cifar100", "files", tmp_path)


class RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class RunsPython:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


@pytest.mark.parametrize("payload", [RunsShell, RunsPython])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, payload):
    write_cifar(tmp_path, "cifar10", "python", packed=False)
    marker = tmp_path / "pwned"
    command = f"touch {marker}" if payload is RunsShell else f"open({str(marker)!r}, 'w').close()"
    evil = python2_pickle({b"data": payload(command), b"labels": [0]})
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(evil)
    with pytest.raises(ValueError, match=r"data_batch_1: not a readable CIFAR python batch \(UnpicklingError: "
                       r"refused global (posix\.system|__builtin__\.exec)"):
        load_cifar(tmp_path, "cifar10")
    assert not marker.exists()
    pickle.loads(evil)  # the payload is live: a plain unpickler runs it
    assert marker.exists()


# ---------------------------------------------------------------------------------------------------
# tfds, mocked: random examples, no files


@pytest.fixture
def tfds():
    import tensorflow_datasets

    return tensorflow_datasets


def tfds_examples(tfds, name, split):
    dataset = tfds.load(name, split=split, as_supervised=True, download=False)
    images, labels = zip(*tfds.as_numpy(dataset))
    return np.stack(images), np.array(labels)


@pytest.mark.parametrize("cache", [True, False], ids=["in-memory", "streamed"])
def test_tfds_mnist(tmp_path, tfds, cache):
    with tfds.testing.mock_data(num_examples=20), mock.patch.object(tfds, "load", wraps=tfds.load) as tfds_load:
        data = load("mnist", "tfds", tmp_path, cache=cache)
        raw_images, raw_labels = tfds_examples(tfds, "mnist", "test")
    assert tfds_load.call_args_list[0].kwargs["download"] is False
    assert tfds_load.call_args_list[0].kwargs["data_dir"] == str(tmp_path)
    assert (data.train_examples, data.eval_examples, data.input_shape) == (20, 20, (28, 28, 1))
    images, labels = next(iter(data.evaluation(20)))
    assert images.dtype == tf.float32 and labels.dtype == tf.int32
    np.testing.assert_array_equal(images.numpy(), raw_images / np.float32(255))
    np.testing.assert_array_equal(labels.numpy(), raw_labels)
    batches = list(data.train(8, first_epoch=0, epochs=2))
    assert len(batches) == 2 * data.steps_per_epoch(8) == 4
    assert all(0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 1 for x, _ in batches)


def test_tfds_cifar10(tmp_path, tfds):
    with tfds.testing.mock_data(num_examples=12), mock.patch.object(tfds, "load", wraps=tfds.load) as tfds_load:
        data = load("cifar10", "tfds", tmp_path, validation_split=0.25)
        raw_images, _ = tfds_examples(tfds, "cifar10", "train")
    assert tfds_load.call_args_list[0].kwargs["download"] is False
    assert (data.train_examples, data.eval_examples, data.eval_split) == (9, 3, "validation")
    images, labels = next(iter(data.train(9)))
    assert images.shape == (9, 32, 32, 3) and images.dtype == tf.float32 and labels.dtype == tf.int32
    validation = next(iter(data.evaluation(3)))[0].numpy()
    unnormalised = np.round((validation * [0.2023, 0.1994, 0.2010] + [0.4914, 0.4822, 0.4465]) * 255)
    assert all(any((image == raw).all() for raw in raw_images) for image in unnormalised)


def test_tfds_imagenet_streams_jpegs(tmp_path, tfds):
    with tfds.testing.mock_data(num_examples=6), mock.patch.object(tfds, "load", wraps=tfds.load) as tfds_load:
        data = load("imagenet2012", "tfds", tmp_path, validation_split=0.5, seed=3)
        first = [b.numpy() for b in next(iter(data.train(3, first_epoch=0, epochs=2)))]
        epochs = [[x.numpy() for x in batch] for batch in data.train(3, first_epoch=0, epochs=2)]
        resumed = [[x.numpy() for x in batch] for batch in data.train(3, first_epoch=1)]
        evaluation = list(data.evaluation(2))
    call = tfds_load.call_args_list[0].kwargs
    assert call["download"] is False and call["split"] == ["train", "validation"]
    assert (data.train_examples, data.eval_examples, data.classes, data.eval_split) == (3, 3, 1000, "validation")
    lowest = (0 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225]
    highest = (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225]
    for images, labels in [first, *epochs, *evaluation]:
        images, labels = np.asarray(images), np.asarray(labels)
        assert images.shape[1:] == (224, 224, 3) and images.dtype == np.float32 and labels.dtype == np.int32
        assert (images >= lowest - 1e-5).all() and (images <= highest + 1e-5).all() and (labels < 1000).all()
    assert [len(labels) for _, labels in evaluation] == [2, 1]
    np.testing.assert_array_equal(epochs[0][0], first[0])
    np.testing.assert_array_equal(epochs[1][0], resumed[0][0])
    assert not np.array_equal(epochs[0][0], epochs[1][0])


def test_tfds_not_prepared_fails_at_once_naming_download_false(tmp_path, tfds):
    start = time.time()
    with pytest.raises(FileNotFoundError, match=rf"tfds dataset 'cifar100' is not prepared in {tmp_path}; imp_keras "
                       r"loads it with download=False and never downloads\. Build it .*tfds build cifar100"):
        load("cifar100", "tfds", tmp_path)
    assert time.time() - start < 30


# ---------------------------------------------------------------------------------------------------
# Augmentations


def crop_windows(image):
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    return {(dy, dx): padded[dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)}


def test_cifar_crop_and_flip():
    image = np.random.default_rng(0).integers(1, 256, (32, 32, 3)).astype(np.float32)
    windows = crop_windows(image)
    offsets, flips = set(), []
    for seed in range(40):
        out = _cifar_augment(tf.constant(image), tf.constant([seed, 0], tf.int64)).numpy()
        assert out.shape == (32, 32, 3)
        matches = [(offset, flipped) for offset, window in windows.items() for flipped in (False, True)
                   if np.array_equal(out, window[:, ::-1] if flipped else window)]
        assert len(matches) == 1, seed
        offsets.add(matches[0][0])
        flips.append(matches[0][1])
    assert 0 < sum(flips) < len(flips) and len(offsets) > 10


def test_rotation():
    image = tf.constant(np.random.default_rng(0).random((32, 32, 3)), tf.float32)
    np.testing.assert_array_equal(_rotate(image, tf.constant(0.0)).numpy(), image.numpy())
    quarter = _rotate(image, tf.constant(math.pi / 2)).numpy()
    assert any(np.allclose(quarter, np.rot90(image.numpy(), k)) for k in (1, 3))
    corner = _rotate(tf.ones((32, 32, 1)), tf.constant(math.pi / 12)).numpy()
    assert corner[0, 0, 0] == 0 and corner[16, 16, 0] == 1  # zeros rotate in at the corners


def test_cifar100_adds_rotation_up_to_15_degrees():
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (32, 32, 3)), tf.uint8)
    rotations = tf.function(lambda image, angles: tf.map_fn(lambda angle: _rotate(image, angle), angles))
    angles = tf.constant(np.radians(np.arange(-15, 15.01, 0.05)), tf.float32)
    rotated = 0
    for seed in range(20):
        key = tf.constant([seed, 0], tf.int64)
        cifar100, cifar10 = _SPECS["cifar100"].augment(image, key).numpy(), _cifar_augment(image, key).numpy()
        rotated += not np.array_equal(cifar100, cifar10)
        # Same crop and flip, rotated by some angle within 15 degrees (nearest pixel: try a fine grid).
        candidates = rotations(tf.constant(cifar10), angles).numpy()
        assert (candidates != cifar100).mean(axis=(1, 2, 3)).min() < 0.02, seed
    assert rotated >= 15  # nearest-pixel rotation by under about 2 degrees can leave the image as it was


def jpeg(image):
    return tf.io.encode_jpeg(tf.constant(image, tf.uint8), quality=100)


def test_imagenet_center_crop():
    image = np.zeros((300, 600, 3), np.uint8)
    image[:, 300:] = 255  # resized to 256x512, the central 224 columns start at 144: bright from column 112
    crop = _imagenet_center_crop(jpeg(image)).numpy()
    assert crop.shape == (224, 224, 3)
    assert crop[:, :104].max() < 10 and crop[:, 120:].min() > 245


def test_imagenet_random_resized_crop_varies_with_the_seed():
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    raws = tf.stack([jpeg(image)] * 4)
    spec = _SPECS["imagenet2012"]
    crops = spec.inputs(raws, tf.range(4, dtype=tf.int64), tf.constant([0, 0], tf.int64)).numpy()
    assert crops.shape == (4, 224, 224, 3)
    assert len({crop.tobytes() for crop in crops}) == 4
    again = spec.inputs(raws, tf.range(4, dtype=tf.int64), tf.constant([0, 0], tf.int64)).numpy()
    np.testing.assert_array_equal(crops, again)


# ---------------------------------------------------------------------------------------------------
# Pipelines: determinism, resume, sizes, validation split


def batches_of(dataset):
    return [(images.numpy(), labels.numpy()) for images, labels in dataset]


@pytest.mark.parametrize("name", ["cifar100", "imagenet2012", "mnist"])
def test_epochs_are_functions_of_seed_and_epoch(op_determinism, name):
    data = load(name, "synthetic", synthetic_examples=12, seed=5)
    steps = data.steps_per_epoch(4)
    full = batches_of(data.train(4, first_epoch=0, epochs=3))
    assert len(full) == 3 * steps == 9
    tf.random.set_seed(123)  # the global seed plays no part
    for first in (1, 2):
        resumed = batches_of(load(name, "synthetic", synthetic_examples=12, seed=5).train(4, first_epoch=first))
        for (images, labels), (expected_images, expected_labels) in zip(resumed, full[first * steps : (first + 1) * steps]):
            np.testing.assert_array_equal(images, expected_images)
            np.testing.assert_array_equal(labels, expected_labels)
    epoch_images = [np.concatenate([images for images, _ in full[e * steps : (e + 1) * steps]]) for e in range(3)]
    assert not np.array_equal(epoch_images[0], epoch_images[1]) and not np.array_equal(epoch_images[1], epoch_images[2])
    other_seed = batches_of(load(name, "synthetic", synthetic_examples=12, seed=6).train(4))
    assert not np.array_equal(other_seed[0][0], full[0][0])


def images_of(dataset):
    return [image.tobytes() for images, _ in dataset for image in images.numpy()]


def test_every_epoch_is_a_permutation_of_all_examples():
    data = load("cifar10", "synthetic", synthetic_examples=12, augment=False)
    epochs = [images_of(data.train(4, first_epoch=epoch)) for epoch in range(3)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(epochs[2]) and len(set(epochs[0])) == 12
    assert epochs[0] != epochs[1] != epochs[2]


def test_batch_counts():
    data = load("mnist", "synthetic", synthetic_examples=50)
    assert (data.train_examples, data.eval_examples) == (50, 12)
    assert data.steps_per_epoch(8) == 6
    train = data.train(8, first_epoch=4, epochs=3)
    assert int(train.cardinality()) == 18
    assert [len(labels) for _, labels in batches_of(train)] == [8] * 18
    evaluation = data.evaluation(5)
    assert [len(labels) for _, labels in batches_of(evaluation)] == [5, 5, 2] and int(evaluation.cardinality()) == 3
    assert batches_of(data.evaluation(5))[0][0].tobytes() == batches_of(evaluation)[0][0].tobytes()


def test_validation_split_is_seeded_disjoint_and_complete(tmp_path):
    write_cifar(tmp_path, "cifar10", "binary", n_train=100)

    def split(seed):
        return load("cifar10", "files", tmp_path, augment=False, validation_split=0.1, seed=seed)

    everything = set(images_of(load("cifar10", "files", tmp_path, augment=False).train(100)))
    data = split(seed=0)
    assert (data.train_examples, data.eval_examples, data.eval_split) == (90, 10, "validation")
    train, validation = set(images_of(data.train(9))), set(images_of(data.evaluation(7)))
    assert len(train) == 90 and len(validation) == 10
    assert not train & validation and train | validation == everything
    assert set(images_of(split(seed=0).evaluation(10))) == validation
    assert set(images_of(split(seed=1).evaluation(10))) != validation


def test_train_batches_distribute():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    data = load("cifar10", "synthetic", synthetic_examples=16)
    train = data.train(8, epochs=2)
    assert train.options().experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.DATA
    batches = list(strategy.experimental_distribute_dataset(train))
    assert len(batches) == 4 and batches[0][0].shape == (8, 32, 32, 3)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: load("svhn", "synthetic"), ValueError, r"`name` must be one of \('mnist', 'fashion_mnist', 'cifar10', "
         r"'cifar100', 'imagenet2012'\)\. Received: name='svhn'"),
        (lambda: load("mnist", "web"), ValueError, r"`source` must be one of \('files', 'tfds', 'synthetic'\)\. Received: source='web'"),
        (lambda: load("mnist", "synthetic", validation_split=1.5), ValueError,
         r"`validation_split` must be in \[0, 1\)\. Received: validation_split=1\.5"),
        (lambda: load("mnist", "synthetic", validation_split=True), ValueError, r"Received: validation_split=True"),
        (lambda: load("mnist", "synthetic", synthetic_examples=4, validation_split=0.1), ValueError,
         r"`validation_split` must leave at least one training and one validation example of the 4 training examples"),
        (lambda: load("mnist", "synthetic", seed=-1), ValueError, r"`seed` must be an integer >= 0\. Received: seed=-1"),
        (lambda: load("mnist", "synthetic", augment="yes"), ValueError, r"`augment` must be a bool\. Received: augment='yes'"),
        (lambda: load("mnist", "files"), ValueError, r"`data_dir` is required with source='files'"),
        (lambda: load("imagenet2012", "files", "/data"), ValueError, r"imagenet2012 cannot be read from the original "
         r"files; prepare it with tensorflow-datasets and use source='tfds'"),
        (lambda: load("mnist", "synthetic", synthetic_examples=8).train(16), ValueError,
         r"`batch_size` must be at most the 8 training examples\. Received: batch_size=16"),
        (lambda: load("mnist", "synthetic").train(8, first_epoch=-1), ValueError, r"Received: first_epoch=-1"),
        (lambda: load("mnist", "synthetic").train(8, epochs=0), ValueError, r"`epochs` must be an integer >= 1"),
        (lambda: load("mnist", "synthetic").evaluation(0), ValueError, r"`batch_size` must be an integer >= 1"),
        (lambda: load("mnist", "files", "/nonexistent"), FileNotFoundError, r"Data directory not found: /nonexistent "
         r"\(expected the four IDX files"),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_public_constants():
    assert DATASETS == ("mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet2012")
    assert SOURCES == ("files", "tfds", "synthetic")
    shapes = {name: load(name, "synthetic", synthetic_examples=4).input_shape for name in DATASETS}
    assert shapes == {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3),
                      "cifar100": (32, 32, 3), "imagenet2012": (224, 224, 3)}


def test_max_examples_keeps_the_first_examples_of_each_split():
    whole = load("mnist", "synthetic", synthetic_examples=64, seed=3)
    part = load("mnist", "synthetic", synthetic_examples=64, seed=3, max_examples=10)
    assert (part.train_examples, part.eval_examples) == (10, 10)
    first = np.concatenate([y for _, y in whole.evaluation(8).as_numpy_iterator()])[:10]
    np.testing.assert_array_equal(np.concatenate([y for _, y in part.evaluation(4).as_numpy_iterator()]), first)
    with pytest.raises(ValueError, match="`max_examples` must be"):
        load("mnist", "synthetic", max_examples=-1)
