"""The cache of step results on disk: keys, entry files, kept pages (hard links), pruning.

The pipeline (`build.py`) reads + summarises + renders each step file at most once per content
and stores the results here. The cache maps (file path, size, mtime, ctime, inode, format,
options, code fingerprint) to the step's aggregates (JSON), its rendered HTML fragments, its
extras for the cross-step views (`model.StepExtras` as JSON), its long texts and its search
shard (`search.py`). Only aggregates
stay in memory across pages; fragments are read back when their page is written, and the written
step pages are kept here too (hard links into the site) for rebuilds that produce them again.
Deleting the folder is always safe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import orjson

from . import __version__
from .model import StepExtras, StepFile, StepSummary
from .formats import FORMATS, loads

ENTRY_NAME = re.compile(r"([0-9a-f]{40})(?:-\d+)?(\.extra|\.steps|\.texts|\.search|\.[0-9a-f]{16}\.page)?\.(?:html|json|csv|js)")


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


def step_key(step: StepFile | str, settings: str) -> str:
    """The cache key of a step: for each file holding it, its path, size, modification and change
    times and inode (and the byte range read), then the settings and the code. The change time
    (ctime) moves on every write and also when a tool sets the modification time back (`touch -d`,
    `rsync -t`, `os.utime`), which size + mtime alone miss; the inode changes when a file is
    replaced by another. A format's `STAMP_FILES` (marker files beside the step's files, e.g.
    prime-rl's STABLE) count by their presence."""
    ranges = step.ranges() if isinstance(step, StepFile) else ((step, 0, -1),)
    stamps = []
    for path, start, end in ranges:
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0{st.st_dev}"
        except OSError:
            stamp = "missing"
        stamps.append(f"{os.path.abspath(path)}\0{stamp}" + (f"\0{start}\0{end}" if (start, end) != (0, -1) else ""))
    if isinstance(step, StepFile) and step.parts:  # one file may hold several steps (a JSON file of all steps)
        stamps.append(f"step {step.step}")
    marks = getattr(FORMATS.get(step.fmt), "STAMP_FILES", ()) if isinstance(step, StepFile) else ()
    for folder in sorted({os.path.dirname(path) for path, _, _ in ranges}) if marks else ():
        stamps.extend(f"{name}\0{os.path.exists(os.path.join(folder, name))}" for name in marks)
    raw = f"{chr(1).join(stamps)}\0{settings}\0{FINGERPRINT}"
    return hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()


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


def shard_file(folder: Path, key: str) -> Path:
    return folder / f"{key}.search.js"


def fragment_file(folder: Path, key: str, page: int = 1) -> Path:
    return folder / (f"{key}.html" if page == 1 else f"{key}-{page}.html")


def write_entry(folder: Path, key: str, summary: StepSummary, fragments: list[str] | None,
                extras: dict, texts: dict, shard: bytes | None = None) -> None:
    """Store one step's results; without `fragments` (only summarised) only its cut texts and
    search shard, which the site copies before the pages are rendered. The aggregates go last: they mark the entry
    complete (see `StepCache.cached`). `shard`: the step's search shard (`search.py`)."""
    if texts:
        _write_atomic(texts_file(folder, key), json_bytes(texts))
    if shard is not None and (fragments is None or not shard_file(folder, key).exists()):
        _write_atomic(shard_file(folder, key), shard)  # the same key: the same shard
    if fragments is None:
        return
    for page, fragment in enumerate(fragments, 1):
        _write_atomic(fragment_file(folder, key, page), fragment)
    _write_atomic(extras_file(folder, key), json_bytes(extras))
    _write_atomic(folder / f"{key}.json", json_bytes(summary))


class StepCache:
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.used: set[str] = set()
        self.used_pages: set[str] = set()  # assembled pages the last build linked into its site
        self.can_link = True
        self.known: dict[str, StepSummary] = {}  # this process's summaries, for serve rebuilds

    def fragment_file(self, key: str, page: int = 1) -> Path:
        return fragment_file(self.folder, key, page)

    def texts_file(self, key: str) -> Path:
        return texts_file(self.folder, key)

    def shard_file(self, key: str) -> Path:
        return shard_file(self.folder, key)

    def extras(self, key: str) -> StepExtras:
        try:
            return StepExtras.from_json(loads(extras_file(self.folder, key).read_bytes()))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return StepExtras()

    def cached(self, key: str) -> StepSummary | None:
        if key in self.known and fragment_file(self.folder, key).exists() and shard_file(self.folder, key).exists():
            return self.known[key]
        summary_file = self.folder / f"{key}.json"
        try:
            summary = StepSummary(**loads(summary_file.read_bytes()))
        except (OSError, ValueError, TypeError):
            return None  # missing or damaged: rebuilt by the caller
        if all(fragment_file(self.folder, key, p).exists() for p in range(1, summary.pages + 1)) \
                and (not summary.cut_texts or texts_file(self.folder, key).exists()) \
                and shard_file(self.folder, key).exists():
            return summary
        return None

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
