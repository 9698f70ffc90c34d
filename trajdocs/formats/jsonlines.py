"""JSON Lines files of one object a line, as several trainers write them (AReaL, SkyRL, ROLL):
each line read on its own, a bad line a located problem, never the whole file."""

from __future__ import annotations

import json
from typing import Iterator

from .common import Problems, first_bad_byte, kind, loads, text_as_written


def objects(data: bytes, problems: Problems, writer: str, first_line: int = 1) -> Iterator[tuple[int, dict, int, int]]:
    """(line number, object, start byte, end byte) of every line holding a JSON object; blank lines
    skipped; any other line is a problem naming it (`writer` says who writes the file, for
    messages). A line with bytes that are not UTF-8 is read with each shown as U+FFFD, and the
    first one named. A last line without its newline that does not parse is called half-written.
    `first_line`: the line of its file `data` starts at (a step that is a byte range of a file)."""
    start = 0
    lineno = first_line - 1
    size = len(data)
    while start < size:
        end = data.find(b"\n", start)
        end = size if end < 0 else end + 1
        line = data[start:end]
        lineno += 1
        found = _object(line, lineno, end == size, problems, writer) if line.strip() else None
        if found is not None:
            yield lineno, found, start, end
        start = end


def _object(line: bytes, lineno: int, last: bool, problems: Problems, writer: str) -> dict | None:
    try:
        obj = loads(line)
    except (ValueError, UnicodeDecodeError) as err:
        bad = first_bad_byte(line)
        if bad:
            try:
                obj = loads(line.decode("utf-8", "replace"))
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                problems.add(f"line {lineno}: {bad.split(' (')[0]} of the line and any further bytes that are not "
                             "UTF-8 text are shown as \ufffd (U+FFFD)")
                return obj
            problems.add(f"line {lineno}: not UTF-8 text ({bad.split(' (')[0]} of the line), as {writer} "
                         "never writes it: not read")
        else:
            detail = f"{err.msg} (column {err.colno})" if isinstance(err, json.JSONDecodeError) else str(err)
            hint = " (the file may still be being written)" if last and not line.endswith(b"\n") else ""
            problems.add(f"line {lineno}: invalid JSON: {detail}{hint}")
        return None
    if not isinstance(obj, dict):
        problems.add(f"line {lineno}: is {kind(obj)}, expected an object ({writer} writes one object a line)")
        return None
    return obj


def text_field(obj: dict, key: str) -> str | None:
    """A text field as written; anything but a string shown as its JSON."""
    return text_as_written(obj.get(key))
