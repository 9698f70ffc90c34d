"""Read + summarise + render one step file at most once per content, keeping results on disk.

The cache maps (file path, size, mtime, ctime, inode, format, code fingerprint) to the step's aggregates
(JSON), its rendered HTML fragments and its extras for the cross-step views. Only aggregates stay
in memory across pages; fragments are read back when their page is written, and the written step
pages are kept here too (hard links into the site) for rebuilds that produce them again. Deleting
the folder is always safe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

import orjson

from . import __version__
from .model import StepData, StepSummary
from .readers import loads, read_step
from .render import TOKEN_CHARS, RenderOptions, long_texts, step_fragments, step_pages
from .stats import forking_tokens, prompt_groups, summarize_step, trajectory_table
from .text import esc

ENTRY_NAME = re.compile(r"([0-9a-f]{40})(?:-\d+)?(\.extra|\.steps|\.texts|\.[0-9a-f]{16}\.page)?\.(?:html|json|csv)")


def _fingerprint() -> str:
    """A hash of the version and of every file of the package that can shape output: each `.py`
    module and each asset, found by walking the package folder (no list to keep up to date), so
    that any change to the code invalidates every cached page."""
    h = hashlib.sha1(__version__.encode())
    here = Path(__file__).parent
    for folder, dirs, names in os.walk(here):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(names):
            rel = Path(folder, name).relative_to(here)
            if name.endswith(".py") or rel.parts[0] == "assets":
                h.update(str(rel).encode() + b"\0")
                h.update(Path(folder, name).read_bytes())
    return h.hexdigest()[:16]


FINGERPRINT = _fingerprint()


def step_key(path: str, settings: str) -> str:
    """The cache key of a step file: its path, size, modification and change times and inode, the
    settings and the code. The change time (ctime) moves on every write and also when a tool sets
    the modification time back (`touch -d`, `rsync -t`, `os.utime`), which size + mtime alone miss;
    the inode changes when a file is replaced by another."""
    try:
        st = os.stat(path)
        stamp = f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0{st.st_dev}"
    except OSError:
        stamp = "missing"
    raw = f"{os.path.abspath(path)}\0{stamp}\0{settings}\0{FINGERPRINT}"
    return hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()


def render_step(step: int, path: str, fmt: str, options: RenderOptions,
                render: bool = True) -> tuple[StepSummary, list[str], dict, dict]:
    """Read, summarise and render one step file: aggregates, page bodies, the extras that
    experiment-wide views merge (forking tokens, prompt groups), and the texts the pages show cut.
    With `render` false only the aggregates (the same ones) and the cut texts. Never raises."""
    data = read_step(path, fmt, options.max_file_bytes, options.correct_rule())
    fragments: list[str] = []
    extras: dict = {}
    texts: dict = {}
    try:
        stats = trajectory_table(data.trajectories)
        summary = summarize_step(step, data, stats)
        texts = long_texts(data, options)
        summary.cut_texts = len(texts)
        if render:
            page_of: dict[int, int] = {}
            fragments = step_fragments(data, summary, path, options, page_of, stats)
            extras = {"forking": cut_keys(forking_tokens(data.trajectories)),
                      "prompts": prompt_groups(data.trajectories, page_of)}
        summary.pages = len(fragments) if render else len(step_pages(data, options))
    except Exception as err:  # noqa: BLE001 - one odd file must not stop the build
        summary = summarize_step(step, StepData(unreadable=f"could not be rendered ({type(err).__name__}: {err})"))
        fragments = [f'<div class="td-step"><p>{esc(summary.unreadable or "")}</p></div>']
        extras, texts = {}, {}
        summary.pages = 1
    summary.images = sorted({rel for t in data.trajectories for rel in t.image_files})
    return summary, fragments, extras, texts


def cut_keys(forking: dict[str, list]) -> dict[str, list]:
    """Forking-token rows with a token over TOKEN_CHARS characters keyed by its first TOKEN_CHARS
    characters and a hash of the whole (tokens stay apart), so that one enormous token does not
    fill the cache and every merge of the experiment's views."""
    if all(len(text) <= TOKEN_CHARS for text in forking):
        return forking
    cut = {}
    for text, row in forking.items():
        if len(text) > TOKEN_CHARS:
            text = f"{text[:TOKEN_CHARS]}…{hashlib.sha1(text.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
        cut[text] = row
    return cut


