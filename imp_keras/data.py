"""Image-classification data from the original files, for machines without internet.

MNIST and Fashion-MNIST ship as gzip-compressed IDX files: a big-endian header of `>u4` fields
(magic 2051, count, rows, cols for images; magic 2049, count for labels), then uint8 values.
A truncated or foreign file gives a `ValueError` that names the path and what was expected.
"""

import gzip
import os

import numpy as np

__all__ = ["IDX_FILES", "load_idx", "load_idx_dataset"]

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


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
