"""Debian packages without installing them: a private apt state, cached .debs, a private prefix.

Everything the recipe takes from Debian goes through this module (the Asterisk packages of
stage 1, the tts_ui corpus's catalogs, description translations and TTS engines):

* ``PrivateApt``: ``apt-get update`` / ``apt-get download`` / ``apt-cache depends`` against a
  private lists and cache directory (the machine's apt state is never touched, nothing is
  installed), plus the DDTP description translations (``Translation-<lang>`` lists).
* ``unpack_prefix``: ``dpkg -x`` of .debs into a private prefix.
* ``resolve_tts``: flite / espeak-ng from the system when installed, else from .debs unpacked
  into ``<cache_dir>/prefix`` and run with ``LD_LIBRARY_PATH`` (the one place for that logic).
"""

from __future__ import annotations

import getpass
import logging
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITE = "bookworm"
APT_HELPER = "/usr/lib/apt/apt-helper"

# What each engine needs from Debian (dependencies that the machine lacks are added by closure).
TTS_PACKAGES = {"flite": ["flite", "libflite1"], "espeak-ng": ["espeak-ng", "libespeak-ng1", "espeak-ng-data"]}
# The TTSRuntime field that holds each engine's executable.
TTS_FIELDS = {"flite": "flite", "espeak-ng": "espeak"}


class DebianError(RuntimeError):
    """apt/dpkg is missing, unreachable or failed."""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    logging.debug("run: %s", " ".join(cmd))
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as exc:
        raise DebianError(f"{cmd[0]} not found: this step needs a Debian/Ubuntu machine") from exc
    except subprocess.CalledProcessError as exc:
        raise DebianError(f"{' '.join(cmd[:3])} ... failed (rc={exc.returncode}):\n"
                          f"{exc.stderr.strip()[-2000:]}") from exc


def system_codename(default: str = DEFAULT_SUITE) -> str:
    """VERSION_CODENAME of this machine's Debian (the suite whose binaries run here)."""
    try:
        return platform.freedesktop_os_release().get("VERSION_CODENAME") or default
    except OSError:
        return default


def installed_packages() -> set[str]:
    """Names of the packages dpkg reports as installed on this machine (empty without dpkg)."""
    try:
        out = _run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n"]).stdout
    except DebianError:
        return set()
    return {ln.split()[0] for ln in out.splitlines() if ln.endswith(" installed")}


