"""Files written under a temporary name and renamed, so a crash never leaves a half-written file
under its final name: the one write-then-rename helper of the package."""

import contextlib
import os
import shutil
from collections.abc import Iterator

__all__ = ["remove", "replacing", "write_bytes"]

# Suffixes of two parts that name a format as a whole (Keras 3 saves weights only to `.weights.h5`).
_DOUBLE_EXTENSIONS = (".weights.h5",)


def remove(path: str) -> None:
    """Removes a file or a directory tree; nothing if `path` does not exist."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """Yields a temporary name next to `path` for a file or directory; once the block has written
    it, it takes the place of `path` (replacing an earlier one), else it is removed.

    The temporary name keeps the extension (`model.partial.keras`, `model.partial.weights.h5`), so
    Keras picks the same format.
    """
    extension = next((e for e in _DOUBLE_EXTENSIONS if path.endswith(e)), os.path.splitext(path)[1])
    root = path[: len(path) - len(extension)]
    temporary = f"{root}.partial{extension}"
    remove(temporary)
    try:
        yield temporary
    except BaseException:
        remove(temporary)
        raise
    if os.path.isdir(path):  # one rename cannot replace a directory
        stale = f"{root}.stale{extension}"
        remove(stale)
        os.rename(path, stale)
        os.rename(temporary, path)
        remove(stale)
    else:
        os.replace(temporary, path)


def write_bytes(path: str, content: bytes) -> None:
    """Writes `content` to `path` through a temporary file."""
    with replacing(path) as temporary:
        with open(temporary, "wb") as f:
            f.write(content)
