"""Wall-clock timing that a shared, drifting VM cannot bias: alternated calls, medians."""
import statistics
import time

# Pause before each timed call. onnxruntime's threads keep spinning on a core for about 50 ms
# after a run, and PyTorch's OpenMP threads spin too; without the pause the call timed next
# (another runtime, or the peer process) loses a core for that long. With it, every call starts
# on idle cores.
SETTLE_SECONDS = 0.1


def interleaved_median_seconds(fns, repeats: int, warmup: int = 1,
                               settle: float = SETTLE_SECONDS) -> list:
    """Median wall time of each ``fn()`` over ``repeats`` calls after ``warmup`` calls.

    With several functions the calls alternate (A B, B A, A B, ...), so that the
    speed drift of a shared VM (seen here: +-10% over minutes) hits each alike;
    timing one after the other once made a 1.02x ratio read 0.91x. Each timed call
    follows a ``settle`` pause (see SETTLE_SECONDS).
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for repeat in range(repeats):
        order = list(range(len(fns)))
        for index in (order if repeat % 2 == 0 else order[::-1]):
            time.sleep(settle)
            start = time.perf_counter()
            fns[index]()
            times[index].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]
