"""Fetch a published weights file into a cache, with a progress bar and a sha256 check.

The file is streamed to a temporary name next to its cache entry and renamed
only once its hash is right, so a failed or interrupted download never leaves
a file that a later run would trust.
"""
import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

from src.pretrained import ConversionError
from src.pretrained.known_files import CHUNK, KnownFile, sha256_of

CACHE_ENV = "MS_ZOO_CACHE"  # overrides the default cache folder


def default_cache_dir() -> str:
    """``$MS_ZOO_CACHE`` or ``~/.cache/mindspore_model_zoo/pretrained``."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "mindspore_model_zoo")
    return os.path.join(base, "pretrained")


def _progress(name: str, done: int, total: int, stream) -> None:
    if total > 0:
        width = 30
        filled = int(width * done / total)
        stream.write(f"\rdownloading {name}: [{'#' * filled}{'.' * (width - filled)}] "
                     f"{100 * done / total:5.1f}% ({done / 1e6:.1f}/{total / 1e6:.1f} MB)")
    else:
        stream.write(f"\rdownloading {name}: {done / 1e6:.1f} MB")
    stream.flush()


def fetch(known: KnownFile, cache_dir: str = None, url: str = None, stream=None,
          log=print) -> str:
    """Path of ``known`` in the cache, downloading it from ``url`` (default its URL) if needed."""
    stream = stream or sys.stderr
    cache_dir = cache_dir or default_cache_dir()
    path = os.path.join(cache_dir, known.file_name)
    if os.path.isfile(path):
        if not known.verifiable() or known.matches(sha256_of(path)):
            log(f"using cached {path}")
            return path
        os.remove(path)  # damaged or replaced: never trusted again
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError as exc:
        raise ConversionError(f"cannot create cache folder {cache_dir!r} ({exc.strerror}); "
                              f"pass a writable --cache_dir") from None
    url = url or known.url
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{known.file_name}.", suffix=".part", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    total = int(response.headers.get("Content-Length") or 0)
                    done, last = 0, 0.0
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if time.time() - last > 0.2:
                            _progress(known.file_name, done, total, stream)
                            last = time.time()
                    _progress(known.file_name, done, total, stream)
                    stream.write("\n")
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise ConversionError(f"cannot download {url} ({reason}); check the network, or "
                                      f"download the file yourself and pass --input") from None
        hexdigest = digest.hexdigest()
        if known.verifiable() and not known.matches(hexdigest):
            want = known.sha256 or f"{known.sha256_prefix}..."
            raise ConversionError(f"{url} downloaded with sha256 {hexdigest}, expected {want}; "
                                  f"the download is damaged or the file changed: nothing was "
                                  f"cached, try again")
        if not known.verifiable():
            log(f"note: no published sha256 is recorded for {known.file_name}; its sha256 is "
                f"{hexdigest}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
