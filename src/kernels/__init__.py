"""The zoo's own CPU kernels for convolution, max pooling, BatchNorm and LeakyReLU, and for
convolution + BatchNorm + activation fused at inference.

MindSpore 2.10 runs CPU convolutions on its bundled oneDNN with plain NCHW layouts, capped at
AVX2 (src/cpu_env.py); PyTorch runs the same convolutions about 2x faster on blocked layouts with
the full ISA. These kernels give MindSpore that path: AOT custom operators (``ops.Custom``) on a
separate oneDNN (src/kernels/zoo_kernels.cc), used by the layers in :mod:`src.kernels.cells`.
Results equal MindSpore's operators to float32 rounding. :func:`keep_blocked_layouts` lets
runs of these layers hand oneDNN's blocked layout to one another instead of NCHW.

``cpu_kernels`` in the config picks them: ``auto`` (default) uses them on CPU with float32
training (amp_level O0) when they build, else MindSpore's operators with a one-line note;
``zoo`` requires them; ``mindspore`` never uses them. Exported models (MINDIR, ONNX, AIR) always
contain MindSpore's standard operators.
"""
import contextlib
import ctypes
import os
import sys

from src import cpu_env
from src.errors import ConfigError
from src.kernels.build import KernelBuildError, build_library

MODES = ("auto", "zoo", "mindspore")

_library = {"path": None, "handle": None, "error": None}
# Whether layers built now use the zoo's kernels: set by layers_use_kernels(), read by the cells.
_use = {"active": False}
_noted = set()


def load() -> str:
    """Path of the loaded kernel library (built on first use); raises KernelBuildError."""
    if _library["path"] is None:
        if _library["error"] is not None:
            raise KernelBuildError(_library["error"])
        try:
            if not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
                raise KernelBuildError("the zoo's CPU kernels are built for x86-64 Linux only")
            path = build_library()
            try:
                handle = ctypes.CDLL(path)
            except OSError as exc:
                raise KernelBuildError(f"cannot load {path}: {exc}") from None
        except (KernelBuildError, OSError) as exc:
            _library["error"] = str(exc)
            raise KernelBuildError(str(exc)) from None
        if cpu_env.USER_ISA is None:
            # The AVX2 cap in the environment is for MindSpore's oneDNN; this copy keeps
            # convolutions in blocked layouts, where the full ISA is fast.
            handle.ZooUseFullIsa()
        _library.update(path=path, handle=handle)
    return _library["path"]


def set_threads(threads: int) -> None:
    """Threads of the kernels' oneDNN (MindSpore's ``runtime_num_threads``)."""
    if _library["handle"] is not None and threads > 0:
        _library["handle"].ZooSetThreads(int(threads))


def implementations() -> str:
    """oneDNN implementation of each primitive used so far, one per line (for profiles)."""
    if _library["handle"] is None:
        return ""
    _library["handle"].ZooImplementations.restype = ctypes.c_char_p
    return _library["handle"].ZooImplementations().decode()


def available(mode: str, device_target: str, amp_level: str, threads: int = 0) -> bool:
    """Whether a network for this setting should use the zoo's kernels (building them if needed).

    ``auto`` says no with a one-line note when they cannot be used; ``zoo`` raises ConfigError.
    """
    if mode not in MODES:
        raise ConfigError(f"invalid cpu_kernels {mode!r}; choose one of {list(MODES)}")
    if mode == "mindspore":
        return False
    unsupported = None
    if device_target != "CPU":
        unsupported = f"they run on CPU only (device_target is {device_target})"
    elif amp_level != "O0":
        unsupported = f"they are float32 only (amp_level is {amp_level}; use O0)"
    if unsupported is None:
        try:
            load()
        except KernelBuildError as exc:
            unsupported = str(exc)
    if unsupported is not None:
        if mode == "zoo":
            raise ConfigError(f"cpu_kernels=zoo, but the zoo's CPU kernels cannot be used: "
                              f"{unsupported}; or use --cpu_kernels=auto")
        if device_target == "CPU" and unsupported not in _noted:
            _noted.add(unsupported)
            print(f"note: using MindSpore's CPU operators (slower): {unsupported}", file=sys.stderr)
        return False
    set_threads(threads)
    return True