@dataclass
class PrivateApt:
    """apt-get/apt-cache on a private state dir under ``root`` (lists, cache, sources)."""

    root: Path
    mirror: str = DEFAULT_MIRROR
    suite: str = field(default_factory=system_codename)
    languages: tuple[str, ...] = ("en", "fr")

    def __post_init__(self):
        self.root = Path(self.root).resolve()  # apt reads relative Dir:: paths from /
        self.lists = self.root / "lists"
        self.cache = self.root / "cache"
        self.sources = self.root / "sources.list"
        self.parts = self.root / "sources.list.d"

    def options(self) -> list[str]:
        opts = {
            "Dir::State::Lists": str(self.lists),
            "Dir::Cache": str(self.cache),
            "Dir::Etc::SourceList": str(self.sources),
            "Dir::Etc::SourceParts": str(self.parts),
            "Acquire::Languages": ",".join(self.languages),
            "Acquire::Retries": "1",
            "Acquire::http::Timeout": "30",
            # the private dirs belong to us: no drop to the _apt user
            "APT::Sandbox::User": getpass.getuser(),
        }
        return [arg for key, value in opts.items() for arg in ("-o", f"{key}={value}")]

    def _packages_lists(self) -> list[Path]:
        return sorted(self.lists.glob("*_binary-*_Packages*")) if self.lists.is_dir() else []

    def update(self, force: bool = False) -> None:
        """Fetch the package lists (and Translation-<lang>) once; later calls reuse them."""
        wanted = [f"Translation-{lang}" for lang in self.languages]
        have = [p.name for p in self.lists.glob("*")] if self.lists.is_dir() else []
        if not force and self._packages_lists() and all(any(w in name for name in have) for w in wanted):
            return
        for d in (self.lists / "partial", self.cache / "archives" / "partial", self.parts):
            d.mkdir(parents=True, exist_ok=True)
        self.sources.write_text(f"deb {self.mirror} {self.suite} main\n")
        logging.info("apt-get update (private lists in %s, %s %s)", self.lists, self.mirror, self.suite)
        _run(["apt-get", *self.options(), "update"])
        if not self._packages_lists():
            raise DebianError(f"apt-get update fetched no package list from {self.mirror} {self.suite}")

    def download(self, packages: Iterable[str], deb_dir: Path, offline: bool = False) -> dict[str, Path]:
        """``apt-get download`` the packages into ``deb_dir`` unless a .deb of them is already there.

        ``offline``: never call apt; a package without a .deb in ``deb_dir`` is a DebianError.
        """
        deb_dir = Path(deb_dir).resolve()
        deb_dir.mkdir(parents=True, exist_ok=True)
        packages = list(dict.fromkeys(packages))
        found = {p: cached_deb(deb_dir, p) for p in packages}
        missing = [p for p, path in found.items() if path is None]
        if missing and offline:
            raise DebianError(f"--offline but no cached .deb in {deb_dir} for: {' '.join(missing)}")
        if missing:
            self.update()
            logging.info("apt-get download %d packages into %s", len(missing), deb_dir)
            _run(["apt-get", *self.options(), "download", *missing], cwd=deb_dir)
            for p in missing:
                found[p] = cached_deb(deb_dir, p)
                if found[p] is None:
                    raise DebianError(f"apt-get download {p}: no .deb appeared in {deb_dir}")
        return found

    def depends_closure(self, packages: Iterable[str], installed: set[str] | None = None) -> list[str]:
        """The packages plus their Depends/Pre-Depends that this machine has not installed.

        Of alternatives (``a | b``) an installed one wins, else the first; a virtual package is
        replaced by its first provider.
        """
        self.update()
        installed = installed_packages() if installed is None else installed
        todo, seen, needed = list(packages), set(), []
        while todo:
            batch = [p for p in dict.fromkeys(todo) if p not in seen]
            todo = []
            if not batch:
                break
            seen.update(batch)
            out = _run(["apt-cache", *self.options(), "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
                        "--no-breaks", "--no-replaces", "--no-enhances", *batch]).stdout
            for pkg, groups in _parse_depends(out).items():
                if pkg not in installed:
                    needed.append(pkg)
                for group in groups:
                    if any(alt in installed for alt in group):
                        continue
                    todo.append(group[0])
        return list(dict.fromkeys(needed))

    def translation_list(self, lang: str, offline: bool = False) -> Path:
        """The private ``..._i18n_Translation-<lang>[.lz4|.xz|...]`` list (DDTP); ``offline``: no apt-get update."""
        if not offline:
            self.update()
        hits = sorted(self.lists.glob(f"*_i18n_Translation-{lang}*"))
        if not hits:
            why = "--offline: the cache has none" if offline else "Acquire::Languages"
            raise DebianError(f"no Translation-{lang} list in {self.lists} ({why})")
        return hits[0]


def _parse_depends(text: str) -> dict[str, list[list[str]]]:
    """Parse ``apt-cache depends`` output into {package: [[alternative, ...], ...]}.

    ``|Depends: a`` followed by ``Depends: b`` is the group ``a | b``; indented lines under
    a ``<virtual>`` name list its providers (the first one is taken).
    """
    result: dict[str, list[list[str]]] = {}
    providers: dict[str, str] = {}
    pkg, group, last = None, [], None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            pkg, group, last = line.strip(), [], None
            result[pkg] = []
        elif line.startswith("    "):
            if last and last.startswith("<"):
                providers.setdefault(last, line.strip())
        else:
            kind, _, name = line.strip().partition(": ")
            last = name
            if kind.lstrip("|") not in ("Depends", "PreDepends"):
                group = []
                continue
            group.append(name)
            if not kind.startswith("|"):
                result[pkg].append(group)
                group = []
    for groups in result.values():
        for i, grp in enumerate(groups):
            groups[i] = [providers.get(n, n) for n in grp if not n.startswith("<") or n in providers]
        groups[:] = [g for g in groups if g]
    return result


def cached_deb(deb_dir: Path, package: str) -> Path | None:
    """The newest ``<package>_<version>_<arch>.deb`` in ``deb_dir``, or None."""
    hits = sorted(Path(deb_dir).glob(f"{package}_*.deb"))
    return hits[-1] if hits else None


def read_list_file(path: Path) -> str:
    """Text of an apt list file, plain or compressed as apt fetched it (apt-helper decompresses)."""
    path = Path(path)
    if path.suffix in (".lz4", ".xz", ".gz", ".bz2", ".zst", ".lzma"):
        return _run([APT_HELPER, "cat-file", str(path)]).stdout
    return path.read_text(encoding="utf-8")


