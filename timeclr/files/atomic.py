"""Files that appear whole or not at all.

A run can be killed at any moment (a pre-empted node, ``kill -9``, a full disk); a reader must never
find half a checkpoint, half a results file or half a manifest. So every output is written to a
temporary name beside its destination and moved into place by ``os.replace``, which is atomic on
one file system: the destination holds either the old complete file or the new complete one.
"""
import errno
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from timeclr.errors import DiskFull

# a full disk and a full quota: the user's to fix, never a reason to keep half a file
_FULL = (errno.ENOSPC, errno.EDQUOT)


def temp_path(path) -> Path:
    """The hidden temporary name used while ``path`` is being written: ``dir/.STEM.tmp-PID.SUFFIX``.
    The suffix stays last because writers such as PyAV pick the file format from it; the process id
    keeps two writers of one file (two ranks, two jobs) off each other's temporary file."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


@contextmanager
def atomic_path(path):
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    For writers that take a path (``torch.save``, ``fig.savefig``, an encoder)::

        with atomic_path("checkpoint.pt") as tmp:
            torch.save(state, tmp)

    A full disk (ENOSPC, EDQUOT) while writing is a ``DiskFull`` naming ``path`` and the space
    left, after the temporary file is removed: the file at ``path`` before, if any, is unchanged.
    """
    tmp = temp_path(path)
    try:
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.remove(tmp)
    except OSError as e:
        if not disk_full(e) or isinstance(e, DiskFull):
            raise
        raise DiskFull(f"{path}: {e.strerror} ({free_space(path)} free there); nothing was written, "
                       "and the file there before, if any, is unchanged") from None


def disk_full(e: BaseException) -> bool:
    """Whether ``e`` says the disk (or the user's quota) is full."""
    return isinstance(e, DiskFull) or (isinstance(e, OSError) and e.errno in _FULL)


def free_space(path) -> str:
    """The free space of the file system holding ``path``'s folder, in words (``'3.2 MB'``)."""
    try:
        free = shutil.disk_usage(Path(path).parent).free
    except OSError:
        return "unknown"
    return f"{free / 1e9:.1f} GB" if free >= 1e9 else f"{free / 1e6:.1f} MB"


@contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """``open(path, mode)`` whose file appears at ``path`` only once the ``with`` block ends
    without an error. Text modes default to UTF-8."""
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f


def write_json(path, obj, indent: int = 2):
    """``obj`` as JSON at ``path``, atomically, ending in a newline."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")
