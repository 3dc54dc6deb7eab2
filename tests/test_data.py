"""IDX reading: synthetic files of the real format, damaged files, and the shared MNIST files."""

import gzip
import os

import numpy as np
import pytest

from imp_keras.data import IDX_FILES, load_idx, load_idx_dataset

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
