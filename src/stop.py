"""Stopping training at a step boundary on SIGINT/SIGTERM (one object per run).

``train.py`` creates a :class:`StopControl`, installs its signal handling once
(before MindSpore loads) and passes it to :func:`src.engine.fit`, which checks
:attr:`StopControl.requested` between steps and marks the time it is training
with :meth:`StopControl.training`.
"""
import contextlib
import os
import signal
import threading


def signal_name(signum: int) -> str:
    """``SIGINT`` for 2, ``signal 99`` for a number that names no signal."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopControl:
    """A request to stop training after the current step, and the handlers that make it.

    Outside :meth:`training` there is nothing to save, so a signal has its
    usual effect at once; inside, the first one records a request and a
    second one stops at once.
    """

    def __init__(self):
        self.signum = None
        self.active = False

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask training to stop at the next step boundary (safe inside a signal handler)."""
        self.signum = int(signum)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def signal_name(self) -> str:
        """Name of the requesting signal (SIGINT when stopped without one)."""
        return signal_name(self.signum if self.requested else signal.SIGINT)

    @contextlib.contextmanager
    def training(self):
        """While the body runs, a signal requests a stop instead of ending the process."""
        self.active = True
        try:
            yield self
        finally:
            self.active = False

    def install(self) -> None:
        """Take SIGINT and SIGTERM for this object; call once, before MindSpore loads.

        For a single process only: data-parallel ranks stopping at different
        steps would block each other in the next all-reduce, so they keep the
        default handlers. While it runs a graph MindSpore replaces the SIGINT
        handler with one that turns SIGINT into SIGTERM, so SIGINT is blocked
        here before MindSpore starts any thread (threads inherit the block)
        and a watcher thread takes it with sigwait. SIGTERM keeps an ordinary
        handler, which MindSpore leaves alone.
        """
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        threading.Thread(target=self._watch_sigint, name="sigint-watcher", daemon=True).start()
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _watch_sigint(self) -> None:
        while True:
            signal.sigwait({signal.SIGINT})
            if not self.active:
                _stop_now("\nerror: interrupted (Ctrl-C)\n", 128 + signal.SIGINT)
            if self.requested:
                _stop_now("\nreceived SIGINT again: stopping now\n", 128 + signal.SIGINT)
            self.request(signal.SIGINT)
            os.write(2, b"\nreceived SIGINT: stopping after the current step and saving a "
                        b"checkpoint (press Ctrl-C again to stop at once)\n")

    def _on_sigterm(self, signum, _frame) -> None:
        # A second SIGTERM (or one outside training) gets the default action: stop at once.
        signal.signal(signum, signal.SIG_DFL)
        if not self.active:
            os.kill(os.getpid(), signum)
            return
        self.request(signum)
        # os.write, not print: the main thread may be inside a print right now.
        os.write(2, (f"\nreceived {signal_name(signum)}: stopping after the current step and "
                     f"saving a checkpoint (send it again to stop at once)\n").encode())


def _stop_now(message: str, code: int) -> None:
    os.write(2, message.encode())
    os._exit(code)  # pylint: disable=protected-access
