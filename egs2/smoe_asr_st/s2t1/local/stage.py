"""Stage markers: a finished stage leaves ``<dir>/.done`` and a rerun with the same options skips it.

The marker holds a digest of the options that shape the stage's outputs, the options themselves
and a summary (counts) for the reader. A rerun with other options, a missing output, or
``--force`` redoes the stage; the marker is removed before the work starts, so an interrupted
stage is never taken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Iterable


def config_digest(config: dict) -> str:
    """Short digest of a JSON-able configuration (key order does not matter)."""
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_done(marker: Path, config: dict, outputs: Iterable[Path] = ()) -> bool:
    """True if ``marker`` records a finished run with ``config`` and every output exists."""
    marker = Path(marker)
    try:
        done = json.loads(marker.read_text()).get("digest") == config_digest(config)
    except (OSError, ValueError):
        return False
    missing = [str(p) for p in outputs if not Path(p).exists()]
    if done and missing:
        logging.info("%s: outputs missing (%s): redoing the stage", marker, ", ".join(missing))
    if done and not missing:
        logging.info("%s: stage already done with these options; --force to redo", marker)
    return done and not missing


def start_stage(marker: Path) -> None:
    """Remove the marker of an earlier run before the work starts."""
    Path(marker).unlink(missing_ok=True)
    Path(marker).parent.mkdir(parents=True, exist_ok=True)


def mark_done(marker: Path, config: dict, summary: dict | None = None) -> None:
    """Record a finished run of the stage with ``config``."""
    marker = Path(marker)
    marker.parent.mkdir(parents=True, exist_ok=True)
    record = {"digest": config_digest(config), "config": config, "summary": summary or {}}
    marker.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
