"""Environment knobs that must be set before MindSpore is imported.

GLOG_v=3 keeps MindSpore's console to errors unless the user asks for more.

On AVX-512 CPUs MindSpore 2.x's oneDNN build dispatches 3x3 convolutions to the
reference kernel (~1 GFLOP/s). Capping the ISA at AVX2 selects the JIT GEMM
kernels (~100x faster, same results). The user's own setting always wins, and
nothing changes on CPUs without AVX-512.
"""
import os

ISA_VARIABLE = "ONEDNN_MAX_CPU_ISA"
# The user's own ONEDNN_MAX_CPU_ISA (None: unset), before apply() caps it; the PyTorch
# peer process of benchmark.py runs with it, as PyTorch would outside the zoo.
USER_ISA = os.environ.get(ISA_VARIABLE)


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
    """Set the oneDNN ISA cap and quiet MindSpore's logging, unless the user chose (idempotent)."""
    if ISA_VARIABLE not in os.environ and _cpu_has_avx512():
        os.environ[ISA_VARIABLE] = "AVX2"
    # MindSpore logs deprecation and backend-probe warnings on every run; show
    # errors only (GLOG_v=2 or 1 brings the rest back).
    os.environ.setdefault("GLOG_v", "3")
