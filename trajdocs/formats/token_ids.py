"""What the readers of token-id formats share (NeMo-RL, open-instruct): JSON Lines records read
line by line (a bad line is a problem, never the file), and token ids turned into tokens through
the `tokenizer` option, or shown as numbers without one."""

from __future__ import annotations

import math
import os
from typing import Any, Iterator

from ..model import Tokens
from ..tokenizer import TokenizerUnavailable, decode_pieces
from .common import Problems
from .jsonlines import objects


def jsonl_records(data: bytes, problems: Problems, trainer: str, first_line: int = 1) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each line holding a JSON object; every other non-blank line is a
    problem naming its line (a half-written last line: "the file may still be being written").
    `first_line`: the line of its file `data` starts at."""
    for lineno, obj, _, _ in objects(data, problems, trainer, first_line):
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
