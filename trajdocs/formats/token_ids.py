"""What the readers of token-id formats share (NeMo-RL, open-instruct): JSON Lines records read
line by line (a bad line is a problem, never the file), and token ids turned into tokens through
the `tokenizer` option, or shown as numbers without one."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterator

from ..model import Tokens
from ..tokenizer import TokenizerUnavailable, decode_pieces
from .common import Problems, first_bad_byte, kind, loads


def jsonl_records(data: bytes, problems: Problems, trainer: str, first_line: int = 1) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each line holding a JSON object; every other non-blank line is a
    problem naming its line (a half-written last line: "the file may still be being written").
    `first_line`: the line of its file `data` starts at."""
    lines = data.split(b"\n")
    last = len(lines) - (1 if data.endswith(b"\n") else 0) + first_line - 1
    for lineno, line in enumerate(lines, first_line):
        if not line.strip():
            continue
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
                    problems.add(f"line {lineno}: {bad.split(' (')[0]} of the line and any further bytes that "
                                 "are not UTF-8 text are shown as \ufffd (U+FFFD)")
                    yield lineno, obj
                    continue
            hint = " (the file may still be being written)" if lineno == last and not data.endswith(b"\n") else ""
            detail = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
            problems.add(f"line {lineno}: invalid JSON: {detail}{hint}")
            continue
        if not isinstance(obj, dict):
            problems.add(f"line {lineno}: is {kind(obj)}, expected an object ({trainer} writes one object a line)")
            continue
        yield lineno, obj


def is_ids(value: Any) -> bool:
    """A list of token ids (integers, not booleans)."""
    return isinstance(value, list) and set(map(type, value)) <= {int}  # (type, not isinstance: no booleans)


class Decoder:
    """Token ids -> `Tokens` for one file: with the tokenizer each token's text exactly as the
    tokenizer has it (`tokenizer.decode_pieces`), without one the ids as numbers. A tokenizer that
    cannot be used is one problem for the file, then ids."""

    def __init__(self, path: str, problems: Problems) -> None:
        self.path = path
        self.problems = problems

    def tokens(self, ids: list[int], where: str) -> Tokens:
        n = len(ids)
        if self.path:
            try:
                pieces = decode_pieces(ids, self.path)
            except TokenizerUnavailable as err:
                self.problems.add(f"{err}: token ids shown as numbers")
                self.path = ""
            else:
                if pieces.unknown:
                    shown = ", ".join(str(ids[i]) for i in pieces.unknown[:5])
                    self.problems.add(f"{where}: {len(pieces.unknown)} token ids outside the tokenizer's vocabulary "
                                      f"({shown}{', ...' if len(pieces.unknown) > 5 else ''}): is it the trainer's "
                                      f"tokenizer ({os.path.basename(self.path)})?")
                return Tokens(pieces.texts, [False] * n, [None] * n)
        return Tokens([str(i) for i in ids], [False] * n, [None] * n, ids=True)

    def text(self, ids: list[int], where: str) -> str | None:
        """The ids' text (every token's text joined), None without a usable tokenizer."""
        if not self.path:
            return None
        tokens = self.tokens(ids, where)
        return None if tokens.ids else "".join(tokens.texts)


def number_or_none(value: Any) -> float | None:
    """A number as float (NaN and infinities kept); None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def finite_mean(values: list) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None
