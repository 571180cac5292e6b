"""Environment knobs that must be set before MindSpore is imported.

GLOG_v=3 keeps MindSpore's console to errors unless the user asks for more.

On AVX-512 CPUs MindSpore 2.x's oneDNN build dispatches 3x3 convolutions to the
reference kernel (~1 GFLOP/s). Capping the ISA at AVX2 selects the JIT GEMM
kernels (~100x faster, same results). The zoo's own kernels (src/kernels) lift the
cap again for their separate oneDNN copy.

GOMP_SPINCOUNT=30000: the zoo's kernels (src/kernels) parallelise with OpenMP, all from one
thread of theirs, and their OpenMP worker spins this long (about 0.1-1 ms, by CPU) after each
parallel region before it sleeps. That covers the gaps between the regions of one network, so
the worker is awake when the next region starts; a sleeping worker has to be woken for every
region, which after an idle pause cost batch-1 inference up to 1.8x (MobileNetV1 16 -> 9 ms,
YOLOv3-Tiny 43 -> 27 ms). Training speed is the same either way. libgomp's own default spins
ten times longer, which here took cores from MindSpore's threads (YOLOv3-Tiny batch 1: 35 ms).
Not set when the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT.

The user's own settings always win.
"""
import contextlib
import os

ISA_VARIABLE = "ONEDNN_MAX_CPU_ISA"
OMP_WAIT_VARIABLE = "OMP_WAIT_POLICY"
SPIN_VARIABLE = "GOMP_SPINCOUNT"
KERNEL_SPIN_COUNT = "30000"
# Set in a child process that must run with the user's settings (the PyTorch peer).
KEEP_USER_VARIABLE = "ZOO_KEEP_USER_CPU_ENV"
# The names apply() set itself, so that child processes (which inherit them) still know
# the values are the zoo's and not the user's.
SET_BY_ZOO_VARIABLE = "ZOO_CPU_ENV_SET"
_SET_BY_ZOO = set(filter(None, os.environ.get(SET_BY_ZOO_VARIABLE, "").split(",")))
# The user's own values (None: unset), before apply() changes them.
USER_VALUES = {name: None if name in _SET_BY_ZOO else os.environ.get(name)
               for name in (ISA_VARIABLE, OMP_WAIT_VARIABLE, SPIN_VARIABLE)}
USER_ISA = USER_VALUES[ISA_VARIABLE]


def _set_for_the_zoo(name: str, value: str) -> None:
    os.environ[name] = value
    _SET_BY_ZOO.add(name)
    os.environ[SET_BY_ZOO_VARIABLE] = ",".join(sorted(_SET_BY_ZOO))


def _cpu_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def apply() -> None:
    """Set the oneDNN ISA cap, the OpenMP spin count and MindSpore's log level, unless the
    user chose (idempotent)."""
    if os.environ.get(KEEP_USER_VARIABLE) != "1":
        if ISA_VARIABLE not in os.environ and _cpu_has_avx512():
            _set_for_the_zoo(ISA_VARIABLE, "AVX2")
        if OMP_WAIT_VARIABLE not in os.environ and SPIN_VARIABLE not in os.environ:
            _set_for_the_zoo(SPIN_VARIABLE, KERNEL_SPIN_COUNT)
    # MindSpore logs deprecation and backend-probe warnings on every run; show
    # errors only (GLOG_v=2 or 1 brings the rest back).
    os.environ.setdefault("GLOG_v", "3")


def _set_environment(values: dict) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextlib.contextmanager
def user_environment():
    """Inside this block the environment holds the user's own values of what :func:`apply`
    sets, for starting a child process that is not the zoo (the PyTorch peer)."""
    saved = {name: os.environ.get(name)
             for name in (*USER_VALUES, KEEP_USER_VARIABLE, SET_BY_ZOO_VARIABLE)}
    try:
        _set_environment(dict(USER_VALUES, **{KEEP_USER_VARIABLE: "1", SET_BY_ZOO_VARIABLE: None}))
        yield
    finally:
        _set_environment(saved)
