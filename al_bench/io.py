"""Atomic file writes: a killed run never leaves a half-written file behind."""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` survive a power cut (a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@functools.cache
def _file_mode() -> int:
    """The mode open() gives a new file (0o666 minus the umask); mkstemp's own is 0o600, which
    would hide the results of a shared sweep from the rest of a team. Read once: setting the umask
    to read it is not thread-safe."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class DiskFull(OSError):
    """No space was left on the device while writing one of a run's files."""

    def __str__(self) -> str:
        return str(self.strerror)


def _disk_full(exc: BaseException, folder: Path) -> bool:
    """Whether `exc` comes from a full disk or quota. torch.save reports a failed write as a
    RuntimeError of its own ("unexpected pos ...", "PytorchStreamWriter failed writing"), so those
    count when the folder's device has (almost) no space left."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, RuntimeError) and ("unexpected pos" in str(exc) or "PytorchStreamWriter" in str(exc)):
        try:
            return shutil.disk_usage(folder).free < 16 * 2**20
        except OSError:
            return False
    return False


def _atomic_write(path: Path, write) -> None:
    """Write into a temporary file next to `path`, fsync it, rename it over `path`: a reader (or a
    resumed run) sees the old file or the new one, never a mix. A full disk raises DiskFull, which
    names the file and says that the run can be resumed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        if _disk_full(exc, path.parent):
            raise _disk_full_error(path) from exc
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _file_mode())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if _disk_full(exc, path.parent):
            raise _disk_full_error(path) from exc
        raise
    _fsync_dir(path.parent)


def _disk_full_error(path: Path) -> DiskFull:
    return DiskFull(errno.ENOSPC, f"no space left on the device holding {path.parent} while writing {path.name}; "
                                  f"free some space, then rerun the same command to resume")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    _atomic_write(path, lambda f: np.save(f, array))


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    _atomic_write(path, lambda f: np.savez(f, **arrays))


def atomic_torch_save(path: Path, obj: Any) -> None:
    import torch

    _atomic_write(path, lambda f: torch.save(obj, f))


def append_jsonl(path: Path, record: dict) -> None:
    """Append one whole line with a single write() and fsync, so a kill leaves either the whole
    line or none of it (readers still skip a torn last line, see read_jsonl)."""
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    size = os.fstat(fd).st_size
    try:
        written = os.write(fd, line)
        if written != len(line):  # disk full or quota: take the partial line back out
            os.ftruncate(fd, size)
            raise _disk_full_error(Path(path))
        os.fsync(fd)
    except OSError as exc:
        if isinstance(exc, DiskFull) or not _disk_full(exc, Path(path).parent):
            raise
        os.ftruncate(fd, size)
        raise _disk_full_error(Path(path)) from exc
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict]:
    """The complete JSON lines of a file; a torn last line (no newline) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    if lines and lines[-1] != "":
        lines = lines[:-1]  # torn
    return [json.loads(line) for line in lines if line.strip()]
