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
from .model import StepData, StepSummary
from .readers import read_step
from .render import RenderOptions, esc, step_fragments
from .stats import summarize_step

_CORE_MODULES = ("model.py", "readers.py", "stats.py", "render.py", "cache.py")


def _fingerprint() -> str:
    h = hashlib.sha1(__version__.encode())
    here = Path(__file__).parent
    for name in _CORE_MODULES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


FINGERPRINT = _fingerprint()


def step_key(path: str, settings: str) -> str:
    try:
        st = os.stat(path)
        stamp = f"{st.st_size}\0{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    raw = f"{os.path.abspath(path)}\0{stamp}\0{settings}\0{FINGERPRINT}"
    return hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()


def render_step(step: int, path: str, fmt: str, options: RenderOptions) -> tuple[StepSummary, list[str]]:
    """Read, summarise and render one step file. Never raises."""
    data = read_step(path, fmt)
    try:
        summary = summarize_step(step, data)
        fragments = step_fragments(data, summary, path, options)
    except Exception as err:  # noqa: BLE001 - one odd file must not stop the build
        summary = summarize_step(step, StepData(unreadable=f"could not be rendered ({type(err).__name__}: {err})"))
        fragments = [f'<div class="td-step"><p>{esc(summary.unreadable or "")}</p></div>']
    summary.pages = len(fragments)
    summary.images = sorted({rel for t in data.trajectories for rel in t.image_files})
    return summary, fragments


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

    def fragment_path(self, key: str, page: int = 1) -> Path:
        return self.folder / (f"{key}.html" if page == 1 else f"{key}-{page}.html")

    def fragment(self, key: str, page: int = 1) -> str:
        return self.fragment_path(key, page).read_text(encoding="utf-8")

    def summary(self, step: int, path: str, fmt: str, options: RenderOptions) -> tuple[str, StepSummary, bool]:
        """(cache key, aggregates, whether they came from the cache) for one step file."""
        key = step_key(path, f"{fmt}|{options.key()}")
        self.used.add(key)
        summary_file = self.folder / f"{key}.json"
        if summary_file.exists():
            try:
                summary = StepSummary(**json.loads(summary_file.read_text(encoding="utf-8")))
                if all(self.fragment_path(key, p).exists() for p in range(1, summary.pages + 1)):
                    return key, summary, True
            except (OSError, ValueError, TypeError):
                pass  # a damaged entry is rebuilt below
        summary, fragments = render_step(step, path, fmt, options)
        for page, fragment in enumerate(fragments, 1):
            _write_atomic(self.fragment_path(key, page), fragment)
        _write_atomic(summary_file, json.dumps(dataclasses.asdict(summary)))
        return key, summary, False

    def prune(self) -> None:
        """Drop entries no build of this session has used (old versions of changed files)."""
        for entry in self.folder.iterdir():
            if entry.suffix in (".html", ".json") and entry.stem.split("-")[0] not in self.used:
                try:
                    entry.unlink()
                except OSError:
                    pass
