"""Published weights of other frameworks -> the zoo's self-describing checkpoints.

* :mod:`.darknet` reads Darknet ``.cfg`` + ``.weights``;
* :mod:`.torch_pickle` reads PyTorch ``.pth`` files without running pickled code;
* :mod:`.recipes` says, per (source, model), which tensors go where, which
  network options make the zoo's network compute what the source computed,
  and how the source preprocesses its input;
* :mod:`.known_files` lists published files by sha256; :mod:`.download` fetches them;
* :mod:`.convert` fills a network from a recipe and writes the checkpoint.

Nothing here imports torch.
"""
from src.errors import CheckpointError


class ConversionError(CheckpointError):
    """A source weights file that cannot be converted (unreadable, wrong network, unsafe)."""
