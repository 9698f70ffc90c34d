"""Any trainer's files, read through the `mapping` option: which files hold the samples (a pattern
of paths below the runs folder), where each sample's step comes from, and which field is the
prompt, the response, the reward, the group, the response tokens and their per-token values.

JSON Lines (one record a line), JSON (an array of records, or the array at `records`) and Parquet
(one record a row; needs `pyarrow`: `pip install 'trajdocs[parquet]'`). Fields are dotted paths
(`info.reward`; a number selects a list item: `rewards.0`); a name holding dots as written is
found first. A mapped field missing in a record is a problem naming the field and the records;
every field not shown as prompt, response or tokens is shown as metadata.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..model import CHANNELS, Tokens, Trajectory
from ..text import counted
from ..tokenizer import TokenizerUnavailable, decode_pieces
from .common import (Meta, Problems, ReadContext, Unreadable, accuracy, apply_rule, as_text, correctness,
                     decode_error, first_bad_byte, kind, loads, text_as_written)
from .parquet import read_table

NAME = "mapped"
PATH = re.compile(r"(?!)")  # claims nothing by itself: the `mapping` option's `files` pattern does (see `claims`)
SUFFIX = ""
NAMES_TEXT = "files matching the `files` pattern of the `mapping` option (any trainer's JSONL, JSON or Parquet)"
TOKEN_CHANNELS = ("tokens (strings, or ids with the tokenizer)", "entropy", "logprob and surprisal (logprobs)",
                  *CHANNELS)
FIELDS = ("prompt", "response", "reward", "step", "group", "metadata (every other field)")

KINDS = {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
FIELD_KEYS = ("step", "prompt", "response", "reward", "group", "tokens", "entropy", "logprobs")
KEYS = ("files", *FIELD_KEYS, "channels", "records")
PLACEHOLDERS = {"step": r"(?P<step>\d+)", "view": r"(?P<view>[^/]+?)", "part": r"(?P<part>[^/]+?)"}
EXAMPLE = 'e.g. {files: "rollouts/step_{step}.jsonl", prompt: prompt, response: completion, reward: reward}'


@dataclass(frozen=True)
class Mapping:
    """The `mapping` option, checked (see `parse`)."""

    files: str
    pattern: re.Pattern  # matched against the end of a path below the runs folder, as format PATHs are
    step: str = ""  # the field holding each record's step ("" when the file name says it)
    prompt: str = ""
    response: str = ""
    reward: str = ""
    group: str = ""
    tokens: str = ""
    entropy: str = ""
    logprobs: str = ""
    channels: tuple = ()  # (channel name, field) pairs
    records: str = ""  # JSON files: the field holding the list of records


def glob_regex(files: str) -> str:
    """The `files` pattern as a regular expression: `*` any characters but '/', `**/` any folders,
    `?` one character, `{step}` the step number, `{view}` and `{part}` a name."""
    out = []
    for token in re.split(r"(\*\*/|\*|\?|\{[a-z]+\})", files):
        if token == "**/":
            out.append(r"(?:[^/]+/)*")
        elif token == "*":
            out.append(r"[^/]*")
        elif token == "?":
            out.append(r"[^/]")
        elif token.startswith("{") and token[1:-1] in PLACEHOLDERS:
            out.append(PLACEHOLDERS[token[1:-1]])
        else:
            out.append(re.escape(token))
    return "".join(out)


def parse(value: Any) -> Mapping:
    """The option as written in mkdocs.yml, checked; ValueError saying what is wrong and what is expected."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a set of keys, {EXAMPLE}")
    unknown = [k for k in value if k not in KEYS]
    if unknown:
        raise ValueError(f"unknown key {str(unknown[0])!r} (the keys are {', '.join(KEYS)})")
    files = value.get("files")
    if not isinstance(files, str) or not files.strip():
        raise ValueError(f"'files' is required: a pattern of the files' paths below the runs folder, {EXAMPLE}")
    files = files.strip().strip("/")
    if ".." in files.split("/") or files.startswith("~"):
        raise ValueError(f"'files': {files!r} must be a path pattern inside the runs folder")
    suffix = next((s for s in KINDS if files.endswith(s)), None)
    if suffix is None:
        raise ValueError(f"'files': {files!r} must end in .jsonl, .json or .parquet (the file types trajdocs reads)")
    bad = [p for p in re.findall(r"\{([^}]*)\}", files) if p not in PLACEHOLDERS]
    if bad:
        raise ValueError(f"'files': unknown placeholder {{{bad[0]}}} (use {{step}}, {{view}}, {{part}}; "
                         "* and ** are wildcards)")
    for name in PLACEHOLDERS:
        if files.count("{" + name + "}") > 1:
            raise ValueError(f"'files': {{{name}}} may appear once")
    fields = {}
    for key in FIELD_KEYS + ("records",):
        field = value.get(key)
        if field is None:
            continue
        if isinstance(field, bool) or not isinstance(field, (str, int)) or not str(field).strip():
            raise ValueError(f"'{key}' must be a field name of the records (a dotted path such as info.reward)")
        fields[key] = str(field).strip()
    channels = value.get("channels") or {}
    if not isinstance(channels, dict) or not all(isinstance(f, str) and f.strip() for f in channels.values()):
        raise ValueError("'channels' must map channel names to fields, e.g. {advantage: advantages}")
    wrong = [c for c in channels if c not in CHANNELS]
    if wrong:
        raise ValueError(f"'channels': unknown channel {str(wrong[0])!r} (the channels are {', '.join(CHANNELS)})")
    has_step = "{step}" in files
    if has_step and "step" in fields:
        raise ValueError("the step comes either from the file name ({step} in 'files') or from a field ('step'), "
                         "not both")
    if not has_step and "step" not in fields:
        raise ValueError("say where the step comes from: {step} in 'files' (e.g. step_{step}.jsonl), or 'step': "
                         "the field holding each record's step")
    if "response" not in fields and "tokens" not in fields:
        raise ValueError("name the field of the response: 'response' (text) or 'tokens' (a list of tokens)")
    token_fields = [k for k in ("entropy", "logprobs") if k in fields] + (["channels"] if channels else [])
    if token_fields and "tokens" not in fields:
        raise ValueError(f"'{token_fields[0]}' holds per-token values: name the tokens' field too ('tokens')")
    if "records" in fields and suffix != ".json":
        raise ValueError("'records' (the field holding the list of records) is for .json files only")
    pattern = re.compile(r"(?:\A|(?<=/))(?:" + glob_regex(files) + r")\Z", re.S)
    return Mapping(files, pattern, channels=tuple(sorted((c, f.strip()) for c, f in channels.items())), **fields)


