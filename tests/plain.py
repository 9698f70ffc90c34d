"""Plain reference twins of the speed tricks: one value at a time, no batching, no C idioms.
Tests compare each fast function with its twin here (same output on generated and real inputs)."""

from __future__ import annotations

import json
import math
import struct
from typing import Sequence, Union

from trajdocs.render import TOKEN_CHARS
from trajdocs.text import attr, esc, unshowable


def score_text(score: float) -> str:
    """One score as a data-e value: 4 significant digits; NaN and infinities by name."""
    if math.isnan(score):
        return "NaN"
    if math.isinf(score):
        return "Infinity" if score > 0 else "-Infinity"
    return f"{score:.6g}" if abs(score) < 1e300 else repr(score)


def score_texts(scores: list) -> list:
    return [None if s is None else score_text(s) for s in scores]


def token_elements(texts: Sequence[str], flags: Sequence[bool], scores: Sequence[Union[float, None]],
                   end: bool = False) -> str:
    """One <i> per token, built attribute by attribute."""
    out = []
    for i, (text, flag, score) in enumerate(zip(texts, flags, scores)):
        classes = (["td-end"] if end and i == len(texts) - 1 else []) + (["h"] if flag else [])
        shown = text[:TOKEN_CHARS]
        attrs = f' class="{" ".join(classes)}"' if classes else ""
        if score is not None:
            attrs += f' data-e="{score_text(score)}"'
        if unshowable(shown):
            attrs += f' data-raw="{attr(json.dumps(shown)[1:-1])}"'
        if len(text) > TOKEN_CHARS:
            attrs += f' data-cut="{len(text)}"'
        out.append(f"<i{attrs}>{esc(shown)}</i>")
    return "".join(out)


def packed_floats(values: Sequence) -> Union[str, None]:
    """Each value packed on its own: float16 if every value fits, else "!" + float32; one value
    when all are equal; None (missing) as NaN; None for the whole list if one is no number."""
    import base64

    if values and all(v is values[0] or v == values[0] for v in values):
        values = values[:1]
    values = [math.nan if v is None else v for v in values]
    for prefix, code in (("", "<e"), ("!", "<f")):
        packed = b""
        try:
            for v in values:
                packed += struct.pack(code, v)
        except OverflowError:
            continue
        except struct.error:
            return None
        return prefix + base64.b64encode(packed).decode("ascii")
    return None


def finite_sum(values: list) -> tuple:
    """Sum and count of the finite numbers of a list, one by one."""
    finite = []
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            finite.append(float(v))
    return (sum(finite), len(finite)) if finite else (0.0, 0)
def scored_tokens(starts: list[int], values: list, last: int, out: list[int]) -> int:
    """Token by token: [gap, length, level] for each token with a score that is not NaN."""
    from trajdocs.search import score_level

    for i, score in enumerate(values):
        if score is None or math.isnan(score):
            continue
        out += [starts[i] - last, starts[i + 1] - starts[i], score_level(score)]
        last = starts[i + 1]
    return last