def json_bytes(value: object) -> bytes:
    """orjson (dataclasses too), or the stdlib where orjson refuses (lone surrogates in text)."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        return json.dumps(value).encode()


def _write_atomic(path: Path, text: str | bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def extras_file(folder: Path, key: str) -> Path:
    return folder / f"{key}.extra.json"


def texts_file(folder: Path, key: str) -> Path:
    return folder / f"{key}.texts.json"


def fragment_file(folder: Path, key: str, page: int = 1) -> Path:
    return folder / (f"{key}.html" if page == 1 else f"{key}-{page}.html")


class Job(NamedTuple):
    key: str
    step: int
    path: str
    fmt: str
    options: RenderOptions
    folder: str
    render: bool = True  # false: only read and summarise, write nothing


def job_to_json(job: Job) -> str:
    return json.dumps([job.key, job.step, job.path, job.fmt, dataclasses.asdict(job.options), job.folder, job.render])


def job_from_json(line: str) -> Job:
    key, step, path, fmt, options, folder, render = json.loads(line)
    return Job(key, step, path, fmt, RenderOptions(**options), folder, render)


def render_job(job: Job) -> StepSummary:
    """Render one step file into the cache folder; return its aggregates."""
    summary, fragments, extras, texts = render_step(job.step, job.path, job.fmt, job.options, job.render)
    folder = Path(job.folder)
    if texts:  # also when only summarising: the site copies it before the pages are rendered
        _write_atomic(texts_file(folder, job.key), json_bytes(texts))
    if not job.render:
        return summary
    for page, fragment in enumerate(fragments, 1):
        _write_atomic(fragment_file(folder, job.key, page), fragment)
    _write_atomic(extras_file(folder, job.key), json_bytes(extras))
    _write_atomic(folder / f"{job.key}.json", json_bytes(summary))  # last: marks complete
    return summary


def render_jobs(jobs: list[Job], workers: int) -> tuple[list[StepSummary], int]:
    """Run jobs on `workers` worker processes (`python -m trajdocs.worker`), fed one job at a
    time from a shared queue. Worker processes import nothing of the caller, so this is safe
    inside `mkdocs serve` (threads) and from any script. A job a worker could not do is done here.
    Returns the aggregates and how many jobs the workers did."""
    results: list[StepSummary | None] = [None] * len(jobs)
    pending: queue.Queue[int] = queue.Queue()
    for i in range(len(jobs)):
        pending.put(i)

    def drive() -> None:
        try:
            proc = subprocess.Popen([sys.executable, "-m", "trajdocs.worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, encoding="utf-8")
        except OSError:
            return
        assert proc.stdin is not None and proc.stdout is not None
        try:
            while True:
                try:
                    i = pending.get_nowait()
                except queue.Empty:
                    break
                proc.stdin.write(job_to_json(jobs[i]) + "\n")
                proc.stdin.flush()
                answer = proc.stdout.readline()
                if not answer:
                    break
                results[i] = StepSummary(**loads(answer))
        except (OSError, ValueError, TypeError):
            pass
        finally:
            proc.stdin.close()
            proc.wait()

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(min(workers, len(jobs)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r if r is not None else render_job(job) for r, job in zip(results, jobs)], \
        sum(r is not None for r in results)


class StepCache:
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.used: set[str] = set()
        self.used_pages: set[str] = set()  # assembled pages the last build linked into its site
        self._later: tuple[threading.Thread, list[Job], list[StepSummary]] | None = None
        self.can_link = True
        self.by_workers = 0  # step files the last call rendered in worker processes
        self.known: dict[str, StepSummary] = {}  # this process's summaries, for serve rebuilds

    def fragment_file(self, key: str, page: int = 1) -> Path:
        return fragment_file(self.folder, key, page)

    def texts_file(self, key: str) -> Path:
        return texts_file(self.folder, key)

    def extras(self, key: str) -> dict:
        try:
            return loads(extras_file(self.folder, key).read_bytes())
        except (OSError, ValueError):
            return {}

    def cached(self, key: str) -> StepSummary | None:
        if key in self.known and fragment_file(self.folder, key).exists():
            return self.known[key]
        summary_file = self.folder / f"{key}.json"
        try:
            summary = StepSummary(**loads(summary_file.read_bytes()))
        except (OSError, ValueError, TypeError):
            return None  # missing or damaged: rebuilt by the caller
        if all(fragment_file(self.folder, key, p).exists() for p in range(1, summary.pages + 1)) \
                and (not summary.cut_texts or texts_file(self.folder, key).exists()):
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
        jobs = [Job(key, step, path, fmt, options, str(self.folder))
                for key, hit, (step, path) in zip(keys, found, steps) if hit is None]
        self.by_workers = 0
        if workers > 1 and len(jobs) >= 2 * workers and sys.executable:
            # the last few are only summarised now, and rendered by one worker while MkDocs writes
            # the pages on the other core (see `finish`): about as long as MkDocs takes for them all
            later = jobs[len(jobs) - min(len(jobs), len(steps) // 8):]
            first = jobs[:len(jobs) - len(later)] + [job._replace(render=False) for job in later]
            summaries, self.by_workers = render_jobs(first, workers)
            if later:
                self._start_later(later)
        else:
            summaries = [render_job(job) for job in jobs]
        made = iter(summaries)
        results = [(key, hit, True) if hit is not None else (key, next(made), False)
                   for key, hit in zip(keys, found)]
        self.known = {key: summary for key, summary, _ in results}
        return results

    def download(self, owner: str, ext: str, content: bytes) -> str:
        """Keep a generated download (an experiment's steps.csv / steps.json) here rather than in
        memory for the whole build; returns its path."""
        key = hashlib.sha1(f"{owner}\0{ext}".encode("utf-8", "surrogatepass")).hexdigest()
        path = self.folder / f"{key}.steps.{ext}"
        _write_atomic(path, content)
        self.used.add(key)
        return str(path)

    def place_page(self, dest: str, head: bytes, key: str, page: int, tail: bytes) -> None:
        """Write a step page, `head` + the rendered fragment + `tail`, at `dest`. Where this folder
        and the site share a file system the written page is also kept here (a hard link, no copy),
        and a later build that produces the same page links it back instead of writing it (the
        usual case under `serve`). Raises OSError when the fragment is missing."""
        fragment = self.fragment_file(key, page)
        size = len(head) + os.path.getsize(fragment) + len(tail)  # before `dest` is touched
        kept = None
        if self.can_link:
            kept = fragment.with_name(f"{fragment.stem}.{hashlib.sha1(head + bytes([0]) + tail).hexdigest()[:16]}.page.html")
            try:
                if os.stat(kept).st_size == size:  # another size: changed in place since
                    os.unlink(dest)
                    os.link(kept, dest)
                    self.used_pages.add(kept.name)
                    return
            except OSError:
                pass
        with open(dest, "wb") as out:
            out.write(head)
            out.flush()
            with open(fragment, "rb") as src:
                copy_file(src, out)
            out.write(tail)
        if kept is not None:
            link = self.folder / f".tmp-{kept.name}"
            try:
                if os.path.lexists(link):
                    os.unlink(link)
                os.link(dest, link)
                os.replace(link, kept)
                self.used_pages.add(kept.name)
            except OSError:
                self.can_link = False  # another file system, or no hard links here: pages are written

    def _start_later(self, jobs: list[Job]) -> None:
        done: list[StepSummary] = []

        def render() -> None:
            try:
                done.extend(render_jobs(jobs, 1)[0])
            except Exception:  # noqa: BLE001 - whatever failed is rendered in `finish`
                pass

        thread = threading.Thread(target=render, name="trajdocs-render", daemon=True)
        thread.start()
        self._later = (thread, jobs, done)

    def finish(self) -> dict[str, StepSummary]:
        """Wait for the rendering that `summaries` left running; the final aggregates of those
        steps by key (the same as before, unless rendering itself failed)."""
        later, self._later = self._later, None
        if later is None:
            return {}
        thread, jobs, done = later
        thread.join()
        if len(done) < len(jobs):
            done[len(done):] = [render_job(job) for job in jobs[len(done):]]
        final = {job.key: summary for job, summary in zip(jobs, done)}
        self.known.update(final)
        return final

    def prune(self) -> None:
        """Drop entries the last build did not use (old versions of changed files, pages whose
        surroundings changed). Only names this cache writes are touched, whatever else the folder holds."""
        for entry in self.folder.iterdir():
            match = ENTRY_NAME.fullmatch(entry.name)
            if match and (match.group(1) not in self.used
                          or (match.group(2) or "").endswith(".page") and entry.name not in self.used_pages):
                try:
                    entry.unlink()
                except OSError:
                    pass


def copy_file(src, out) -> None:  # type: ignore[no-untyped-def]
    """Copy an open file into another at its position, in the kernel where it can."""
    size = os.fstat(src.fileno()).st_size
    sent = 0
    try:
        while sent < size:
            done = os.sendfile(out.fileno(), src.fileno(), sent, size - sent)
            if done == 0:
                break
            sent += done
    except (AttributeError, OSError):
        if sent:
            raise
    out.seek(0, os.SEEK_END)
    if sent < size:
        src.seek(sent)
        shutil.copyfileobj(src, out)