@lru_cache(maxsize=8)
def from_text(text: str) -> Mapping | None:
    """The option as `RenderOptions.mapping` carries it (JSON text; "" when unset)."""
    return parse(json.loads(text)) if text else None


def claims(text: str) -> tuple[tuple[str, re.Pattern], ...]:
    """The files the option claims: (format name, anchored pattern), tried before the built-in formats."""
    spec = from_text(text)
    return ((NAME, spec.pattern),) if spec is not None else ()


def series(match: re.Match) -> str:
    return NAME


def file_kind(path: str) -> str:
    return next((kind for suffix, kind in KINDS.items() if path.endswith(suffix)), "jsonl")


# --- fields ---------------------------------------------------------------------------------

MISSING = object()


def lookup(record: Any, path: str) -> Any:
    """The value at a dotted path (a name written with its dots found first); MISSING when absent."""
    if isinstance(record, dict) and path in record:
        return record[path]
    value = record
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and re.fullmatch(r"-?\d+", part) and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


def step_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


# --- records of one file --------------------------------------------------------------------

def jsonl_records(data: bytes, problems: Problems, label: str = "line {n}") -> list[tuple[str, dict]]:
    """(where, record) for each line holding an object; other lines are problems. `label` names a
    line ("line 3"; "line 3 of step 5's lines" when reading only the lines of one step)."""
    out = []
    for n, line in enumerate(data.splitlines(), 1):
        lineno = label.format(n=n)
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except (ValueError, UnicodeDecodeError) as err:
            bad = first_bad_byte(line)
            try:
                obj = loads(line.decode("utf-8", "replace")) if bad else None
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                detail = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
                problems.add(f"{lineno}: invalid JSON: {detail}")
                continue
            problems.add(f"{lineno}: {bad.split(' (')[0]} and any further bytes that are not UTF-8 text "
                         "are shown as \ufffd (U+FFFD)")
        if not isinstance(obj, dict):
            problems.add(f"{lineno}: is {kind(obj)}, expected an object")
            continue
        out.append((lineno, obj))
    return out


def document_records(data: bytes, spec: Mapping, problems: Problems) -> list[tuple[str, dict]]:
    """The records of a JSON file: its array, or the array at `records`."""
    try:
        doc = loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise Unreadable(decode_error(err, data)) from None
    if spec.records:
        doc = lookup(doc, spec.records)
        if doc is MISSING:
            raise Unreadable(f"no field {spec.records!r} (the mapping's 'records') in the file")
    if not isinstance(doc, list):
        where = f"{spec.records!r}" if spec.records else "the file"
        raise Unreadable(f"{where} is {kind(doc)}, expected a list of records")
    out = []
    for n, obj in enumerate(doc):
        if isinstance(obj, dict):
            out.append((f"record {n}", obj))
        else:
            problems.add(f"record {n}: is {kind(obj)}, expected an object")
    return out


