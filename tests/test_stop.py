"""The stop object train.py passes to fit (issue 12): what SIGINT and SIGTERM do, in and out of training.

Each case runs a small Python process (no MindSpore) that installs a
StopControl, marks itself as training or not, and signals itself.
"""
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from src.stop import StopControl

    stop = StopControl()
    stop.install()
    sig = getattr(signal, sys.argv[1])
    count = int(sys.argv[2])

    def signal_and_wait():
        was_requested = stop.requested
        os.kill(os.getpid(), sig)
        deadline = time.time() + 5  # a signal that stops the process does so before this
        while (was_requested or not stop.requested) and time.time() < deadline:
            time.sleep(0.01)

    if sys.argv[3] == "training":
        with stop.training():
            for _ in range(count):
                signal_and_wait()
            print("requested", stop.requested, stop.signal_name, stop.signum, flush=True)
    else:
        signal_and_wait()
    print("still running", flush=True)
""")


def run(sig, count, where):
    return subprocess.run([sys.executable, "-c", SCRIPT, sig, str(count), where], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_one_signal_while_training_requests_a_stop_and_says_so(sig, code):
    proc = run(sig, 1, "training")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"requested True {sig} {code - 128}", "still running"]
    again = "press Ctrl-C again" if sig == "SIGINT" else "send it again"
    assert proc.stderr.strip() == (f"received {sig}: stopping after the current step and saving a "
                                   f"checkpoint ({again} to stop at once)")


def test_a_second_sigint_stops_at_once():
    proc = run("SIGINT", 2, "training")
    assert proc.returncode == 130 and "requested" not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "received SIGINT again: stopping now"


def test_a_second_sigterm_stops_at_once():
    proc = run("SIGTERM", 2, "training")
    assert proc.returncode == -signal.SIGTERM and "requested" not in proc.stdout


def test_outside_training_a_signal_has_its_usual_effect():
    sigint = run("SIGINT", 1, "idle")
    assert sigint.returncode == 130 and sigint.stdout == ""
    assert sigint.stderr.strip() == "error: interrupted (Ctrl-C)"
    sigterm = run("SIGTERM", 1, "idle")
    assert sigterm.returncode == -signal.SIGTERM and sigterm.stdout == ""


def test_a_fresh_stop_object_requests_nothing():
    from src.stop import StopControl, signal_name

    stop = StopControl()
    assert not stop.requested and not stop.active and stop.signal_name == "SIGINT"
    with stop.training():
        assert stop.active
    assert not stop.active
    stop.request(signal.SIGTERM)
    assert stop.requested and stop.signal_name == "SIGTERM"
    assert signal_name(99) == "signal 99"
