"""Atomic file writes: write to a temporary file in the destination folder, then rename.

A reader (or a crash, or Ctrl-C) never sees a half-written file at the final path.
No torch here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; on success rename it to `path`, on error delete it."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # keep the extension at the end: some writers (OpenCV video) pick the format from it
    suffix = ".tmp" + os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_dir_mode() -> int:
    """Permissions of a new folder under the current umask (mkdtemp makes 0700)."""
    return 0o777 & ~_umask()


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