def parquet_records(data: bytes) -> list[tuple[str, dict]]:
    rows = read_table(data).to_pylist()
    return [(f"row {n}", row) for n, row in enumerate(rows)]


def records_of(data: bytes, spec: Mapping, path: str, problems: Problems,
               label: str = "line {n}") -> list[tuple[str, dict]]:
    kind_ = file_kind(path)
    if kind_ == "parquet":
        return parquet_records(data)
    if kind_ == "json":
        return document_records(data, spec, problems)
    return jsonl_records(data, problems, label)


def steps_in(data: bytes, ctx: ReadContext) -> dict[int, list[tuple[int, int]]]:
    """{step: byte ranges} of a file whose records say their step (the mapping's `step` field).
    JSON Lines: the lines of each step (a line without a readable step goes with the step before
    it, where reading names it); JSON and Parquet: the whole file for each step (reading keeps the
    step's records)."""
    spec = from_text(ctx.mapping)
    if spec is None:
        return {}
    if file_kind(ctx.path) != "jsonl":
        try:
            records = records_of(data, spec, ctx.path, Problems())
        except Unreadable:
            return {0: [(0, -1)]}  # reading it says why
        steps = {step_number(lookup(obj, spec.step)) for _, obj in records} - {None}
        return {step: [(0, -1)] for step in sorted(steps)} or {0: [(0, -1)]}
    ranges: dict[int, list[tuple[int, int]]] = {}
    current: int | None = None
    orphans: list[tuple[int, int]] = []  # lines before the first step
    pos = 0
    for line in data.splitlines(keepends=True):
        start, pos = pos, pos + len(line)
        if not line.strip():
            continue
        try:
            step = step_number(lookup(loads(line), spec.step))  # as reading parses it (NaN literals too)
        except (ValueError, UnicodeDecodeError, TypeError):
            step = None
        step = current if step is None else step
        current = step
        if step is None:
            orphans.append((start, pos))
            continue
        held = ranges.setdefault(step, [])
        if held and held[-1][1] == start:
            held[-1] = (held[-1][0], pos)
        else:
            held.append((start, pos))
    if orphans:
        first = min(ranges) if ranges else 0
        ranges[first] = sorted(orphans + ranges.get(first, []))
    return ranges


# --- one file -------------------------------------------------------------------------------

def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    spec = from_text(ctx.mapping)
    if spec is None:
        raise Unreadable("no `mapping` option: the mapped format reads files through it")
    ranged = bool(spec.step) and ctx.step is not None
    label = "line {n} of step %d's lines" % ctx.step if ranged else "line {n}"
    records = records_of(data, spec, ctx.path, problems, label)
    if ranged:
        records = own_step(records, spec, ctx, problems)
    trajectories = []
    missing: dict[tuple[str, str], list[str]] = {}
    tokenizer_problem: list[str] = []
    for where, obj in records:
        traj = mapped_trajectory(len(trajectories), obj, spec, ctx, where, problems, missing, tokenizer_problem)
        trajectories.append(traj)
    for (role, why), wheres in missing.items():
        field = dict(mapped_fields(spec))[role]
        problems.add(f"{field!r} (the mapping's {role}) {why} in {counted(len(wheres), 'record')} "
                     f"({', '.join(wheres[:5])}{', ...' if len(wheres) > 5 else ''})")
    if not trajectories and not problems:
        problems.add("no records in the file")
    if ctx.rule is not None:
        apply_rule(trajectories, [obj for _, obj in records], ctx.rule, problems)
    return trajectories


def own_step(records: list[tuple[str, dict]], spec: Mapping, ctx: ReadContext,
             problems: Problems) -> list[tuple[str, dict]]:
    """The records of the step being read. In JSON Lines the byte ranges hold only this step's lines
    (and lines without a step, named here); a JSON or Parquet file holds all steps: the records
    without a step are named when reading its first step."""
    steps = [step_number(lookup(obj, spec.step)) for _, obj in records]
    whole = file_kind(ctx.path) != "jsonl"
    first = min((s for s in steps if s is not None), default=None)
    kept, lost = [], []
    for (where, obj), step in zip(records, steps):
        if step is not None and (step == ctx.step or not whole):
            kept.append((where, obj))
        elif step is None and (not whole or ctx.step == first):
            lost.append(where)
    if lost:
        problems.add(f"no step in {spec.step!r} (the mapping's step: a whole number) in "
                     f"{counted(len(lost), 'record')} ({', '.join(lost[:5])}{', ...' if len(lost) > 5 else ''}): "
                     "not shown")
    return kept


