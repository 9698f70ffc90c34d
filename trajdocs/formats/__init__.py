"""The trainer formats trajdocs reads, and reading one step with the right one.

Each format is one module here, declaring:
- `NAME`: the name the `format` option and `trajdocs check --format` take;
- `PATH`: the step files it claims, a regular expression matched against the end of a file's
  path below the runs folder ('/' between folders), starting at a folder boundary. Its groups:
  `step` (the step number; without it the steps come from the files' content, see `steps_in`),
  `view` (a view of one run: "train", "val", "eval" ...), `part` (one of several files that
  together hold one step: ranks, tasks, data sources). The folders before the match are the
  experiment's folder. `SUFFIX`: its extension, for files read directly under another name;
  `NAMES_TEXT`: how the names are described in messages;
- `series(match)`: which files of one experiment folder form one experiment;
- `read(data, problems, ctx)`: one file's bytes -> trajectories (the data model in `model.py`),
  problems noted in `problems`, `common.Unreadable` when nothing can be read; `ctx` is a
  `common.ReadContext` (correct rule, tokenizer, mapping, path);
- `steps_in(data)` (only formats whose PATH has no `step` group, e.g. shards holding many steps):
  {step: [(start, end) byte ranges of its records]};
- `TOKEN_CHANNELS` and `FIELDS`: what per-token and per-trajectory data it provides.
- `STAMP_FILES` (optional): marker files beside a step's files whose presence changes what its
  pages say (prime-rl's `STABLE`); `related_files(path)` (optional): other files a step file's
  pages show (open-instruct's run metadata). Both count in the step's cache key.

Adding a format = adding its module (and its writer in `demo/`, fixtures in the tests, a docs
section) and listing it in `FORMATS`. Formats are tried in this order: the first whose `PATH`
matches claims a file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from types import ModuleType

from ..model import StepData, StepFile
from . import areal, lightrft, mapped, nemo_rl, open_instruct, prime_rl, prime_rl_tokens, roll, skyrl, trl, verl
from .common import (MAX_FILE_BYTES, CorrectRule, Problems, ReadContext, Unreadable, check_images, loads,
                     read_regular_file)

# Of formats sharing an extension, the last listed claims a file no PATH matches (verl: any .jsonl).
FORMATS: dict[str, ModuleType] = {module.NAME: module for module in (
    lightrft, trl, areal, skyrl, roll, nemo_rl, open_instruct, prime_rl, prime_rl_tokens, verl, mapped)}
FORMAT_CHOICES = ("auto", *FORMATS)  # the `format` option
DEFAULT = lightrft.NAME  # a file no format claims by name or extension

__all__ = ["FORMATS", "FORMAT_CHOICES", "CorrectRule", "PathMatch", "ReadContext", "detect_format", "loads",
           "match_step_path", "match_step_file", "read_step", "user_claims"]

_ANCHORED = {name: re.compile(r"(?:\A|(?<=/))(?:" + module.PATH.pattern + r")\Z", module.PATH.flags)
             for name, module in FORMATS.items()}


@dataclass(frozen=True)
class PathMatch:
    """What a step file's path says: its format, experiment folder (relative, "" = where the
    search started), series, view, part and step (None: the steps are in the content)."""

    fmt: str
    folder: str
    series: str
    view: str
    part: str
    step: int | None


def match_step_path(rel: str, claims: tuple[tuple[str, re.Pattern], ...] = ()) -> PathMatch | None:
    """The claim on a file by its path below the runs folder ('/'-separated), or None. `claims`
    ((format name, anchored pattern), from `user_claims`) are tried before the formats' own."""
    for name, pattern in (*claims, *_ANCHORED.items()):
        m = pattern.search(rel)
        if m:
            groups = m.groupdict()
            step = groups.get("step")
            return PathMatch(name, rel[:m.start()].rstrip("/"), FORMATS[name].series(m),
                             groups.get("view") or "", groups.get("part") or "",
                             int(step) if step is not None else None)
    return None


def match_step_file(filename: str) -> tuple[str, int] | None:
    """(series, step) for a step file name alone (formats whose PATH is a file name)."""
    found = match_step_path(filename)
    if found is None or found.step is None:
        return None
    return found.series, found.step


def user_claims(mapping: str) -> tuple[tuple[str, re.Pattern], ...]:
    """The files the `mapping` option claims (its `files` pattern), for `match_step_path`."""
    return mapped.claims(mapping)