def active() -> bool:
    """True when layers built now use the zoo's kernels."""
    return _use["active"]


@contextlib.contextmanager
def layers_use_kernels(use: bool = True):
    """Layers built inside this block use the zoo's kernels when ``use`` (see :func:`available`).

    Outside such a block layers are MindSpore's standard ones, e.g. for ``mindspore_hub_conf``
    users who export the network themselves.
    """
    previous = _use["active"]
    _use["active"] = bool(use)
    try:
        yield
    finally:
        _use["active"] = previous


@contextlib.contextmanager
def standard_operators(net):
    """Inside this block ``net`` compiles to MindSpore's standard operators only.

    Exported files (MINDIR, ONNX, AIR) must not hold the zoo's custom operators; graphs
    compiled outside the block keep using the kernels.
    """
    switched = [cell for _, cell in net.cells_and_names() if getattr(cell, "zoo_kernel", False)]
    for cell in switched:
        cell.zoo_kernel = False
    try:
        yield
    finally:
        for cell in switched:
            cell.zoo_kernel = True


def activation_block() -> int:
    """Channels per block of the layout the kernels' convolutions use on this CPU (0: none)."""
    load()
    return int(_library["handle"].ZooActivationBlock())


def _layout_plan(layers, block: int):
    """Per layer of a sequence: ``(x_blocked, y_blocked)`` for a convolution block, ``blocked``
    for a max pool, None for any other layer (which sees plain NCHW)."""
    from src.kernels.cells import MaxPool2d  # pylint: disable=import-outside-toplevel

    def kind(cell):
        if isinstance(cell, MaxPool2d) and cell.zoo_kernel:
            return "pool"
        channels = getattr(cell, "blocked_channels", lambda: None)()
        return channels  # (in, out) or None

    kinds = [kind(cell) for cell in layers]
    plan, blocked = [], False
    for index, this in enumerate(kinds):
        if this is None:
            plan.append(None)
        elif this == "pool":
            plan.append(blocked)
        else:
            # The output stays blocked only for the next convolution of the same sequence
            # (max pools in between keep it); the sequence's own output is always plain.
            following = next((k for k in kinds[index + 1:] if k != "pool"), None)
            y_blocked = (following is not None and this[1] % block == 0
                         and following[0] % block == 0)
            plan.append((blocked, y_blocked))
            blocked = y_blocked
    return plan


def keep_blocked_layouts(net) -> int:
    """Let runs of kernel convolutions (without bias), BatchNorm, element-wise activations and
    max pools pass oneDNN's blocked layout to one another instead of converting to NCHW and
    back around every layer (forward and backward). The runs are each ``nn.SequentialCell`` of
    ``net`` and the lists of layers a cell's ``layer_sequences()`` returns (layers that feed
    only the next one, in order). Every run still takes and returns NCHW. Returns the number
    of layers changed.

    A layer that belongs to more than one run is left alone: another path could read it.
    """
    import mindspore.nn as nn  # pylint: disable=import-outside-toplevel

    sequences = []
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.SequentialCell):
            sequences.append(list(cell))
        sequences.extend(list(run) for run in getattr(cell, "layer_sequences", lambda: [])())
    if not sequences or not any(getattr(c, "zoo_kernel", False) for _, c in net.cells_and_names()):
        return 0
    block = activation_block()
    if not block:
        return 0
    members = {}
    for sequence in sequences:
        for cell in sequence:
            members[id(cell)] = members.get(id(cell), 0) + 1
    changed = 0
    for sequence in sequences:
        layers = [cell if members[id(cell)] == 1 else None for cell in sequence]
        for cell, layout in zip(layers, _layout_plan(layers, block)):
            if isinstance(layout, tuple) and any(layout):
                cell.set_layout(*layout)
                changed += 1
            elif layout is True:
                cell.set_layout(True)
                changed += 1
    return changed


def for_config(cfg):
    """Layers built inside this block use the zoo's kernels when ``cfg`` allows
    (``cfg.cpu_kernels``, ``device_target``, ``amp_level``)."""
    import mindspore as ms  # pylint: disable=import-outside-toplevel
    return layers_use_kernels(available(cfg.cpu_kernels, cfg.device_target, cfg.amp_level,
                                        ms.get_context("runtime_num_threads")))
