"""What every format's reader shares: located problem messages, JSON parsing, reading a file
safely, metadata flattening, the correctness rule, numbers and kinds of values."""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from typing import Any, Container

import orjson

from ..model import ListSummary, MetaValue, Trajectory
from ..text import counted

MAX_PROBLEMS = 20
MAX_META_FIELDS = 200
MAX_META_DEPTH = 4


@dataclass(frozen=True)
class ReadContext:
    """What a reader may need besides the bytes: the `correct` rule, the `tokenizer` option (a
    tokenizer.json file or a model folder, for formats that write token ids), the `mapping`
    option (fields of a generic file), the path of the file being read (for messages and files it
    names), the step being read (None when not known: a file read on its own), and the line of
    that file the bytes start at (1 unless a step is a byte range of a file holding several: then
    "line N" in messages is N - 1 + `first_line`)."""

    rule: "CorrectRule | None" = None
    tokenizer: str = ""
    mapping: str = ""  # the `mapping` option as JSON text ("" when unset), see `mapped.py`
    path: str = ""
    step: "int | None" = None
    first_line: int = 1


class Unreadable(Exception):
    """A file that cannot be read at all; the message says why (shown as the step's reason)."""


class Problems(list):
    """Located problem messages, capped so one broken file cannot flood the log."""

    def add(self, message: str) -> None:
        if len(self) < MAX_PROBLEMS:
            self.append(message)
        elif len(self) == MAX_PROBLEMS:
            self.append("further problems not listed")


def _int_literal(digits: str) -> int | str:
    """An integer beyond any float (which no statistic can use, and which Python cannot even print
    past 4300 digits) stays its digits, shown as written."""
    return int(digits) if len(digits) <= 300 else digits


def loads(data: bytes | str) -> Any:
    """orjson, falling back to the stdlib for the NaN/Infinity literals Python's json writes (and
    integers beyond 64 bits)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data, parse_int=_int_literal)
        except RecursionError:
            raise ValueError("objects nested too deeply to read") from None


def decode_error(err: Exception, data: bytes) -> str:
    if isinstance(err, json.JSONDecodeError):
        where = f"line {err.lineno} column {err.colno}"
        if err.pos >= len(err.doc.rstrip()):
            return f"invalid JSON: unexpected end of file at {where} (the file may still be being written)"
        return f"invalid JSON at {where}: {err.msg}"
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text (byte {err.start})"
    return f"cannot parse: {err}"


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def first_bad_byte(data: bytes) -> str:
    """Where the first byte that is not UTF-8 sits, for a message ("byte 55, line 3")."""
    try:
        data.decode("utf-8")
        return ""
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        return f"byte {err.start} (line {line})"


def with_replacement(data: bytes, problems: Problems):  # type: ignore[no-untyped-def]
    """A document whose bytes are not all UTF-8, read with each bad byte as U+FFFD (a problem
    names the first); None when it is no JSON even so. Only after strict decoding failed."""
    try:
        doc = loads(data.decode("utf-8", "replace"))
    except ValueError:
        return None
    problems.add(f"{first_bad_byte(data)} and any further bytes that are not UTF-8 text are shown as "
                 "\ufffd (U+FFFD)")
    return doc


MAX_FILE_BYTES = 2 * 2 ** 30  # default cap on a step file's size (the `max_file_mb` option)


def read_regular_file(path: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; ValueError (saying why) for anything
    else, found without waiting (a FIFO opens without blocking) or reading past the cap."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file (a FIFO, device or socket): not read")
        if st.st_size > max_bytes:
            raise ValueError(f"{st.st_size / 2 ** 20:,.0f} MB, over the {max_bytes / 2 ** 20:,.0f} MB "
                             "size cap (the trajdocs option `max_file_mb`): not read")
        # read as much as the file holds (Python allocates what is asked for), then to its end
        # should it have grown meanwhile, never past the cap
        parts = [f.read(st.st_size + 1)]
        size = len(parts[0])
        while size <= max_bytes and size > st.st_size and (more := f.read(min(2 ** 20, max_bytes + 1 - size))):
            parts.append(more)
            size += len(more)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
    if len(data) > max_bytes:
        raise ValueError(f"grew past the {max_bytes / 2 ** 20:,.0f} MB size cap (the trajdocs option "
                         "`max_file_mb`) while being read: not read")
    return data


def check_numbers(obj: dict, keys: tuple[str, ...], where: str, prefix: str, problems: Problems) -> None:
    for key in keys:
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, list))):
            problems.add(f"{where}: {prefix}{key} is {kind(value)}, expected a number")


def check_images(trajectories: list[Trajectory], folder: str, problems: Problems) -> None:
    """Keep only image paths that stay inside the step file's folder and exist."""
    for traj in trajectories:
        kept = []
        for rel in traj.image_files:
            norm = os.path.normpath(rel.replace("\\", "/"))
            if os.path.isabs(norm) or norm.startswith(".."):
                problems.add(f"trajectory {traj.index}: image path {rel!r} leaves the run folder, not shown")
            elif not os.path.isfile(os.path.join(folder, norm)):
                problems.add(f"trajectory {traj.index}: image {rel!r} not found")
            else:
                kept.append(norm.replace(os.sep, "/"))
        traj.image_files = kept


