"""Logging set-up of every recipe entry point: ESPnet's line format on stderr."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"


def setup_logging(verbose: int = 1) -> None:
    """0: warnings, 1: info, 2: debug.

    Handlers someone else installed (pytest's capture) are kept: only the level is forced.
    """
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT)
    logging.getLogger().setLevel(level)
