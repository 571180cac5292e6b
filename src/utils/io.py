"""Atomic file writes: a reader (or a crash) never sees a half-written file."""
import contextlib
import errno
import os
import re
import tempfile
import time
from typing import List, Optional

from src.errors import ZooError


class OutputError(ZooError):
    """The output location cannot be written (missing permission, full disk)."""


def _describe(exc: OSError, path: str) -> str:
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {path!r}; free space or choose another output_dir"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path!r}: permission denied; choose a writable output_dir"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):  # EEXIST: makedirs met a file
        return (f"cannot write {path!r}: a part of that path is a file, not a folder; "
                f"choose another output_dir")
    if exc.errno == errno.EDQUOT:
        return f"disk quota exceeded writing {path!r}; free space or choose another output_dir"
    return f"cannot write {path!r}: {exc.strerror or exc}"


# Temporary names made by atomic_path: ".<stem>.<8 random chars>.tmp<ext>"; MindSpore's
# checkpoint writer adds its own ".tmp" step, hence the optional second suffix.
_TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
_PROCESS_START = time.time()


def is_temporary_name(name: str) -> bool:
    """True for the name of a temporary file written by :func:`atomic_path`."""
    return bool(_TEMPORARY_NAME.match(os.path.basename(name)))


def remove_stale_temporaries(folder: str, older_than: Optional[float] = None) -> List[str]:
    """Delete temporaries a killed writer left in ``folder``; return their paths.

    Only files older than ``older_than`` (default: the start of this process)
    are removed, so a write in progress in another process is left alone.
    Never raises: cleaning up is best effort.
    """
    cutoff = _PROCESS_START if older_than is None else older_than
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        try:
            if (_TEMPORARY_NAME.match(entry.name) and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < cutoff):
                os.remove(entry.path)
                removed.append(entry.path)
        except OSError:
            continue
    return removed


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