def metadata_except(obj: dict, skip: Container[str]) -> dict[str, MetaValue]:
    """Every field of a record but those in `skip` (the ones shown elsewhere), flattened by `Meta`."""
    meta = Meta()
    for key, value in obj.items():
        if key not in skip:
            meta.add(str(key), value)
    return meta.fields


class Meta:
    """Flattens nested metadata into dotted keys; numeric lists become summaries."""

    def __init__(self) -> None:
        self.fields: dict[str, MetaValue] = {}
        self.dropped = 0

    def add(self, key: str, value: Any, depth: int = 0) -> None:
        if isinstance(value, dict):
            if not value:
                self._put(key, "{}")
            elif depth >= MAX_META_DEPTH:
                self._put(key, as_text(value))
            else:
                for k, v in value.items():
                    self.add(f"{key}.{k}", v, depth + 1)
        elif isinstance(value, list):
            self._put(key, summarize_list(value))
        else:
            self._put(key, value)

    def _put(self, key: str, value: MetaValue) -> None:
        if len(self.fields) < MAX_META_FIELDS:
            self.fields[key] = value
        else:
            self.dropped += 1
            self.fields["…"] = f"{self.dropped} more fields not shown"


SHORT_LIST = 8  # numeric lists up to this long are shown value by value


def summarize_list(values: list) -> MetaValue:
    if len(values) <= 8 and all(v is None or isinstance(v, (str, bool)) for v in values):
        return as_text(values)
    if values:
        try:
            total = sum(values)  # TypeError for anything but numbers
        except TypeError:
            total = math.nan
        if math.isfinite(total):  # then no value is NaN or infinite
            return ListSummary(len(values), total / len(values), float(min(values)), float(max(values)),
                               values=tuple(values) if len(values) <= SHORT_LIST else ())
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    finite = [v for v in numbers if math.isfinite(v)]
    return ListSummary(
        length=len(values),
        mean=sum(finite) / len(finite) if finite else None,
        min=min(finite) if finite else None,
        max=max(finite) if finite else None,
        non_numeric=len(values) - len(numbers),
    )


ACCURACY_KEYS = ("acc", "accuracy", "correct", "is_correct")


