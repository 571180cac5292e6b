"""Refusing NaN/Inf model outputs: a score or result file made of them would mislead."""
import numpy as np

from src.errors import ZooError


class NonFiniteError(ZooError):
    """A model gave NaN or Inf outputs (bad normalisation, a diverged checkpoint, a broken export)."""


class NonFiniteTally:
    """Counts the items (files, batches, images) whose arrays are not all finite.

    Entry points check every item, skip the bad ones, and call :meth:`raise_if_any`
    before scoring or keeping anything, so the message gives the count and the first.
    """

    def __init__(self, unit: str):
        self.unit = unit
        self.total = 0
        self.count = 0
        self.first = None

    def check(self, name, *arrays) -> bool:
        """True when every value of ``arrays`` is finite; else count ``name``."""
        self.total += 1
        if all(np.isfinite(np.asarray(a)).all() for a in arrays):
            return True
        self.count += 1
        if self.first is None:
            self.first = name
        return False

    def raise_if_any(self, consequence: str, fix: str) -> None:
        """NonFiniteError naming the count and the first item, if any was counted."""
        if self.count:
            raise NonFiniteError(f"NaN or Inf in the model's outputs for {self.count} of "
                                 f"{self.total} {self.unit}, first {self.first}; {consequence}; "
                                 f"{fix}")