def unpack_prefix(debs: Iterable[Path], prefix: Path) -> Path:
    """``dpkg -x`` every .deb into ``prefix`` (once per .deb: a stamp file records it)."""
    prefix = Path(prefix)
    prefix.mkdir(parents=True, exist_ok=True)
    stamps = prefix / ".unpacked"
    done = set(stamps.read_text().split()) if stamps.exists() else set()
    for deb in debs:
        if Path(deb).name in done:
            continue
        _run(["dpkg", "-x", str(deb), str(prefix)])
        with open(stamps, "a") as f:
            f.write(Path(deb).name + "\n")
    return prefix


@dataclass
class TTSRuntime:
    """How to call flite and espeak-ng on this machine."""

    flite: str | None = None
    espeak: str | None = None
    espeak_args: list[str] = field(default_factory=list)  # e.g. --path=<data dir parent>
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    origin: dict[str, str] = field(default_factory=dict)  # engine -> "system" | prefix path

    def flite_cmd(self, voice: str, text: str, out_wav: str, setf: dict[str, float]) -> list[str]:
        cmd = [self.flite, "-voice", voice]
        for key, value in setf.items():
            cmd += ["--setf", f"{key}={value:g}"]
        return cmd + ["-t", text, "-o", out_wav]

    def espeak_cmd(self, voice: str, out_wav: str, rate: int, pitch: int) -> list[str]:
        # the text goes on stdin: no quoting issue, no text mistaken for an option
        return [self.espeak, *self.espeak_args, "-v", voice, "-s", str(rate), "-p", str(pitch),
                "-w", out_wav, "--stdin"]


def _works(cmd: list[str], env: dict[str, str], stdin: str | None = None) -> bool:
    try:
        subprocess.run(cmd, check=True, capture_output=True, env=env, input=stdin, text=True, timeout=60)
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def resolve_tts(cache_dir: Path, engines: Iterable[str] = ("flite", "espeak-ng"), apt: PrivateApt | None = None,
                allow_system: bool = True) -> TTSRuntime:
    """flite/espeak-ng: the installed ones if they work, else .debs unpacked into ``<cache_dir>/prefix``.

    The .debs (with the dependencies this machine lacks) are fetched with ``apt-get download``
    into ``<cache_dir>/debs``; nothing is installed. Raises DebianError if that is impossible.
    """
    cache_dir = Path(cache_dir).resolve()  # LD_LIBRARY_PATH and --path must not depend on the cwd
    rt = TTSRuntime()
    probe = {
        "flite": lambda r: _works([r.flite, "-voice", "kal16", "-t", "ok", "-o", "none"], r.env),
        "espeak-ng": lambda r: _works([r.espeak, *r.espeak_args, "-q", "--stdin"], r.env, "ok"),
    }
    todo = []
    for engine in engines:
        setattr(rt, TTS_FIELDS[engine], shutil.which(engine) if allow_system else None)
        if getattr(rt, TTS_FIELDS[engine]) and probe[engine](rt):
            rt.origin[engine] = "system"
        else:
            setattr(rt, TTS_FIELDS[engine], None)
            todo.append(engine)
    if not todo:
        return rt

    prefix = cache_dir / "prefix"
    if not all((prefix / "usr/bin" / e).exists() for e in todo) or not (prefix / ".unpacked").exists():
        apt = apt or PrivateApt(cache_dir / "apt")
        closure = apt.depends_closure([p for e in todo for p in TTS_PACKAGES[e]])
        debs = apt.download(closure, cache_dir / "debs")
        logging.info("unpacking %d .debs (%s) into %s", len(debs), " ".join(debs), prefix)
        unpack_prefix(debs.values(), prefix)
    # every directory under the prefix that holds shared libraries, before the caller's LD_LIBRARY_PATH
    library_dirs = sorted({str(p.parent) for p in prefix.rglob("*.so*") if p.is_file() or p.is_symlink()})
    library_path = [*library_dirs, os.environ.get("LD_LIBRARY_PATH", "")]
    rt.env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(p for p in library_path if p)}
    for engine in todo:
        setattr(rt, TTS_FIELDS[engine], str(prefix / "usr/bin" / engine))
        if engine == "espeak-ng":
            data = sorted(prefix.glob("usr/lib/*/espeak-ng-data")) + sorted(prefix.glob("usr/share/espeak-ng-data"))
            if not data:
                raise DebianError(f"no espeak-ng-data under {prefix}")
            rt.espeak_args = [f"--path={data[0].parent}"]
        if not probe[engine](rt):
            raise DebianError(f"{engine} unpacked into {prefix} does not run (missing libraries?)")
        rt.origin[engine] = str(prefix)
    return rt
