"""Read + summarise + render one step file at most once per content, keeping results on disk.

The cache maps (file path, size, mtime, format, code fingerprint) to the step's aggregates
(JSON) and its rendered HTML fragment. Only aggregates stay in memory across pages; fragments
are read back when their page is written. Deleting the folder is always safe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path

from . import __version__
from .model import StepSummary
from .readers import read_step
from .render import step_fragment
from .stats import summarize_step

_CORE_MODULES = ("model.py", "readers.py", "stats.py", "render.py", "cache.py")


def _fingerprint() -> str:
    h = hashlib.sha1(__version__.encode())
    here = Path(__file__).parent
    for name in _CORE_MODULES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


FINGERPRINT = _fingerprint()


def step_key(path: str, fmt: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    raw = f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\0{fmt}\0{FINGERPRINT}"
    return hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class StepCache:
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.used: set[str] = set()

    def fragment_path(self, key: str) -> Path:
        return self.folder / f"{key}.html"

    def fragment(self, key: str) -> str:
        return self.fragment_path(key).read_text(encoding="utf-8")

    def summary(self, step: int, path: str, fmt: str) -> tuple[str, StepSummary, bool]:
        """(cache key, aggregates, whether they came from the cache) for one step file."""
        key = step_key(path, fmt) or hashlib.sha1(f"missing\0{path}".encode("utf-8", "surrogatepass")).hexdigest()
        self.used.add(key)
        summary_file = self.folder / f"{key}.json"
        if summary_file.exists() and self.fragment_path(key).exists():
            try:
                fields = json.loads(summary_file.read_text(encoding="utf-8"))
                return key, StepSummary(**fields), True
            except (OSError, ValueError, TypeError):
                pass  # a damaged entry is rebuilt below
        data = read_step(path, fmt)
        summary = summarize_step(step, data)
        _write_atomic(self.fragment_path(key), step_fragment(data, summary, path))
        _write_atomic(summary_file, json.dumps(dataclasses.asdict(summary)))
        return key, summary, False

    def prune(self) -> None:
        """Drop entries no build of this session has used (old versions of changed files)."""
        for entry in self.folder.iterdir():
            if entry.suffix in (".html", ".json") and entry.stem not in self.used:
                try:
                    entry.unlink()
                except OSError:
                    pass
