"""Validate run folders without building: what a strict build would complain about."""

from __future__ import annotations

import os
from typing import Callable

from .discover import duplicate_steps, find_experiments, link_out, no_steps_warning, roots_without_steps
from .formats import FORMATS, CorrectRule, ReadContext, detect_format, read_step
from .model import Trajectory
from .text import counted, shown_name


def check_runs(paths: list[str], fmt: str = "auto", out: Callable[[str], None] = print,
               rule: "CorrectRule | None" = None, tokenizer: str = "", mapping: str = "") -> int:
    """Print experiments, steps, formats (and, where token ids are shown, whether a tokenizer turns
    them into text) and every problem; return the number of problems. `mapping`: the option as
    JSON text (see `settings.mapping_option`)."""
    problems = 0
    missing = [p for p in paths if not os.path.isdir(p)]
    for path in missing:
        out(f"{shown_name(path)}: not a folder")
    problems += len(missing)
    skipped: list[str] = []
    experiments = find_experiments([p for p in paths if p not in missing],
                                   [p.rstrip("/") for p in paths] if len(paths) > 1 else None, problems=skipped,
                                   mapping=mapping)
    for message in skipped:
        out(message)
    problems += len(skipped)
    for path in roots_without_steps([p for p in paths if p not in missing], experiments):
        out(no_steps_warning(path, mapping=mapping))
        problems += 1
    steps = 0
    roots_real = [os.path.realpath(p) for p in paths if p not in missing]
    for exp in experiments:
        formats = sorted({fmt if fmt != "auto" else s.fmt or detect_format(s.path) for s in exp.steps})
        numbers = [s.step for s in exp.steps]
        words = {getattr(FORMATS.get(f), "STEP_WORD", "Step").lower() for f in formats}  # AReaL: weight versions
        word = words.pop() if len(words) == 1 else "step"
        out(f"{shown_name(exp.name)}: {counted(len(numbers), word)} ({numbers[0]}–{numbers[-1]}), format "
            f"{', '.join(formats)}, folder {shown_name(exp.folder)}")
        for step, files in duplicate_steps(exp):
            out(f"  {word} {step}: more than one file: {', '.join(shown_name(os.path.basename(f)) for f in files)}; "
                f"shown: {shown_name(os.path.basename(files[0]))}")
            problems += 1
        ids = 0
        for step in exp.steps:
            data = read_step(step, fmt, ctx=ReadContext(rule, tokenizer, mapping))
            steps += 1
            ids += sum(shows_ids(t) for t in data.trajectories)
            if data.unreadable:
                out(f"  {shown_name(step.path)}: unreadable: {shown_name(data.unreadable)}")
                problems += 1
            for problem in data.problems:
                out(f"  {shown_name(step.path)}: {shown_name(problem)}")
                problems += 1
            for rel in sorted({rel for t in data.trajectories for rel in t.image_files}):
                why = link_out(os.path.join(os.path.dirname(step.path), rel), roots_real)
                if why:
                    out(f"  {why}")
                    problems += 1
        if ids or (tokenizer and any(getattr(FORMATS.get(f), "TOKEN_IDS", False) for f in formats)):
            out(f"  token ids: decoded with the tokenizer {shown_name(tokenizer)}" if tokenizer and not ids else
                f"  token ids: {counted(ids, 'response')} shown as numbers: no tokenizer given (--tokenizer PATH, "
                "or the plugin option `tokenizer`, gives their text)" if not tokenizer else
                f"  token ids: {counted(ids, 'response')} shown as numbers although the tokenizer "
                f"{shown_name(tokenizer)} was given (see the problems above)")
    out(f"{counted(len(experiments), 'experiment')}, {counted(steps, 'step file')}, {counted(problems, 'problem')}")
    return problems


def shows_ids(traj: Trajectory) -> bool:
    """Whether a trajectory's tokens (or a turn's) are token ids shown as numbers."""
    return bool(traj.tokens is not None and traj.tokens.ids) or any(
        t.tokens is not None and t.tokens.ids for t in traj.turns)
