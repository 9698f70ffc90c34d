"""verl step files (`<N>.jsonl`, written by verl's rollout dump): one JSON object per line with
`input`, `output`, `score` / `reward` and whatever else the trainer added; no per-token data.

Facts (volcengine/verl b178a3cd, verl/trainer/ppo/ray_trainer.py): one writer,
`_dump_generations` (396-422), writes `<dir>/<global_steps>.jsonl` with `json.dumps(...,
ensure_ascii=False)` lines of `input`, `output`, `gts`, `score`, `step` plus every reward extra
info list of the batch's length. Training (`trainer.rollout_data_dir`, 1617-1619 via
`_log_rollout_data` 424-455) dumps the batch after `_balance_batch` (1454-1455), which reorders
the samples: the n samples of a prompt are not adjacent, and the `uid` that ties them is not
written. Validation (`trainer.validation_data_dir`, `_validate` 553-664) repeats each prompt n
times interleaved (adjacent lines), adds `reward` (= the score, 637) to the extra infos, and runs
at global step 0 before training (`val_before_train`, 1320-1331) and every `test_freq` steps.
"""

from __future__ import annotations

import json
import os
import re

from ..model import Experiment, Trajectory
from .common import (ReadContext, UTF16_BOMS, CorrectRule, Problems, accuracy, apply_rule, correctness,
                     first_bad_byte, kind, loads, metadata_except, number, text_as_written)

NAME = "verl"
PATH = re.compile(r"(?P<step>\d+)\.jsonl")
SUFFIX = ".jsonl"
NAMES_TEXT = "verl files named <N>.jsonl (e.g. 5.jsonl)"
TOKEN_CHANNELS = ()
FIELDS = ("input (prompt)", "output (response)", "score / reward", "accuracy (acc, accuracy, correct)", "metadata")


def series(match: re.Match) -> str:
    return "jsonl"


# How a folder of `<N>.jsonl` files is recognised as a validation dump: its name says so and its
# lines carry `reward` (the key only verl's validation adds); a training dump's folder name.
VALIDATION_DIR = re.compile(r"(?:val|valid|validation|eval|evaluation|test)(?:[_.-].*)?", re.I | re.S)
TRAIN_DIR = re.compile(r"(?:rollout|rollouts|train|training)(?:[_.-].*)?", re.I | re.S)
FIRST_LINE_BYTES = 64 * 2 ** 20  # a first line longer than this is not looked at: no merge


def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    """The samples of one file's bytes, line by line: a bad line is a problem, never the file.
    Groups: a line's `uid` where it has one; in a validation dump (`is_validation`) the runs of
    adjacent lines with one input (verl repeats each prompt n times interleaved); otherwise
    identical inputs (training dumps are reordered by batch balancing: never by adjacency)."""
    trajectories, records = _read_verl(data, problems, ctx.rule)
    set_groups(trajectories, records, is_validation(ctx.path, records))
    return trajectories


def is_validation(path: str, records: list[dict]) -> bool:
    """A validation dump: its folder's name says so (`VALIDATION_DIR`) and every line has `reward`."""
    folder = os.path.basename(os.path.dirname(path)) if path else ""
    return bool(records) and VALIDATION_DIR.fullmatch(folder) is not None and all("reward" in r for r in records)


def set_groups(trajectories: list[Trajectory], records: list[dict], validation: bool) -> None:
    """`Trajectory.group` per the rule of `read` (None: grouped by identical prompt)."""
    run, previous = -1, object()
    for traj, record in zip(trajectories, records):
        uid = record.get("uid")
        if isinstance(uid, (str, int)) and not isinstance(uid, bool):
            traj.group = f"uid {uid}"
        elif validation:
            if record.get("input") != previous:
                run += 1
            traj.group = f"adjacent {run}"
        previous = record.get("input")


def run_views(siblings: list[tuple[str, Experiment]]) -> list[tuple[str, Experiment]] | None:
    """The views of one run among the verl experiments in sibling folders ((folder name,
    experiment)): [("train", ...), ("validation", ...)] when exactly one folder is named as a
    training dump (`TRAIN_DIR`), exactly one as a validation dump (`VALIDATION_DIR`), and the
    validation folder's first line has `reward`; else None (kept apart)."""
    train = [e for name, e in siblings if TRAIN_DIR.fullmatch(name)]
    val = [e for name, e in siblings if VALIDATION_DIR.fullmatch(name)]
    if len(train) != 1 or len(val) != 1 or not _first_line_has_reward(val[0]):
        return None
    return [("train", train[0]), ("validation", val[0])]


def _first_line_has_reward(exp: Experiment) -> bool:
    for step in exp.steps[:3]:  # the first file may be being written
        try:
            with open(step.path, "rb") as f:
                line = f.readline(FIRST_LINE_BYTES)
            record = loads(line)
        except (OSError, ValueError, UnicodeDecodeError):
            continue
        return isinstance(record, dict) and "reward" in record
    return False


def _read_verl(data: bytes, problems: Problems, rule: "CorrectRule | None" = None) -> tuple[list[Trajectory], list[dict]]:
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
    return trajectories, records


def verl_trajectory(index: int, obj: dict, problems: Problems) -> Trajectory:
    traj = Trajectory(index=index)
    prompt, output = obj.get("input"), obj.get("output")
    traj.prompt = text_as_written(prompt)
    traj.pure_generated_text = text_as_written(output)
    if output is None:
        problems.add(f"sample {index}: no output field")
    traj.reward = number(obj.get("score"), obj.get("reward"))
    traj.accuracy = accuracy(None, obj)
    traj.correct = correctness(traj.accuracy)
    traj.metadata = metadata_except(obj, ("input", "output"))
    return traj
