"""Small file helpers every stage shares: the cache folder and atomic writes."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from toolkit.errors import ToolkitError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class DiskFullError(ToolkitError, OSError):
    """The disk filled up during a write; nothing half-written was left behind."""


class UnsafePathError(ToolkitError, ValueError):
    """A path from a profile or manifest that points outside the folder it must stay in."""


def inside(folder: Path | str, relative: str) -> Path:
    """``folder / relative`` only if it stays inside ``folder`` (no absolute paths, ``..`` or escaping symlinks)."""
    folder = Path(folder).resolve()
    if Path(relative).is_absolute():
        raise UnsafePathError(f"{relative!r} is an absolute path; bundle paths are relative to {folder}")
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder):
        raise UnsafePathError(f"{relative!r} points outside {folder}; refusing to read or write it")
    return target


def cache_dir(*parts: str) -> Path:
    """Where slow-to-build things (demo teacher, emulator rootfs, runner builds) are kept between runs.

    ``XLNET_EDGE_CACHE`` overrides the default ``<project>/.cache``.
    """
    root = Path(os.environ.get("XLNET_EDGE_CACHE", PROJECT_ROOT / ".cache"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def build_lock(name: str) -> Iterator[None]:
    """Held while something shared in the cache is built (a venv, the emulator's root filesystem): another thread or
    process that needs it waits instead of building it a second time over the first."""
    import fcntl

    with open(cache_dir() / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place only if the block finishes.

    A crash or an exception leaves no file at ``final`` that looks valid but is not.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes owner-only files; artifacts are meant to be shared and served. Executables stay executable.
        mode = os.stat(tmp).st_mode & 0o777
        os.chmod(tmp, mode | 0o644 | (0o111 if mode & 0o100 else 0))
        os.replace(tmp, final)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(
                f"no space left on the device while writing {final}; nothing half-written was kept. Free some space "
                "and run the same command again (finished stages are kept)"
            ) from err
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(final: Path | str, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def atomic_write_text(final: Path | str, text: str) -> Path:
    return atomic_write_bytes(final, text.encode("utf-8"))


def atomic_write_json(final: Path | str, obj: Any) -> Path:
    return atomic_write_text(final, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
