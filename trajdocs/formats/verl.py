"""verl step files (`<N>.jsonl`, written by verl's rollout dump): one JSON object per line with
`input`, `output`, `score` / `reward` and whatever else the trainer added; no per-token data."""

from __future__ import annotations

import json
import re

from ..model import Trajectory
from .common import (ReadContext, UTF16_BOMS, CorrectRule, Meta, Problems, accuracy, apply_rule, as_text, correctness,
                     first_bad_byte, kind, loads, number)

NAME = "verl"
PATH = re.compile(r"(?P<step>\d+)\.jsonl")
SUFFIX = ".jsonl"
NAMES_TEXT = "verl files named <N>.jsonl (e.g. 5.jsonl)"
TOKEN_CHANNELS = ()
FIELDS = ("input (prompt)", "output (response)", "score / reward", "accuracy (acc, accuracy, correct)", "metadata")


def series(match: re.Match) -> str:
    return "jsonl"


def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    """The samples of one file's bytes, line by line: a bad line is a problem, never the file."""
    return _read_verl(data, problems, ctx.rule)


def _read_verl(data: bytes, problems: Problems, rule: "CorrectRule | None" = None) -> list[Trajectory]:
    trajectories, records = [], []
    if data[:2] in UTF16_BOMS:  # a UTF-16 file (re-saved by an editor): verl writes UTF-8
        try:
            data = data.decode("utf-16").encode("utf-8", "surrogatepass")
            problems.add("the file is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8 as "
                         "verl writes it: read as UTF-16")
        except UnicodeDecodeError:
            pass  # then each line says what is wrong with it
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except (ValueError, UnicodeDecodeError) as err:
            if line.lstrip()[:2] in UTF16_BOMS or line.lstrip()[:1] == b"\x00":
                problems.add(f"line {lineno}: UTF-16 text (a UTF-16 byte-order mark or zero bytes), not UTF-8 "
                             "as verl writes it: not read; save the file as UTF-8")
                continue
            if isinstance(err, UnicodeDecodeError) or first_bad_byte(line):
                try:
                    obj = loads(line.decode("utf-8", "replace"))
                except ValueError:
                    obj = None
                if isinstance(obj, dict):
                    problems.add(f"line {lineno}: {first_bad_byte(line).split(' (')[0]} of the line and any "
                                 "further bytes that are not UTF-8 text are shown as \ufffd (U+FFFD)")
                    trajectories.append(verl_trajectory(len(trajectories), obj, problems))
                    records.append(obj)
                    continue
            last = lineno == data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
            hint = " (the file may still be being written)" if last and not data.endswith(b"\n") else ""
            detail = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
            problems.add(f"line {lineno}: invalid JSON: {detail}{hint}")
            continue
        if not isinstance(obj, dict):
            problems.add(f"line {lineno}: is {kind(obj)}, expected an object")
            continue
        trajectories.append(verl_trajectory(len(trajectories), obj, problems))
        records.append(obj)
    if not trajectories and not problems:
        problems.add("no samples in the file")
    if rule is not None:
        apply_rule(trajectories, records, rule, problems)
    return trajectories


def verl_trajectory(index: int, obj: dict, problems: Problems) -> Trajectory:
    traj = Trajectory(index=index)
    prompt, output = obj.get("input"), obj.get("output")
    traj.prompt = prompt if prompt is None or isinstance(prompt, str) else as_text(prompt)
    traj.pure_generated_text = output if output is None or isinstance(output, str) else as_text(output)
    if output is None:
        problems.add(f"sample {index}: no output field")
    traj.reward = number(obj.get("score"), obj.get("reward"))
    traj.accuracy = accuracy(None, obj)
    traj.correct = correctness(traj.accuracy)
    meta = Meta()
    for key, value in obj.items():
        if key not in ("input", "output"):
            meta.add(str(key), value)
    traj.metadata = meta.fields
    return traj
