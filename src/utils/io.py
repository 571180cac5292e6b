"""Atomic file writes: a reader (or a crash) never sees a half-written file."""
import contextlib
import errno
import os
import tempfile

from src.errors import ZooError


class OutputError(ZooError):
    """The output location cannot be written (missing permission, full disk)."""


def _describe(exc: OSError, path: str) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {path!r}; free space or choose another output_dir"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path!r}: permission denied; choose a writable output_dir"
    return f"cannot write {path!r}: {exc.strerror or exc}"


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path in the same folder; rename it to ``path`` on success.

    The temporary file is removed if the body fails, so earlier versions of
    ``path`` stay intact. Raises :class:`OutputError` for unwritable locations.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        # Keep the real extension last: some writers (MindSpore) append theirs otherwise.
        stem, ext = os.path.splitext(os.path.basename(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp" + ext, dir=folder)
        os.close(fd)
    except OSError as exc:
        raise OutputError(_describe(exc, path)) from None
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        _fsync_file(tmp)
        os.replace(tmp, path)
        _fsync_dir(folder)
    except OSError as exc:
        _silent_remove(tmp)
        raise OutputError(_describe(exc, path)) from None
    except BaseException:
        _silent_remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def _fsync_file(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _silent_remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