def mapped_fields(spec: Mapping) -> list[tuple[str, str]]:
    return [(role, getattr(spec, role)) for role in ("prompt", "response", "reward", "group", "tokens",
                                                     "entropy", "logprobs") if getattr(spec, role)] + \
        [(f"channel {name}", field) for name, field in spec.channels]


def mapped_trajectory(index: int, obj: dict, spec: Mapping, ctx: ReadContext, where: str, problems: Problems,
                      missing: dict, tokenizer_problem: list) -> Trajectory:
    traj = Trajectory(index=index)
    used: set[str] = set()  # fields shown in their own place (the others are metadata)

    def get(role: str, field: str) -> Any:
        value = lookup(obj, field)
        if value is MISSING:
            missing.setdefault((role, "is missing"), []).append(where)
            return None
        return value

    if spec.prompt:
        value = get("prompt", spec.prompt)
        traj.prompt = text_as_written(value)
        used.add(spec.prompt)
    if spec.response:
        value = get("response", spec.response)
        traj.pure_generated_text = text_as_written(value)
        used.add(spec.response)
    if spec.reward:
        value = get("reward", spec.reward)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            traj.reward = float(value)
        elif value is not None:
            missing.setdefault(("reward", f"is not a number ({kind(value)})"), []).append(where)
    if spec.group:
        value = get("group", spec.group)
        if value is not None:
            traj.group = value if isinstance(value, str) else as_text(value)
    if spec.tokens:
        tokens = mapped_tokens(get("tokens", spec.tokens), ctx, where, problems, tokenizer_problem)
        traj.tokens = tokens
        if tokens is not None:
            used.add(spec.tokens)
            traj.response_length = len(tokens)
            if traj.pure_generated_text is None and not tokens.ids:
                traj.pure_generated_text = "".join(tokens.texts)
            for role, field, name in (("entropy", spec.entropy, ""), ("logprobs", spec.logprobs, "logprob"),
                                      *((f"channel {c}", f, c) for c, f in spec.channels)):
                if not field:
                    continue
                values = per_token(get(role, field), len(tokens), role, where, problems)
                if values is None:
                    continue
                used.add(field)
                if not name:
                    tokens.scores = values
                elif name == "logprob":
                    traj.token_values["logprob"] = values
                    traj.token_values["surprisal"] = [None if v is None else -v for v in values]
                else:
                    traj.token_values[name] = values
    traj.accuracy = accuracy(None, obj)
    traj.correct = correctness(traj.accuracy)
    meta = Meta()
    for key, value in obj.items():
        if str(key) not in used:
            meta.add(str(key), value)
    traj.metadata = meta.fields
    return traj


def mapped_tokens(value: Any, ctx: ReadContext, where: str, problems: Problems,
                  tokenizer_problem: list) -> Tokens | None:
    """Token texts as written, or token ids decoded with the tokenizer (shown as numbers without one)."""
    if value is None:
        return None
    if not isinstance(value, list):
        problems.add(f"{where}: the tokens are {kind(value)}, expected a list of token texts or ids")
        return None
    n = len(value)
    if all(isinstance(t, str) for t in value):
        return Tokens(value, [False] * n, [None] * n)
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        problems.add(f"{where}: the tokens are neither all texts nor all token ids: not shown")
        return None
    if ctx.tokenizer and not tokenizer_problem:
        try:
            pieces = decode_pieces(value, ctx.tokenizer)
        except TokenizerUnavailable as err:
            tokenizer_problem.append(str(err))
            problems.add(f"{err}: token ids shown as numbers")
        else:
            if pieces.unknown:
                problems.add(f"{where}: {counted(len(pieces.unknown), 'token id')} outside the tokenizer's "
                             f"vocabulary (first at token {pieces.unknown[0]}), shown as <id N>")
            return Tokens(pieces.texts, [False] * n, [None] * n)
    return Tokens([str(t) for t in value], [False] * n, [None] * n, ids=True)


def per_token(value: Any, n: int, role: str, where: str, problems: Problems) -> list | None:
    """A per-token list of numbers (null for a missing value), one per token; else a problem."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n:
        what = f"{len(value)} values" if isinstance(value, list) else kind(value)
        problems.add(f"{where}: {role} is {what} for {counted(n, 'token')}, expected one number per token: not shown")
        return None
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value):
        problems.add(f"{where}: {role} holds values that are not numbers: not shown")
        return None
    return list(value)
