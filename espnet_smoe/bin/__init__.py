"""Command-line entry points (``python -m espnet_smoe.bin.<name>``)."""

import logging


def reset_root_logging() -> None:
    """Drop the root-logger handlers that a ``logging.warning`` at import time installed.

    Some espnet2 modules warn while being imported when an optional package is missing (the
    state-space models without hydra, for one). That first call configures the root logger at
    WARNING, after which ESPnet's own ``logging.basicConfig(level=<--log_level>)`` does
    nothing and a training run logs no INFO line at all. Called by the launchers just before
    ESPnet configures logging.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
