"""Whether the CPU kernels are in numba's on-disk cache, found without importing numba.

A first run compiles the engine's numba kernels (``cpu_omp``'s at import, ``cpu_kernels``'
at import and on first use), which takes tens of seconds; later runs load them from the
cache. ``announce`` tells the user once, before that happens, so that a first run does not
look hung: ``gen_backend`` calls it before it first imports the CPU backend (as ``neon``, or
whoever ``announce_as`` names; nobody after ``announce_as(None)``).

The check reads the cache's index files as numba lays them out (numba 0.59 and later):
``<module>.<function>-<line>.py<XY>.nbi`` in ``$NUMBA_CACHE_DIR/<dir>_<sha1 of the source
folder>``, else in the source folder's ``__pycache__`` when it is writable, else in the
user's cache folder. An index is current when it holds the SHA-256 of the module's source as
it is now and this numba's version (what numba itself compares). Not importing numba keeps
the check at about a millisecond in processes that never compile (the sweep controller).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["COMPILE_TIME", "KERNEL_MODULES", "announce", "announce_as", "cache_folder",
           "is_warm"]

# Modules whose kernels every CPU run compiles: cpu_omp's cfuncs at import; cpu_kernels' at
# import (the fp16 conversion probe) or with the first training step.
KERNEL_MODULES = ("cpu_omp", "cpu_kernels")
# Cold first epochs took 6 s (examples/mlp/digits-small.yaml) and 19 s (the digits convnet)
# more than warm ones on this project's 2-core machine; more while other processes load it.
COMPILE_TIME = "10-20 s"
_HERE = Path(os.path.abspath(__file__)).parent  # as numba names it (no resolve)
_announced = False
_prog: str | None = "neon"


def cache_folder(source: Path) -> Path:
    """Where numba caches the functions of ``source`` (a module file)."""
    folder = source.parent
    subpath = f"{folder.name}_{hashlib.sha1(str(folder).encode()).hexdigest()}"
    user_dir = os.environ.get("NUMBA_CACHE_DIR")
    if user_dir:
        return Path(user_dir) / subpath
    in_tree = folder / "__pycache__"
    if os.access(in_tree if in_tree.exists() else folder, os.W_OK):
        return in_tree
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "numba" / subpath


def _current(index: Path, digest: bytes, version: bytes) -> bool:
    try:
        data = index.read_bytes()
    except OSError:
        return False
    return digest in data and version in data


def is_warm(modules: tuple[str, ...] = KERNEL_MODULES) -> bool:
    """True when each of ``modules`` (in ``neon.backends``) has a current index in numba's
    cache, so that a run loads its kernels instead of compiling them."""
    try:
        version = importlib.metadata.version("numba").encode()
    except importlib.metadata.PackageNotFoundError:
        return False
    tag = f".py{sys.version_info[0]}{sys.version_info[1]}{getattr(sys, 'abiflags', '')}.nbi"
    for module in modules:
        source = _HERE / f"{module}.py"
        try:
            digest = hashlib.sha256(source.read_bytes()).digest()
            indexes = list(cache_folder(source).glob(f"{module}.*{tag}"))
        except OSError:
            return False
        if not any(_current(index, digest, version) for index in indexes):
            return False
    return True


def announce_as(prog: str | None) -> None:
    """The program name the announcement starts with in this process; None silences every
    announcement (a quiet command)."""
    global _prog
    _prog = prog


def announce(prog: str | None = None, stream: TextIO | None = None) -> bool:
    """Print ``PROG: compiling the engine's kernels ...`` on stderr once per process when the
    cache is cold (``prog`` defaults to ``announce_as``'s); True when printed."""
    global _announced
    if _prog is None or _announced or is_warm():
        return False
    prog = prog or _prog
    _announced = True
    print(f"{prog}: compiling the engine's kernels (first run only, about {COMPILE_TIME})...",
          file=stream or sys.stderr, flush=True)
    return True
