"""Read + summarise + render one step file at most once per content, keeping results on disk.

The cache maps (file path, size, mtime, format, code fingerprint) to the step's aggregates
(JSON) and its rendered HTML fragment. Only aggregates stay in memory across pages; fragments
are read back when their page is written. Deleting the folder is always safe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
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


def fragment_file(folder: Path, key: str, page: int = 1) -> Path:
    return folder / (f"{key}.html" if page == 1 else f"{key}-{page}.html")


def _render_job(job: tuple[str, int, str, str, RenderOptions, str]) -> StepSummary:
    key, step, path, fmt, options, folder = job
    summary, fragments = render_step(step, path, fmt, options)
    for page, fragment in enumerate(fragments, 1):
        _write_atomic(fragment_file(Path(folder), key, page), fragment)
    _write_atomic(Path(folder) / f"{key}.json", json.dumps(dataclasses.asdict(summary)))
    return summary


class StepCache:
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.used: set[str] = set()

    def fragment(self, key: str, page: int = 1) -> str:
        return fragment_file(self.folder, key, page).read_text(encoding="utf-8")

    def cached(self, key: str) -> StepSummary | None:
        summary_file = self.folder / f"{key}.json"
        try:
            summary = StepSummary(**json.loads(summary_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None  # missing or damaged: rebuilt by the caller
        if all(fragment_file(self.folder, key, p).exists() for p in range(1, summary.pages + 1)):
            return summary
        return None

    def summaries(self, steps: list[tuple[int, str]], fmt: str, options: RenderOptions,
                  workers: int = 1) -> list[tuple[str, StepSummary, bool]]:
        """(cache key, aggregates, whether they came from the cache) for each (step, path).

        Files not in the cache are read and rendered, on `workers` processes when there are
        several; each worker writes its fragments here and returns only the aggregates."""
        keys = [step_key(path, f"{fmt}|{options.key()}") for _, path in steps]
        self.used.update(keys)
        found = [self.cached(key) for key in keys]
        jobs = [(key, step, path, fmt, options, str(self.folder))
                for key, hit, (step, path) in zip(keys, found, steps) if hit is None]
        if workers > 1 and len(jobs) >= 2 * workers:
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
                made = iter(list(pool.map(_render_job, jobs, chunksize=1)))
        else:
            made = iter([_render_job(job) for job in jobs])
        return [(key, hit, True) if hit is not None else (key, next(made), False)
                for key, hit in zip(keys, found)]

    def prune(self) -> None:
        """Drop entries no build of this session has used (old versions of changed files)."""
        for entry in self.folder.iterdir():
            if entry.suffix in (".html", ".json") and entry.stem.split("-")[0] not in self.used:
                try:
                    entry.unlink()
                except OSError:
                    pass
