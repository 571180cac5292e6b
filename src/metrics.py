"""Classification metrics (numpy only): one definition for eval.py and postprocess.py."""
from typing import Tuple

import numpy as np

TOP_K = 5


def top_k_counts(logits: np.ndarray, labels: np.ndarray) -> Tuple[int, int]:
    """``(top-1 hits, top-5 hits)`` of a batch of logits (``argsort`` of the negated logits)."""
    k = min(TOP_K, logits.shape[1])
    top_k = np.argsort(-logits, axis=1)[:, :k]
    return int((top_k[:, 0] == labels).sum()), int((top_k == labels[:, None]).any(axis=1).sum())
