"""Validate run folders without building: what a strict build would complain about."""

from __future__ import annotations

import os
from typing import Callable

from .discover import duplicate_steps, find_experiments
from .readers import CorrectRule, detect_format, read_step


def check_runs(paths: list[str], fmt: str = "auto", out: Callable[[str], None] = print,
               rule: "CorrectRule | None" = None) -> int:
    """Print experiments, steps, formats and every problem; return the number of problems."""
    problems = 0
    missing = [p for p in paths if not os.path.isdir(p)]
    for path in missing:
        out(f"{path}: not a folder")
    problems += len(missing)
    experiments = find_experiments([p for p in paths if p not in missing],
                                   [p.rstrip("/") for p in paths] if len(paths) > 1 else None)
    steps = 0
    for exp in experiments:
        formats = sorted({fmt if fmt != "auto" else detect_format(s.path) for s in exp.steps})
        numbers = [s.step for s in exp.steps]
        out(f"{exp.name}: {len(numbers)} steps ({numbers[0]}–{numbers[-1]}), format {', '.join(formats)}, "
            f"folder {exp.folder}")
        for step in duplicate_steps(exp):
            out(f"  step {step}: more than one file")
            problems += 1
        for step in exp.steps:
            data = read_step(step.path, fmt, rule)
            steps += 1
            if data.unreadable:
                out(f"  {step.path}: unreadable: {data.unreadable}")
                problems += 1
            for problem in data.problems:
                out(f"  {step.path}: {problem}")
                problems += 1
    out(f"{len(experiments)} experiments, {steps} step files, {problems} problem{'s' if problems != 1 else ''}")
    return problems
