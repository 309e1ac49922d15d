"""Resumable per-file work: a manifest of finished outputs keyed by a digest of their inputs.

The main process appends ``<utt>\t<digest>\t<seconds>`` when a worker reports a finished file;
on a rerun, files whose digest still matches the plan are kept and the others are redone.
``run_jobs`` is the loop of the speech and channel stages around it.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Callable

from local.file_io import write_lines
from local.stage import config_digest
from local.tts_ui.common import parallel_map


def item_digest(*parts) -> str:
    return config_digest({"parts": list(parts)})


class Manifest:
    """The finished ``<directory>/<utt>.flac`` files; ``keep``: compact to these utterances at once."""

    def __init__(self, directory: Path, keep: set[str] | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "manifest.tsv"
        self.done: dict[str, tuple[str, float]] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    parts = line.rstrip("\n").split("\t")
                    if len(parts) == 3:
                        self.done[parts[0]] = (parts[1], float(parts[2]))
        self._fh = None
        if keep is not None:
            self.compact(keep)

    def is_done(self, utt: str, digest: str) -> bool:
        return self.done.get(utt, ("",))[0] == digest and (self.dir / f"{utt}.flac").exists()

    def add(self, utt: str, digest: str, seconds: float) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")
        self._fh.write(f"{utt}\t{digest}\t{seconds:.3f}\n")
        self._fh.flush()
        self.done[utt] = (digest, seconds)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def compact(self, keep: set[str]) -> None:
        """Rewrite the manifest with only ``keep`` (the current plan's utterances)."""
        self.close()
        self.done = {u: v for u, v in self.done.items() if u in keep}
        lines = (f"{utt}\t{digest}\t{seconds:.3f}\n" for utt, (digest, seconds) in sorted(self.done.items()))
        write_lines(self.path, lines)


def _run_job(func: Callable, job: tuple[str, dict, list[tuple[str, str]]]) -> tuple[str, str, dict | str]:
    split, item, outputs = job
    try:
        return split, item["utt"], func(split, item, [directory for directory, _ in outputs])
    except Exception as exc:  # logged and returned by run_jobs, never silently dropped
        return split, item["utt"], f"{type(exc).__name__}: {exc}"


def run_jobs(func: Callable, jobs: list[tuple[str, dict, list[tuple[str, str]]]], manifests: dict[str, Manifest],
             nj: int, desc: str, context: dict) -> list[tuple[str, dict, str]]:
    """Run ``func(split, item, dirs)`` over the jobs ``(split, plan item, [(dir, digest)])`` in ``nj`` processes.

    ``func`` (module level: the workers import it) writes ``<context's audio_dir>/<dir>/<utt>.flac``
    and returns ``{dir: seconds}``, recorded in ``manifests[dir]``. Returns the failed jobs as
    ``(split, item, error)``.
    """
    by_key = {(split, item["utt"]): (item, outputs) for split, item, outputs in jobs}
    failures = []
    for split, utt, result in parallel_map(functools.partial(_run_job, func), jobs, nj, desc, "utt", 8, context):
        item, outputs = by_key[(split, utt)]
        if isinstance(result, str):
            failures.append((split, item, result))
            logging.warning("%s failed for %s: %s", desc, utt, result)
            continue
        for directory, digest in outputs:
            manifests[directory].add(utt, digest, result[directory])
    for manifest in manifests.values():
        manifest.close()
    return failures
