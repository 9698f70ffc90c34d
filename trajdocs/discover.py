"""Find experiments and their step files under the configured run roots."""

from __future__ import annotations

import os
import re
from collections import defaultdict

from .model import Experiment, StepFile

# LightRFT: <prefix>_step_<N>.json (prefix defaults to "trajectories"); verl: <N>.jsonl
LIGHTRFT_NAME = re.compile(r"^(?:(?P<prefix>.+)_)?step_(?P<step>\d+)\.json$")
VERL_NAME = re.compile(r"^(?P<step>\d+)\.jsonl$")
SKIPPED_DIRS = {"__pycache__", "node_modules", "images"}


def match_step_file(filename: str) -> tuple[str, int] | None:
    """(series, step) for a step file name, where series tells apart files that share a folder."""
    m = LIGHTRFT_NAME.match(filename)
    if m:
        return "json:" + (m.group("prefix") or ""), int(m.group("step"))
    m = VERL_NAME.match(filename)
    if m:
        return "jsonl", int(m.group("step"))
    return None


def slugify(name: str) -> str:
    """URL path for an experiment name: safe characters per segment, '/' kept between segments."""
    segments = []
    for part in name.replace("\\", "/").split("/"):
        part = re.sub(r"[^\w.-]+", "-", part).strip("-.")  # letters of any script stay
        if part:
            segments.append(part)
    return "/".join(segments) or "experiment"


def _experiment_name(root_label: str, root: str, folder: str) -> str:
    rel = os.path.relpath(folder, root).replace(os.sep, "/")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if parts and parts[-1] == "trajectories":  # LightRFT writes <experiment>/trajectories/
        parts.pop()
    if not parts:
        return os.path.basename(os.path.abspath(root)) if root_label == "" else root_label
    name = "/".join(parts)
    return f"{root_label}/{name}" if root_label else name


def find_experiments(roots: list[str], labels: list[str] | None = None,
                     skip: tuple[str, ...] = ()) -> list[Experiment]:
    """Every folder holding step files under each root is an experiment.

    `labels` prefix experiment names (used when a site has several roots); `skip` lists absolute
    folders never to descend into (the site and docs folders when they sit inside a root).
    """
    labels = labels or [""] * len(roots)
    skipped = {os.path.abspath(s) for s in skip}
    experiments: list[Experiment] = []
    for root, label in zip(roots, labels):
        if not root:
            continue
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS
                             and os.path.abspath(os.path.join(folder, d)) not in skipped)
            series: dict[str, list[StepFile]] = defaultdict(list)
            for filename in files:
                found = match_step_file(filename)
                if found:
                    series[found[0]].append(StepFile(found[1], os.path.join(folder, filename)))
            base = _experiment_name(label, root, folder)
            for key in sorted(series):
                name = base
                if len(series) > 1:
                    name = f"{base} [{key.split(':', 1)[-1] or 'step'}]"
                steps = sorted(series[key], key=lambda s: s.step)
                experiments.append(Experiment(name=name, slug="", folder=folder, steps=steps))
    _assign_slugs(experiments)
    return experiments


RESERVED_SLUGS = {"prompts"}  # site pages next to the experiments


def _assign_slugs(experiments: list[Experiment]) -> None:
    taken: set[str] = set(RESERVED_SLUGS)
    for exp in experiments:
        slug = base = slugify(exp.name)
        n = 2
        while slug in taken:
            slug, n = f"{base}-{n}", n + 1
        taken.add(slug)
        exp.slug = slug


def duplicate_steps(exp: Experiment) -> list[int]:
    """Step numbers that occur twice (e.g. step_5.json and step_05.json)."""
    seen: set[int] = set()
    dupes = []
    for s in exp.steps:
        if s.step in seen:
            dupes.append(s.step)
        seen.add(s.step)
    return dupes


def empty_folders(roots: list[str], experiments: list[Experiment]) -> list[str]:
    """Folders directly under a root that hold no step files at any depth."""
    used = [os.path.abspath(e.folder) + os.sep for e in experiments]
    empty = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith(".") and entry.name not in SKIPPED_DIRS:
                prefix = os.path.abspath(entry.path) + os.sep
                if not any(u.startswith(prefix) for u in used):
                    empty.append(entry.path)
    return empty


STEP_FILE_NAMES = ("LightRFT files named <prefix>_step_<N>.json (e.g. "
                   "<experiment>/trajectories/trajectories_step_5.json) or verl files named <N>.jsonl (e.g. 5.jsonl), "
                   "in the folder or any folder below it")
NEAR_MISS_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz", ".json.zst", ".jsonl.zst")


def roots_without_steps(roots: list[str], experiments: list[Experiment]) -> list[str]:
    """The roots (existing folders) under which no experiment was found."""
    folders = [os.path.abspath(e.folder) for e in experiments]
    empty = []
    for root in roots:
        top = os.path.abspath(root)
        if os.path.isdir(root) and not any(f == top or f.startswith(top.rstrip(os.sep) + os.sep) for f in folders):
            empty.append(root)
    return empty


def near_misses(root: str, limit: int = 8, budget: int = 20000) -> tuple[list[str], int]:
    """What under `root` looks meant as step files but is not read, for the warning about a runs
    folder without any: JSON / JSONL files whose names are not step-file names (`step5.json`,
    `rollouts.jsonl`), compressed ones, step files inside folders the search skips (hidden ones,
    `images/`), and `trajectories/` folders holding no step file. Returns up to `limit` of
    them (paths relative to `root`) and how many were found, looking at no more than `budget`
    folder entries."""
    found: list[str] = []
    total = seen = 0

    def add(text: str) -> None:
        nonlocal total
        total += 1
        if len(found) < limit:
            found.append(text)

    for folder, dirs, files in os.walk(root):
        seen += len(dirs) + len(files)
        if seen > budget:
            break
        dirs[:] = sorted(d for d in dirs if d not in (".git", "node_modules", "__pycache__"))
        rel = os.path.relpath(folder, root)
        parts = [] if rel == "." else rel.split(os.sep)
        skipped = any(p.startswith(".") or p in SKIPPED_DIRS for p in parts)
        steps_here = False
        for name in sorted(files):
            path = os.path.join(*parts, name) if parts else name
            if match_step_file(name):
                steps_here = True
                if skipped:
                    add(f"{path} (inside a folder trajdocs skips: hidden or images/)")
            elif name.lower().endswith(NEAR_MISS_SUFFIXES) and not skipped:
                add(f"{path} (not a step file name)")
        if parts and parts[-1] == "trajectories" and not steps_here and not skipped:
            add(f"{rel}{os.sep} (a trajectories folder without step files)")
    return found, total


def no_steps_warning(root: str, shown: str | None = None) -> str:
    """The warning for a runs folder without step files: what trajdocs looks for, what it saw."""
    misses, total = near_misses(root)
    text = f"no step files in the runs folder {shown or root}: trajdocs looks for {STEP_FILE_NAMES}"
    if misses:
        more = f"; and {total - len(misses)} more" if total > len(misses) else ""
        return f"{text}. Near misses: {'; '.join(misses)}{more}"
    try:
        empty = not any(True for _ in os.scandir(root))
    except OSError:
        empty = False
    return f"{text}. The folder is empty." if empty else f"{text}. Nothing in it looks like one."
