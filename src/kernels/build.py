"""Build the zoo's CPU kernels (``zoo_kernels.cc``) once per machine and cache the library.

The kernels link the oneDNN of the ``onednn-cpu-gomp`` / ``onednn-devel-cpu-gomp`` wheels
(requirements.txt). MindSpore bundles its own ``libdnnl.so.3``; a process can hold only one
library per soname, so the wheel's library is copied next to the kernels under the soname
``libzdnnl.so`` (an in-place edit of the ELF ``DT_SONAME`` string) and the kernels link that copy.

The result lives in ``$ZOO_KERNEL_CACHE`` (default ``~/.cache/mindspore_zoo/kernels``) in a folder
named after the hash of the source, the oneDNN library and the compiler, so a change to any of
them rebuilds. Concurrent builds (data-parallel workers) are safe: each builds in a private folder
and the first to finish renames it into place.
"""
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from typing import Optional, Tuple

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo_kernels.cc")
LIBRARY_NAME = "zoo_kernels.so"
ONEDNN_COPY = "libzdnnl.so"  # no longer than "libdnnl.so.3": the soname is rewritten in place
CACHE_VARIABLE = "ZOO_KERNEL_CACHE"


class KernelBuildError(RuntimeError):
    """The kernels cannot be built here; the message says why and what would fix it."""


def onednn_paths(prefix: str = sys.prefix) -> Tuple[str, str]:
    """``(include dir, libdnnl.so.3)`` of the oneDNN wheels installed in ``prefix``."""
    include = os.path.join(prefix, "include")
    library = os.path.join(prefix, "lib", "libdnnl.so.3")
    if not os.path.isfile(os.path.join(include, "oneapi", "dnnl", "dnnl.hpp")):
        raise KernelBuildError(f"oneDNN headers not found in {include}; "
                               f"pip install onednn-devel-cpu-gomp (see requirements.txt)")
    if not os.path.isfile(library):
        raise KernelBuildError(f"oneDNN library not found at {library}; "
                               f"pip install onednn-cpu-gomp (see requirements.txt)")
    return include, library


def compiler() -> str:
    """The C++ compiler: ``$CXX`` or g++."""
    name = os.environ.get("CXX", "g++")
    path = shutil.which(name)
    if path is None:
        raise KernelBuildError(f"no C++ compiler ({name}) on PATH; install g++ "
                               f"(apt-get install g++) or set CXX")
    return path


def set_soname(path: str, soname: str) -> None:
    """Rewrite the ``DT_SONAME`` of the ELF64 little-endian library ``path`` in place.

    The new name must not be longer than the old one: it overwrites the old string in the
    dynamic string table, so nothing else in the file moves.
    """
    with open(path, "r+b") as f:
        data = f.read()
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise KernelBuildError(f"{path} is not a 64-bit little-endian ELF library")
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        dynamic = next((s for s in sections if s[1] == 6), None)  # SHT_DYNAMIC
        if dynamic is None:
            raise KernelBuildError(f"{path} has no dynamic section")
        strtab_offset = sections[dynamic[6]][4]
        for entry in range(dynamic[5] // 16):
            tag, value = struct.unpack_from("<qQ", data, dynamic[4] + 16 * entry)
            if tag == 14:  # DT_SONAME
                start = strtab_offset + value
                old = data[start:data.index(b"\0", start)]
                new = soname.encode()
                if len(new) > len(old):
                    raise KernelBuildError(f"soname {soname!r} is longer than {old.decode()!r}")
                f.seek(start)
                f.write(new + b"\0" * (len(old) - len(new) + 1))
                return
        raise KernelBuildError(f"{path} has no DT_SONAME")


def is_whole_elf(path: str) -> bool:
    """True if ``path`` is an ELF64 file as long as its section table says: a truncated library
    would crash the process (SIGBUS) when loaded instead of failing."""
    try:
        with open(path, "rb") as f:
            header = f.read(64)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:
        return False
    shoff, = struct.unpack_from("<Q", header, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", header, 0x3A)
    return size >= shoff + shentsize * shnum


def _fingerprint(cxx: str, library: str) -> str:
    digest = hashlib.sha256()
    with open(SOURCE, "rb") as f:
        digest.update(f.read())
    stat = os.stat(library)
    digest.update(f"{library}:{stat.st_size}:{int(stat.st_mtime)}:{cxx}".encode())
    return digest.hexdigest()[:16]


def cache_root() -> str:
    """Where built kernels are kept (``$ZOO_KERNEL_CACHE`` or ``~/.cache/mindspore_zoo/kernels``)."""
    return os.environ.get(CACHE_VARIABLE) or os.path.join(
        os.path.expanduser("~"), ".cache", "mindspore_zoo", "kernels")


def build_library(root: Optional[str] = None) -> str:
    """Path of the built kernel library, compiling it first if this machine has none yet."""
    include, library = onednn_paths()
    cxx = compiler()
    root = root or cache_root()
    final = os.path.join(root, _fingerprint(cxx, library))
    built = os.path.join(final, LIBRARY_NAME)
    if os.path.isdir(final):
        if all(is_whole_elf(os.path.join(final, name)) for name in (LIBRARY_NAME, ONEDNN_COPY)):
            return built
        shutil.rmtree(final, ignore_errors=True)  # damaged (disk full, copied in part): rebuild
    try:
        os.makedirs(root, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".build-", dir=root)
    except OSError as exc:
        raise KernelBuildError(f"cannot build in {root} ({exc.strerror or exc}); set "
                               f"{CACHE_VARIABLE} to a writable folder") from None
    try:
        shutil.copy2(library, os.path.join(work, ONEDNN_COPY))
        set_soname(os.path.join(work, ONEDNN_COPY), ONEDNN_COPY)
        # -ffp-contract=off: no fused multiply-add, so element-wise kernels round like MindSpore's.
        command = [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-ffp-contract=off",
                   SOURCE, "-I", include,
                   "-L", work, f"-l:{ONEDNN_COPY}", "-Wl,-rpath,$ORIGIN",
                   "-o", os.path.join(work, LIBRARY_NAME)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["no output"])[0]
            raise KernelBuildError(f"compiling {SOURCE} failed: {first}")
        try:
            os.rename(work, final)
        except OSError:  # another process finished first: use its build
            if not os.path.isfile(built):
                raise
    finally:
        if os.path.isdir(work):
            shutil.rmtree(work, ignore_errors=True)
    return built
