"""File-system helpers for crash-safe writes: fsync, atomic file replace, and writer locks.

A writer holds an exclusive lock on ``tmp/<id>.lock`` while it builds and publishes an artifact.
The operating system drops the lock when the process dies (even on SIGKILL), which is how the
sweep on open tells a crashed writer's leftovers from a live writer's work in progress.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import IO

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

# Without advisory locks (Windows) leftovers are only swept once they are clearly abandoned.
_STALE_WITHOUT_LOCKS_S = 6 * 3600


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside `path` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root`, so a rename after it publishes complete data."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{time.monotonic_ns()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


class WriterLock:
    """An exclusive, non-blocking advisory lock on a file; released on close or process death."""

    def __init__(self, path: Path):
        self.path = path
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Kept open for as long as the lock is held (closing the file drops the lock).
        f = open(self.path, "a+b")
        if fcntl is None:  # pragma: no cover - Windows: fall back to age of the leftovers
            self._file = f
            return True
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._file = f
        return True

    def release(self, *, unlink: bool = True) -> None:
        if self._file is None:
            return
        if unlink:
            # Unlink while still holding the lock: nobody can be waiting on this inode for work.
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self._file.close()
        self._file = None


def abandoned(path: Path, lock_path: Path) -> bool:
    """True when nobody holds `lock_path`, so whatever `path` is, its writer is gone.

    On success the lock is taken and released immediately; callers that must act atomically
    with the check use :class:`WriterLock` directly.
    """
    if fcntl is None:  # pragma: no cover - Windows
        try:
            return time.time() - path.stat().st_mtime > _STALE_WITHOUT_LOCKS_S
        except FileNotFoundError:
            return False
    lock = WriterLock(lock_path)
    if not lock.try_acquire():
        return False
    lock.release()
    return True
