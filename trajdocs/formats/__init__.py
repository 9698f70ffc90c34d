"""The trainer formats trajdocs reads, and reading one step file with the right one.

Each format is one module here, declaring:
- `NAME`: the name the `format` option and `trajdocs check --format` take;
- `FILE_NAME`: the step file names it claims, a regular expression with a `step` group (the
  step number), matched against a whole file name; `SUFFIX`: its extension, for files read
  directly under another name; `NAMES_TEXT`: how the names are described in messages;
- `series(match)`: which files of one folder form one experiment;
- `read(data, problems, rule)`: one file's bytes -> trajectories (the data model in
  `model.py`), problems noted in `problems`, `common.Unreadable` when nothing can be read;
- `TOKEN_CHANNELS` and `FIELDS`: what per-token and per-trajectory data it provides.

Adding a format = adding its module (and its fixtures in the tests) and listing it in `FORMATS`.
Formats are tried in this order: the first whose `FILE_NAME` matches claims a file.
"""

from __future__ import annotations

import os
from types import ModuleType

from ..model import StepData
from . import lightrft, verl
from .common import (MAX_FILE_BYTES, CorrectRule, Problems, Unreadable, check_images, loads,
                     read_regular_file)

FORMATS: dict[str, ModuleType] = {module.NAME: module for module in (lightrft, verl)}
FORMAT_CHOICES = ("auto", *FORMATS)  # the `format` option
DEFAULT = lightrft.NAME  # a file no format claims by name or extension

__all__ = ["FORMATS", "FORMAT_CHOICES", "CorrectRule", "detect_format", "loads", "match_step_file", "read_step"]


def match_step_file(filename: str) -> tuple[str, int] | None:
    """(series, step) for a step file name, where series tells apart files that share a folder."""
    for module in FORMATS.values():
        m = module.FILE_NAME.fullmatch(filename)
        if m:
            return module.series(m), int(m.group("step"))
    return None


def step_file_names() -> str:
    """What step files are called, for messages."""
    return " or ".join(module.NAMES_TEXT for module in FORMATS.values())


def detect_format(path: str) -> str:
    """`format: auto`: the format claiming the file's name, else its extension, else the default."""
    name = os.path.basename(path)
    for module in FORMATS.values():
        if module.FILE_NAME.fullmatch(name):
            return module.NAME
    by_suffix = sorted(FORMATS.values(), key=lambda m: -len(m.SUFFIX))
    return next((m.NAME for m in by_suffix if path.endswith(m.SUFFIX)), DEFAULT)


def read_step(path: str, fmt: str = "auto", max_bytes: int = MAX_FILE_BYTES,
              rule: CorrectRule | None = None) -> StepData:
    """Never raises: whatever goes wrong becomes a problem or the reason the file is unreadable.
    Only regular files of at most `max_bytes` are read (a FIFO would wait forever, a link to
    /dev/zero never end). `rule` (the `correct` option) decides the correct / incorrect badges
    where set."""
    try:
        return _read_step(path, fmt, max_bytes, rule)
    except Exception as err:  # noqa: BLE001 - one odd file must not stop the build
        return StepData(unreadable=f"could not be read ({type(err).__name__}: {err})")


def _read_step(path: str, fmt: str, max_bytes: int, rule: CorrectRule | None) -> StepData:
    result = StepData()
    try:
        data = read_regular_file(path, max_bytes)
    except OSError as err:
        result.unreadable = f"cannot read file: {err.strerror or err}"
        return result
    except ValueError as err:
        result.unreadable = str(err)
        return result
    if not data or data.isspace():  # (no stripped copy of a large file)
        result.unreadable = "empty file (the trainer may not have written it yet)"
        return result
    module = FORMATS.get(detect_format(path) if fmt == "auto" else fmt, FORMATS[DEFAULT])
    problems = Problems()
    try:
        result.trajectories = module.read(data, problems, rule)
    except Unreadable as err:
        result.unreadable = str(err)
        return result
    check_images(result.trajectories, os.path.dirname(path), problems)
    result.problems = list(problems)
    return result
