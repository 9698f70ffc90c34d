"""Text for HTML: escaping that shows file text exactly, and number formatting."""

from __future__ import annotations

import math
import re
from functools import lru_cache
from html import escape
from typing import Union

DASH = "—"
SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    """Lone surrogates: possible in JSON, impossible in UTF-8 (checked by encoding: far faster
    than a regular expression over long texts)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unshowable(text: str) -> bool:
    """Characters HTML cannot carry exactly: NUL and lone surrogates."""
    return "\x00" in text or has_surrogates(text)


def needs_escape(text: str) -> bool:
    return "<" in text or "&" in text or ">" in text or "\r" in text or unshowable(text)


def clean(text: str) -> str:
    """Lone surrogates become U+FFFD."""
    return SURROGATE.sub("\ufffd", text) if has_surrogates(text) else text


def esc(text: str) -> str:
    """Escape text for element content. CR is written as a reference (the HTML parser would turn
    a raw CR into LF); NUL cannot appear in an HTML document, so it is shown as U+2400."""
    out = escape(clean(text), quote=False)
    if "\r" in out:
        out = out.replace("\r", "&#13;")
    if "\x00" in out:
        out = out.replace("\x00", "\u2400")
    return out


def attr(text: str) -> str:
    return esc(text).replace('"', "&quot;")


def fmt_number(x: Union[float, int, None]) -> str:
    if x is None:
        return DASH
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    if abs(x) < 1e-3:
        return f"{x:.3e}"
    return f"{x:.4f}".rstrip("0").rstrip(".") if x != int(x) or abs(x) < 1e15 else f"{x:.6g}"


def fmt_ratio(x: Union[float, None]) -> str:
    return DASH if x is None else f"{100 * x:.1f}%"


@lru_cache(maxsize=4096)  # metadata keys repeat in every trajectory
def esc_breakable(text: str, after: str) -> str:
    """Escaped text with a line-break opportunity (<wbr>: no character, copies as written) after
    each character of `after` (e.g. "/" in experiment names, "._" in metadata keys)."""
    out = esc(text)
    for char in after:  # none of these occurs inside an escape sequence
        out = out.replace(char, char + "<wbr>")
    return out


def name_html(name: str) -> str:
    """An experiment name for a table cell: each "/"-separated part kept on one line (a name breaks
    only after "/", never inside a part at its "-"), copied exactly as written."""
    return "/<wbr>".join(f'<span class="td-seg">{esc(part)}</span>' for part in name.split("/"))


def fmt_stat(x: Union[float, int, None]) -> str:
    """A derived number (a mean, a spread) for reading: four significant digits, never exponent
    notation in the usual range (384.875 -> "384.9", 0.43752 -> "0.4375", 12345.6 -> "12346").
    Values as written in a file are shown with `fmt_number` instead."""
    if x is None or isinstance(x, (bool, int)) or not math.isfinite(x) or x == 0 or not 1e-3 <= abs(x) < 1e15:
        return fmt_number(x)
    digits = max(0, 3 - math.floor(math.log10(abs(x))))
    return f"{x:.{digits}f}".rstrip("0").rstrip(".") if digits else f"{x:.0f}"


def counted(n: int, noun: str, plural: str = "") -> str:
    """'1 step', '2 steps' ('1 trajectory', '3 trajectories' with an explicit plural)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def shown_name(text: str) -> str:
    """A file or folder name for a terminal or log line: control characters, lone surrogates (bytes
    that are not UTF-8 in a name) and other unprintable characters escaped as in Python's repr, so
    a name can neither split a line nor send raw bytes to the terminal; printable names unchanged."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] if ch != "'" else ch for ch in text)


# --- page sources: titles, front matter, Markdown -------------------------------------------

MARKDOWN_ESCAPES = "\\`*_{}[]()#+-.!|>"


def title_text(name: str) -> str:
    """A name as page/nav title. Themes print titles as HTML and Material un-escapes them inside
    <title>, so angle brackets become look-alikes there; the page body shows the exact name."""
    return escape(clean(name).replace("<", "‹").replace(">", "›"), quote=False)


def yaml_string(text: str) -> str:
    """A YAML double-quoted scalar (much faster than yaml.safe_dump for one value per page)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F or (0xA0 <= code and not 0xD800 <= code <= 0xDFFF and code not in (0xFEFF, 0xFFFE, 0xFFFF)):
            out.append(ch)
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def markdown_text(text: str) -> str:
    """Text shown as written inside Markdown: escaped for HTML, then every Markdown character."""
    escaped = esc(text)
    return "".join("\\" + ch if ch in MARKDOWN_ESCAPES else ch for ch in escaped)
