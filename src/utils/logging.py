"""Run logging: lines to the console (main rank) and to the run's log file."""
import datetime
import os
import sys


class RunLogger:
    """Print a line (main process only) and append it to ``log_path`` (every process)."""

    def __init__(self, log_path: str = None, echo: bool = True):
        self.log_path = log_path
        self.echo = echo
        if log_path:
            os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)

    def __call__(self, line: str) -> None:
        if self.echo:
            print(line, flush=True)
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def live(self, line: str) -> None:
        """A progress line that overwrites itself on a terminal (not written to the file)."""
        if self.echo and sys.stdout.isatty():
            sys.stdout.write("\r" + line[:150].ljust(150))
            sys.stdout.flush()

    def end_live(self) -> None:
        if self.echo and sys.stdout.isatty():
            sys.stdout.write("\r" + " " * 150 + "\r")
            sys.stdout.flush()


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` for an ETA."""
    return str(datetime.timedelta(seconds=max(0, int(round(seconds)))))