def accuracy(reward_metrics: Any, *sources: Any) -> float | None:
    """This trajectory's accuracy: the first of `acc`, `accuracy`, `correct`, `is_correct` (true /
    false or a number) in `reward_metrics` (where any `accuracy...` name counts too) or in
    `sources`. Only single values: a list (LightRFT writes the whole micro-batch's
    `reward_metrics` on each sample) is not this trajectory's."""
    if isinstance(reward_metrics, dict):
        names = list(ACCURACY_KEYS) + sorted(k for k in reward_metrics if isinstance(k, str)
                                            and k.startswith("accuracy") and k != "accuracy")
        value = _first_scalar(reward_metrics, names)
        if value is not None:
            return value
    for source in sources:
        if isinstance(source, dict):
            value = _first_scalar(source, ACCURACY_KEYS)
            if value is not None:
                return value
    return None


def _first_scalar(source: dict, names) -> float | None:
    for key in names:
        value = source.get(key)
        if isinstance(value, (bool, int, float)) and math.isfinite(value):
            return float(value)
    return None


def correctness(acc: float | None) -> bool | None:
    """Right (1 or true) or wrong (0 or false); any other accuracy is no verdict."""
    return None if acc not in (0.0, 1.0) else acc == 1.0


@dataclass(frozen=True)
class CorrectRule:
    """The `correct` option: a trajectory is correct when the value at `field` (a dotted path
    in the record as written, e.g. `info.reward_metrics.accuracy_reward`) is true, or a number
    at least `min`."""

    field: str
    min: float = 1.0

    def verdict(self, obj: dict) -> tuple[bool | None, str]:
        """(correct or not, "") or (None, why there is no verdict)."""
        value: Any = obj
        for part in self.field.split("."):
            if not isinstance(value, dict) or part not in value:
                return None, "missing"
            value = value[part]
        if isinstance(value, bool):
            return value, ""
        if isinstance(value, (int, float)) and math.isfinite(value):
            return value >= self.min, ""
        return None, kind(value) if not isinstance(value, float) else "not a finite number"


def apply_rule(trajectories: list[Trajectory], records: list[dict], rule: CorrectRule, problems: Problems) -> None:
    """Badges from the user's rule, replacing what the file's own fields said."""
    misses: dict[str, list[int]] = {}
    for traj, obj in zip(trajectories, records):
        traj.correct, why = rule.verdict(obj)
        traj.accuracy = None if traj.correct is None else float(traj.correct)
        if why:
            misses.setdefault(why, []).append(traj.index)
    for why, indices in misses.items():
        what = why if why in ("missing", "not a finite number") else f"{why}, not true / false or a number"
        problems.add(f"correct rule: {rule.field} is {what} in {counted(len(indices), 'trajectory', 'trajectories')} "
                     f"({', '.join(map(str, indices[:5]))}{', ...' if len(indices) > 5 else ''}): no badge")


def aligned(values: Any, n: int) -> list | None:
    """A per-token list matched to n response tokens (a leading entry for the last prompt token
    is dropped); None when it is no list or does not match in length."""
    if not isinstance(values, list) or len(values) not in (n, n + 1) or n == 0:
        return None
    return values[len(values) - n:]  # packing them for the page rejects anything but numbers


def number(*candidates: Any) -> float | None:
    for value in candidates:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            return float(value[-1])  # per-token list: the sequence-level value sits on the last token
    return None


def per_token_list(value: Any, n: int, name: str, where: str, problems: Problems) -> list | None:
    """`value` when it is a list of one value per token (`n`); None when absent, or, with a problem
    naming it, when it is anything else."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n:
        what = f"{len(value)} values" if isinstance(value, list) else kind(value)
        problems.add(f"{where}: {name} is {what}, not one value per token ({n}): not shown")
        return None
    return value


def text_as_written(value: Any) -> str | None:
    """A text field's value as written (None stays None); anything but a string shown as its JSON."""
    return value if value is None or isinstance(value, str) else as_text(value)


def as_text(value: Any, limit: int = 10_000) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value) if not isinstance(value, (dict, list)) else f"<{kind(value)} nested too deeply>"
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def keys_text(obj: dict) -> str:
    keys = list(obj)[:5]
    return ", ".join(repr(k) for k in keys) + (", ..." if len(obj) > 5 else "")
