"""The cache of step results on disk: keys, entry files, kept pages (hard links), pruning.

The pipeline (`build.py`) reads + summarises + renders each step file at most once per content
and stores the results here. The cache maps (file path, size, mtime, ctime, inode, format,
options, code fingerprint) to one entry file (`<key>.entry`: a JSON line with the step's
aggregates and the sizes of what follows, then its rendered HTML fragments, then its extras for the
cross-step views, `model.StepExtras` as JSON), and to the files the site publishes as they are:
its long texts and its search shard (`search.py`). One entry file rather than a file per part:
a cold build creates, and a rebuild after emptying the cache deletes, several files fewer per
step, and creating files right after many were deleted is slow on ext4. Only aggregates stay in
memory across pages; fragments are read back when their page is written, and the written step
pages are kept here too (hard links into the site) for rebuilds that produce them again.
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
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from . import __version__
from .model import StepExtras, StepFile, StepSummary
from .formats import FORMATS, loads

ENTRY_NAME = re.compile(r"([0-9a-f]{40})(?:-\d+)?(\.steps|\.texts|\.search|\.[0-9a-f]{16}\.page)?\.(?:entry|html|json|csv|js)")


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
    prime-rl's STABLE) count by their presence, its `related_files` (files the pages also show,
    e.g. open-instruct's run metadata) by the same stamp as the step's own files."""
    ranges = step.ranges() if isinstance(step, StepFile) else ((step, 0, -1),)
    stamps = [f"{os.path.abspath(path)}\0{_file_stamp(path)}" + (f"\0{start}\0{end}" if (start, end) != (0, -1) else "")
              for path, start, end in ranges]
    if isinstance(step, StepFile) and step.parts:  # one file may hold several steps (a JSON file of all steps)
        stamps.append(f"step {step.step}")
    marks = getattr(FORMATS.get(step.fmt), "STAMP_FILES", ()) if isinstance(step, StepFile) else ()
    for folder in sorted({os.path.dirname(path) for path, _, _ in ranges}) if marks else ():
        stamps.extend(f"{name}\0{os.path.exists(os.path.join(folder, name))}" for name in marks)
    related = getattr(FORMATS.get(step.fmt), "related_files", None) if isinstance(step, StepFile) else None
    for path in sorted({r for p, _, _ in ranges for r in related(p)}) if related else ():
        stamps.append(f"related\0{os.path.abspath(path)}\0{_file_stamp(path)}")
    raw = f"{chr(1).join(stamps)}\0{settings}\0{FINGERPRINT}"
    return hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _file_stamp(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\0{st.st_dev}"


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


def entry_file(folder: Path, key: str) -> Path:
    return folder / f"{key}.entry"


def texts_file(folder: Path, key: str) -> Path:
    return folder / f"{key}.texts.json"


def shard_file(folder: Path, key: str) -> Path:
    return folder / f"{key}.search.js"


def write_entry(folder: Path, key: str, summary: StepSummary, fragments: list[str] | None,
                extras: dict, texts: dict, shard: bytes | None = None) -> None:
    """Store one step's results; without `fragments` (only summarised) only its cut texts and
    search shard, which the site copies before the pages are rendered. The entry file goes last:
    it marks the entry complete (see `StepCache.cached`). `shard`: the step's search shard."""
    if texts:
        _write_atomic(texts_file(folder, key), json_bytes(texts))
    if shard is not None:
        _write_atomic(shard_file(folder, key), shard)
    if fragments is None:
        return
    pages = [fragment.encode("utf-8") for fragment in fragments]
    tail = json_bytes(extras)
    published = {"shard": _stamp(shard_file(folder, key)), "texts": _stamp(texts_file(folder, key)) if texts else None}
    head = json_bytes({"summary": dataclasses.asdict(summary), "pages": [len(p) for p in pages], "extras": len(tail),
                       "published": published})
    _write_atomic(entry_file(folder, key), b"".join([head, b"\n", *pages, tail]))


def _stamp(path: Path) -> list[int]:
    """A published file's size and modification time: a change written through a hard link in the
    site (a plugin rewriting the site's files in place) changes them."""
    try:
        st = os.stat(path)
    except OSError:
        return [-1, -1]  # never a file's: the entry will not be used
    return [st.st_size, st.st_mtime_ns]


@dataclass
class Entry:
    """Where an entry file's parts are: its aggregates, and (offset, length) of each page's
    fragment and of the extras."""

    summary: StepSummary
    pages: list[tuple[int, int]]
    extras: tuple[int, int]
    published: dict  # `_stamp` of the step's published files ("shard", "texts": None without cut texts)


def read_entry_head(f: BinaryIO) -> Entry:
    """The head line of an open entry file; ValueError (or TypeError, KeyError) when it is not a
    complete entry (damaged, cut, or written by another version)."""
    line = f.readline()
    head = loads(line)
    offset = len(line)
    pages = []
    for length in head["pages"]:
        pages.append((offset, int(length)))
        offset += int(length)
    extras = (offset, int(head["extras"]))
    if os.fstat(f.fileno()).st_size != offset + extras[1] or not line.endswith(b"\n"):
        raise ValueError("entry file cut short")
    summary = StepSummary(**head["summary"])
    if summary.pages != len(pages):
        raise ValueError("entry file pages do not match its aggregates")
    return Entry(summary, pages, extras, dict(head["published"]))


class StepCache:
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.used: set[str] = set()
        self.used_pages: set[str] = set()  # assembled pages the last build linked into its site
        self.can_link = True

    def texts_file(self, key: str) -> Path:
        return texts_file(self.folder, key)

    def shard_file(self, key: str) -> Path:
        return shard_file(self.folder, key)

    def extras(self, key: str) -> StepExtras:
        try:
            with open(entry_file(self.folder, key), "rb") as f:
                offset, length = read_entry_head(f).extras
                f.seek(offset)
                return StepExtras.from_json(loads(f.read(length)))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return StepExtras()

    def cached(self, key: str) -> StepSummary | None:
        """The step's aggregates when its entry is complete and the files the site publishes from
        here (hard links: see `link_or_copy`) are still as they were written (`_stamp`)."""
        try:
            with open(entry_file(self.folder, key), "rb") as f:
                entry = read_entry_head(f)
        except (OSError, ValueError, TypeError, KeyError):
            return None  # missing or damaged: rebuilt by the caller
        stamps = {"shard": _stamp(shard_file(self.folder, key)),
                  "texts": _stamp(texts_file(self.folder, key)) if entry.summary.cut_texts else None}
        return entry.summary if stamps == entry.published and [-1, -1] not in stamps.values() else None

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
        with open(entry_file(self.folder, key), "rb") as src:  # before `dest` is touched
            try:
                offset, length = read_entry_head(src).pages[page - 1]
            except (ValueError, TypeError, KeyError, IndexError) as err:
                raise OSError(f"no page {page} in the cache entry ({err})") from None
            size = len(head) + length + len(tail)
            kept = None
            if self.can_link:
                name = key if page == 1 else f"{key}-{page}"
                kept = self.folder / f"{name}.{hashlib.sha1(head + bytes([0]) + tail).hexdigest()[:16]}.page.html"
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
                copy_range(src, out, offset, length)
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


def link_or_copy(src: str, dest: str) -> None:
    """Publish the cache file `src` at `dest` in the site: a hard link where both are on one file
    system (no copy, and no new file for the file system to allocate), else a copy. Whatever was
    at `dest` is removed first, never written through."""
    if os.path.lexists(dest):
        os.unlink(dest)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def copy_range(src: BinaryIO, out: BinaryIO, offset: int, length: int) -> None:
    """Copy `length` bytes at `offset` of an open file into another at its end, in the kernel
    where it can. OSError when the source holds fewer bytes."""
    sent = 0
    try:
        while sent < length:
            done = os.sendfile(out.fileno(), src.fileno(), offset + sent, length - sent)
            if done == 0:
                break
            sent += done
    except (AttributeError, OSError):
        if sent:
            raise
    out.seek(0, os.SEEK_END)
    if sent < length:
        src.seek(offset + sent)
        rest = src.read(length - sent)
        if len(rest) < length - sent:
            raise OSError("cache entry cut short")
        out.write(rest)
