"""JSON Lines files of one object a line, as several trainers write them (AReaL, SkyRL, ROLL):
each line read on its own, a bad line a located problem, never the whole file."""

from __future__ import annotations

import json
from typing import Iterator

from .common import Problems, as_text, first_bad_byte, kind, loads


def objects(data: bytes, problems: Problems, writer: str) -> Iterator[tuple[int, dict, int, int]]:
    """(line number, object, start byte, end byte) of every line holding a JSON object; blank lines
    skipped; any other line is a problem naming it (`writer` says who writes the file, for
    messages). A last line without its newline that does not parse is called half-written."""
    start = 0
    lineno = 0
    size = len(data)
    while start < size:
        end = data.find(b"\n", start)
        end = size if end < 0 else end + 1
        line = data[start:end]
        lineno += 1
        if line.strip():
            try:
                obj = loads(line)
            except (ValueError, UnicodeDecodeError) as err:
                bad = first_bad_byte(line)
                if bad:
                    problems.add(f"line {lineno}: not UTF-8 text ({bad.split(' (')[0]} of the line), as {writer} "
                                 "never writes it: not read")
                else:
                    detail = f"{err.msg} (column {err.colno})" if isinstance(err, json.JSONDecodeError) else str(err)
                    hint = " (the file may still be being written)" if end == size and not line.endswith(b"\n") else ""
                    problems.add(f"line {lineno}: invalid JSON: {detail}{hint}")
            else:
                if isinstance(obj, dict):
                    yield lineno, obj, start, end
                else:
                    problems.add(f"line {lineno}: is {kind(obj)}, expected an object")
        start = end


def text_field(obj: dict, key: str) -> str | None:
    """A text field as written; anything but a string shown as its JSON."""
    value = obj.get(key)
    return value if value is None or isinstance(value, str) else as_text(value)
