"""Errors the zoo reports to users as one line, without a traceback.

Entry points catch :class:`ZooError` and print ``error: <message>`` then exit
with ``exit_code``. Every message says what is wrong and how to fix it.
"""


class ZooError(Exception):
    """A problem caused by the user's input or environment, not a bug."""

    exit_code = 2


class ConfigError(ZooError):
    """Unknown key, wrong type or invalid choice in a config file or flag."""


class DataError(ZooError):
    """Missing, malformed or inconsistent dataset."""


class CheckpointError(ZooError):
    """Checkpoint missing, corrupt, or not matching the network."""


class DeviceError(ZooError):
    """Requested device or distributed setup is unavailable."""


class ExportError(ZooError):
    """Export failed or the exported model disagrees with the checkpoint."""
