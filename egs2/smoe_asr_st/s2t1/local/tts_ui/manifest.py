"""Resumable per-file work: a manifest of finished outputs keyed by a digest of their inputs.

The main process appends ``<utt>\t<digest>\t<seconds>`` when a worker reports a finished file;
on a rerun, files whose digest still matches the plan are kept and the others are redone.
"""

from __future__ import annotations

from pathlib import Path

from local.file_io import write_lines
from local.stage import config_digest


def item_digest(*parts) -> str:
    return config_digest({"parts": list(parts)})


class Manifest:
    def __init__(self, directory: Path):
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

    def is_done(self, utt: str, digest: str, path: Path) -> bool:
        return self.done.get(utt, ("",))[0] == digest and Path(path).exists()

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