def detect_format(path: str) -> str:
    """`format: auto`: the format claiming the file's path, else its extension (of formats sharing
    one, the last listed: the broadest, e.g. verl for any `.jsonl`), else the default."""
    found = match_step_path(path.replace(os.sep, "/"))
    if found is not None:
        return found.fmt
    by_suffix = sorted(reversed(list(FORMATS.values())), key=lambda m: -len(m.SUFFIX))
    return next((m.NAME for m in by_suffix if m.SUFFIX and path.endswith(m.SUFFIX)), DEFAULT)


def read_step(step: str | StepFile, fmt: str = "auto", max_bytes: int = MAX_FILE_BYTES,
              rule: CorrectRule | None = None, ctx: ReadContext | None = None) -> StepData:
    """One step: a file, or the files / byte ranges of a `StepFile` (trajectories of all of them,
    in order, numbered through). Never raises: whatever goes wrong becomes a problem or the
    reason the step is unreadable. Only regular files of at most `max_bytes` are read (a FIFO
    would wait forever, a link to /dev/zero never end). `rule` (the `correct` option) decides the
    correct / incorrect badges where set; `ctx` carries it with the other reading options."""
    ctx = ctx or ReadContext(rule=rule)
    if isinstance(step, str):
        step = StepFile(0, step)
    else:
        ctx = replace(ctx, step=step.step)
    ranges = step.ranges()
    if len(ranges) == 1:
        path, start, end = ranges[0]
        return _read_part(path, start, end, fmt if fmt != "auto" or not step.fmt else step.fmt, max_bytes, ctx)
    result = StepData()
    reasons = []
    for path, start, end in ranges:
        part = _read_part(path, start, end, fmt if fmt != "auto" or not step.fmt else step.fmt, max_bytes, ctx)
        name = os.path.basename(path)
        if part.unreadable:
            reasons.append(f"{name}: {part.unreadable}")
        for traj in part.trajectories:
            traj.index = len(result.trajectories)
            traj.source = traj.source or name
            result.trajectories.append(traj)
        result.problems.extend(f"{name}: {p}" for p in part.problems)
    if not result.trajectories and reasons:
        result.unreadable = "; ".join(reasons)
    else:
        result.problems[:0] = reasons
    return result


def _read_part(path: str, start: int, end: int, fmt: str, max_bytes: int, ctx: ReadContext) -> StepData:
    try:
        return _read_bytes(path, start, end, fmt, max_bytes, ctx)
    except Exception as err:  # noqa: BLE001 - one odd file must not stop the build
        return StepData(unreadable=f"could not be read ({type(err).__name__}: {err})")


def _read_bytes(path: str, start: int, end: int, fmt: str, max_bytes: int, ctx: ReadContext) -> StepData:
    result = StepData()
    try:
        data = read_regular_file(path, max_bytes)
    except OSError as err:
        result.unreadable = f"cannot read file: {err.strerror or err}"
        return result
    except ValueError as err:
        result.unreadable = str(err)
        return result
    first_line = 1
    if start or end >= 0:
        first_line += data.count(b"\n", 0, start)
        data = data[start:end if end >= 0 else None]
    if not data or data.isspace():  # (no stripped copy of a large file)
        result.unreadable = "empty file (the trainer may not have written it yet)"
        return result
    module = FORMATS.get(detect_format(path) if fmt == "auto" else fmt, FORMATS[DEFAULT])
    problems = Problems()
    try:
        result.trajectories = module.read(data, problems, replace(ctx, path=path, first_line=first_line))
    except Unreadable as err:
        result.unreadable = str(err)
        return result
    check_images(result.trajectories, os.path.dirname(path), problems)
    result.problems = list(problems)
    return result


def steps_in_file(path: str, fmt: str, max_bytes: int = MAX_FILE_BYTES,
                  mapping: str = "") -> dict[int, list[tuple[int, int]]]:
    """{step: byte ranges} of a file holding several steps (a format without a step in its PATH);
    remembered per file version (size, times, inode), so a serve rebuild reads only changed files.
    Raises OSError / ValueError when the file cannot be read."""
    st = os.stat(path)
    stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, mapping if fmt == mapped.NAME else "")
    known = _STEPS_IN.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    data = read_regular_file(path, max_bytes)
    steps = mapped.steps_in(data, ReadContext(mapping=mapping, path=path)) if fmt == mapped.NAME \
        else FORMATS[fmt].steps_in(data)
    _STEPS_IN[path] = (stamp, steps)
    return steps


_STEPS_IN: dict[str, tuple[tuple, dict]] = {}
