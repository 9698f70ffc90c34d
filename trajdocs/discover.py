"""Find experiments and their step files under the configured run roots."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
from collections import defaultdict

from .formats import FORMATS, PathMatch, match_step_path, steps_in_file, user_claims, verl
from .formats.parquet import HINT as PARQUET_HINT
from .model import Experiment, StepFile
from .text import shown_name

SKIPPED_DIRS = {"__pycache__", "node_modules", "images"}


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


def inside(path: str, folders: list[str]) -> bool:
    """Whether a real (resolved) path is one of `folders` or lies below one of them."""
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def link_out(path: str, allowed: list[str]) -> str | None:
    """Why `path` is not published when its real path (links resolved) lies outside every folder
    of `allowed` (real folders: the runs and `allow_outside`); None when it lies inside."""
    real = os.path.realpath(path)
    if inside(real, allowed):
        return None
    return (f"{shown_name(path)}: links to {shown_name(real)}, outside the runs folder: not published "
            "(list that folder under the trajdocs option `allow_outside` to publish it)")


def regular_file(path: str, allowed: list[str], problems: list[str]) -> bool:
    """Whether `path` may be read and published: a regular file (after links: never a FIFO or a
    device, which would hang or never end) whose real path lies inside `allowed` (real folders).
    Otherwise a message naming the file goes to `problems`."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            why = link_out(path, allowed)
            if why:
                problems.append(why)
                return False
            st = os.stat(path)
    except OSError as err:
        problems.append(f"{shown_name(path)}: cannot be read ({err.strerror or err}), skipped")
        return False
    if not stat.S_ISREG(st.st_mode):
        problems.append(f"{shown_name(path)}: not a regular file (a FIFO, device or socket), skipped")
        return False
    return True


def find_experiments(roots: list[str], labels: list[str] | None = None,
                     skip: tuple[str, ...] = (), problems: list[str] | None = None,
                     allow_outside: tuple[str, ...] = (), mapping: str = "") -> list[Experiment]:
    """Every folder holding step files under each root is an experiment.

    `labels` prefix experiment names (used when a site has several roots); `skip` lists absolute
    folders never to descend into (the site and docs folders when they sit inside a root).
    Files and folders reached through a link are used only when their real path lies inside a
    root or one of `allow_outside`; skipped files (links out, FIFOs, devices, names matching no
    step pattern only because of a control character) are reported in `problems`. `mapping` (the
    option, as JSON text) claims the files its `files` pattern matches, before any format does.
    """
    claims = user_claims(mapping)
    labels = labels or [""] * len(roots)
    skipped = {os.path.abspath(s) for s in skip}
    problems = problems if problems is not None else []
    roots_real = [os.path.realpath(r) for r in roots if r]
    allowed = roots_real + [os.path.realpath(a) for a in allow_outside]
    experiments: list[Experiment] = []
    # (root number, experiment folder below it, series, view) -> the files claimed for it
    claimed: dict[tuple[int, str, str, str], list[tuple[PathMatch, str]]] = defaultdict(list)
    for n, (root, label) in enumerate(zip(roots, labels)):
        if not root:
            continue
        visited: set[str] = set()
        for folder, dirs, files in os.walk(root, followlinks=True):
            kept = []
            for d in sorted(dirs):
                path = os.path.join(folder, d)
                if d.startswith(".") or d in SKIPPED_DIRS or os.path.abspath(path) in skipped:
                    continue
                if os.path.islink(path):
                    real = os.path.realpath(path)
                    why = link_out(path, allowed)
                    if why:
                        problems.append(why)
                        continue
                    if inside(real, roots_real) or real in visited:
                        continue  # walked where it really is (or already followed once): no copies, no loops
                    visited.add(real)
                kept.append(d)
            dirs[:] = kept
            for filename in files:
                path = os.path.join(folder, filename)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                found = match_step_path(rel, claims)
                if found is None:
                    if any(ch in filename for ch in "\r\n\t\x0b\x0c") and \
                            match_step_path(re.sub(r"\s", "", rel), claims) is not None:
                        problems.append(f"{shown_name(path)}: a step file name with "
                                        "a control character in its step number or extension, skipped")
                    continue
                if regular_file(path, allowed, problems):
                    claimed[(n, found.folder, found.series, found.view)].append((found, path))
    order = {key[:2]: n for n, key in reversed(list(enumerate(claimed)))}  # folders in walk order
    alone: dict[tuple[int, str], Experiment] = {}  # experiments that are their folder's only one, no view
    folders: set[tuple[int, str]] = set()  # (root number, folder) of every experiment
    for key in sorted(claimed, key=lambda k: (order[k[:2]], k[2], view_order(k[3]))):
        n, rel_folder, series_key, view = key
        root, label = roots[n], labels[n]
        folder = os.path.join(root, rel_folder) if rel_folder else root
        base = _experiment_name(label, root, folder)
        several = len({k[2] for k in claimed if k[:2] == key[:2]}) > 1
        if several:
            base = f"{base} [{series_key.split(':', 1)[-1] or 'step'}]"
        steps = sorted(_step_files(claimed[key], problems, mapping), key=step_order)
        if steps:
            exp = Experiment(name=f"{base} [{view}]" if view else base, slug="", folder=folder,
                             steps=steps, view=view, run=base if view else "")
            experiments.append(exp)
            folders.add(key[:2])
            if not view and not several:
                alone[key[:2]] = exp
    _verl_views(experiments, alone, roots, labels, folders)
    _views_together(experiments)
    _assign_slugs(experiments)
    return experiments


TRAIN_VIEWS = ("train", "training", "rollout", "rollouts")


def view_order(view: str) -> tuple:
    """Views of one run: training first, then the others by name ("" = no view)."""
    return (view.lower() not in TRAIN_VIEWS, view)


def _verl_views(experiments: list[Experiment], alone: dict[tuple[int, str], Experiment], roots: list[str],
                labels: list[str], folders: set[tuple[int, str]]) -> None:
    """verl's `trainer.rollout_data_dir` and `trainer.validation_data_dir` dumps of one run, found as
    two sibling folders, become one run with the views "train" and "validation" (the rule:
    `formats.verl.run_views`); anything less certain stays two experiments, and so does a pair
    whose parent folder is an experiment itself (its name is taken). `alone`: the experiments
    that are their folder's only one, without a view, by (root number, folder); `folders`: every
    experiment's (root number, folder)."""
    siblings: dict[tuple[int, str], list[tuple[str, Experiment]]] = defaultdict(list)
    for (n, rel), exp in alone.items():
        if rel and exp.steps and exp.steps[0].fmt == verl.NAME:
            parent, _, name = rel.rpartition("/")
            siblings[(n, parent)].append((name, exp))
    for (n, parent), members in siblings.items():
        views = verl.run_views(members) if (n, parent) not in folders else None
        if views is None:
            continue
        root = roots[n]
        run = _experiment_name(labels[n], root, os.path.join(root, parent) if parent else root)
        for view, exp in views:
            exp.view, exp.run, exp.name = view, run, f"{run} [{view}]"


def _views_together(experiments: list[Experiment]) -> None:
    """The views of a run next to each other (where its first one was), training first."""
    first: dict[str, int] = {}
    for i, exp in enumerate(experiments):
        if exp.run:
            first.setdefault(exp.run, i)
    order = {id(exp): (first[exp.run] if exp.run else i, view_order(exp.view)) for i, exp in enumerate(experiments)}
    experiments.sort(key=lambda e: order[id(e)])


def _step_files(files: list[tuple[PathMatch, str]], problems: list[str], mapping: str = "") -> list[StepFile]:
    """The steps of one experiment's files: a file per step; the parts of a step that several files
    hold together (ordered by part name, "rank_2" before "rank_10"); the steps inside files that
    hold several (shards, in name order, then by position)."""
    steps: list[StepFile] = []
    parts: dict[int, list[tuple[tuple, tuple[str, int, int]]]] = defaultdict(list)
    for found, path in files:
        if found.step is not None and not found.part:
            steps.append(StepFile(found.step, path, fmt=found.fmt))
        elif found.step is not None:
            parts[found.step].append(((_natural(found.part), path), (path, 0, -1)))
        else:
            try:
                held = steps_in_file(path, found.fmt, mapping=mapping)
            except (OSError, ValueError) as err:
                problems.append(f"{shown_name(path)}: cannot be read ({getattr(err, 'strerror', None) or err}), skipped")
                continue
            if not held:
                problems.append(f"{shown_name(path)}: no record in the file says its step, skipped")
            for step, ranges in held.items():
                parts[step].extend(((_natural(os.path.basename(path)), start), (path, start, end))
                                   for start, end in ranges)
    for step, held in parts.items():
        ranges = tuple(r for _, r in sorted(held))
        steps.append(StepFile(step, ranges[0][0], parts=ranges, fmt=files[0][0].fmt))
    return steps


def _natural(text: str) -> tuple:
    """"rank_2" before "rank_10"."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def step_order(step: StepFile) -> tuple:
    """Files of one experiment by step; of two files for one step (`_step_7.json`,
    `_step_007.json`) the one whose number is written without leading zeros comes first, then by
    name: the rule that decides which one is shown, whatever the directory order."""
    name = os.path.basename(step.path)
    canonical = re.search(rf"(?<!\d){step.step}\.\w+\Z", name) is not None
    return step.step, not canonical, name


RESERVED_SLUGS = {"prompts"}  # site pages next to the experiments
# Names trajdocs gives its own pages and files inside an experiment's folder (index.md,
# step-<N>.md, step-<N>-<P>.md, steps.csv, steps.json, files/, texts/), as sources or as written
# (step-<N>/index.html, step-<N>.html, index.html), and next to the experiments (index.md,
# prompts.md): a folder spelled like one gets a "_" appended in its slug, so a nested experiment
# (`a/step-1` beside `a`) never shares a URL with another experiment's pages.
GENERATED_INSIDE = re.compile(r"step-\d+(?:-\d+)?(?:\..*)?|steps\..*|files|texts|index\..*", re.S)
GENERATED_NEXT = re.compile(r"index\..*|prompts\..*", re.S)


def _own_segment(path: str) -> str:
    """A slug whose last segment is moved out of the generated names (see GENERATED_INSIDE)."""
    last = path.rsplit("/", 1)[-1]
    generated = GENERATED_INSIDE if "/" in path else GENERATED_NEXT
    return path + "_" if generated.fullmatch(last) else path


def _assign_slugs(experiments: list[Experiment]) -> None:
    """Unique URL folders. The views of a run share their run's folder: a view's slug is the run's
    slug plus one segment for the view (`<run>/validation`), and the run's page is the run's
    folder's index."""
    taken: set[str] = set(RESERVED_SLUGS)
    runs: dict[str, str] = {}
    for exp in experiments:
        if exp.run:
            if exp.run not in runs:
                runs[exp.run] = _free_slug(_nested_slug(exp.run), taken)
            exp.slug = _free_slug(_own_segment(f"{runs[exp.run]}/{slugify(exp.view)}"), taken)
        else:
            exp.slug = _free_slug(_nested_slug(exp.name), taken)


def _nested_slug(name: str) -> str:
    segments = slugify(name).split("/")
    return "/".join(_own_segment("/".join(segments[:i + 1])).rsplit("/", 1)[-1] for i in range(len(segments)))


def _free_slug(base: str, taken: set[str]) -> str:
    slug, n = base, 2
    while slug in taken:
        slug, n = _own_segment(f"{base}-{n}"), n + 1  # "a/step" twice must not become "a/step-2"
    taken.add(slug)
    return slug


def run_slug(exp: Experiment) -> str:
    """The URL folder of the page showing an experiment: its run's for a view, else its own."""
    return exp.slug.rsplit("/", 1)[0] if exp.run else exp.slug


def duplicate_steps(exp: Experiment) -> list[tuple[int, list[str]]]:
    """Steps with more than one file (e.g. step_5.json and step_05.json): (step, paths), the
    path shown first (see `step_order`)."""
    by_step: dict[int, list[str]] = defaultdict(list)
    for s in exp.steps:
        by_step[s.step].append(s.path)
    return [(step, paths) for step, paths in by_step.items() if len(paths) > 1]


def drop_duplicates(exp: Experiment) -> None:
    """Keep the first file of each step (see `step_order`)."""
    seen: set[int] = set()
    exp.steps = [s for s in exp.steps if not (s.step in seen or seen.add(s.step))]


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


def step_file_names(mapping: str = "") -> str:
    """What step files are called, one entry per format, for messages (the mapped format's entry
    names the `files` pattern when the option is set)."""
    names = []
    for module in FORMATS.values():
        text = module.NAMES_TEXT
        if module.NAME == "mapped" and mapping:
            text = f"files matching the `mapping` option's pattern {json.loads(mapping).get('files')!r}"
        names.append(text)
    return "; ".join(names)


COMPRESSED = (".gz", ".zst", ".bz2", ".xz", ".zip", ".tar", ".tgz", ".7z")
NEAR_MISS_SUFFIXES = (".json", ".jsonl", ".parquet")


def near_miss_reason(name: str) -> str | None:
    """Why a file that no format claims looks like trainer output trajdocs does not read; None
    when it does not look like any."""
    lower = name.lower()
    if lower.endswith(".pt"):
        return ("a PyTorch file (slime writes its rollout and training dumps with torch.save): reading "
                "it needs torch, which trajdocs does not use: not read")
    if lower.endswith((".pkl", ".pickle")):
        return ("a Python pickle (SkyRL's training-batch dump dumped_data/global_step_<N>_training_input.pkl): "
                "loading it needs torch and may run code: not read")
    if lower.endswith(COMPRESSED):
        return "compressed: trajdocs reads uncompressed files only; decompress it next to the others"
    if lower.endswith(".parquet") and importlib.util.find_spec("pyarrow") is None:
        return f"Parquet: reading it needs the 'pyarrow' package ({PARQUET_HINT}); and not a step file name"
    if lower.endswith(NEAR_MISS_SUFFIXES):
        return "not a step file name"
    return None

def roots_without_steps(roots: list[str], experiments: list[Experiment]) -> list[str]:
    """The roots (existing folders) under which no experiment was found."""
    folders = [os.path.abspath(e.folder) for e in experiments]
    empty = []
    for root in roots:
        top = os.path.abspath(root)
        if os.path.isdir(root) and not any(f == top or f.startswith(top.rstrip(os.sep) + os.sep) for f in folders):
            empty.append(root)
    return empty


def near_misses(root: str, limit: int = 8, budget: int = 20000, mapping: str = "") -> tuple[list[str], int]:
    """What under `root` looks meant as step files but is not read, for the warning about a runs
    folder without any: JSON / JSONL / Parquet files whose names are not step-file names
    (`step5.json`, `rollouts.jsonl`), files trajdocs cannot read and why (compressed ones, slime's
    `.pt` and SkyRL's `.pkl` dumps, Parquet without pyarrow), step files inside folders the search
    skips (hidden ones, `images/`), and `trajectories/` folders holding no step file. Returns up
    to `limit` of them (paths relative to `root`) and how many were found, looking at no more than
    `budget` folder entries. `mapping`: the option, whose files count as step files."""
    found: list[str] = []
    total = seen = 0
    claims = user_claims(mapping)

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
            if match_step_path(path.replace(os.sep, "/"), claims):
                steps_here = True
                if skipped:
                    add(f"{path} (inside a folder trajdocs skips: hidden or images/)")
            elif not skipped and (reason := not_read(path.replace(os.sep, "/")) or near_miss_reason(name)):
                add(f"{path} ({reason})")
        if parts and parts[-1] == "trajectories" and not steps_here and not skipped:
            add(f"{rel}{os.sep} (a trajectories folder without step files)")
    return found, total


def not_read(rel: str) -> str | None:
    """Why a file a trainer writes beside its step files is not read (a format's `NOT_READ`
    patterns, e.g. pickled tensors), else None."""
    for module in FORMATS.values():
        for pattern, why in getattr(module, "NOT_READ", ()):
            if pattern.search(rel):
                return why
    return None


def no_steps_warning(root: str, shown: str | None = None, mapping: str = "") -> str:
    """The warning for a runs folder without step files: what trajdocs looks for, what it saw (names
    escaped: one line, no raw bytes)."""
    return shown_name(_no_steps_text(root, shown, mapping))


def _no_steps_text(root: str, shown: str | None, mapping: str = "") -> str:
    misses, total = near_misses(root, mapping=mapping)
    text = (f"no step files in the runs folder {shown or root}: trajdocs looks for {step_file_names(mapping)} "
            "(in the folder or any folder below it)")
    if misses:
        more = f"; and {total - len(misses)} more" if total > len(misses) else ""
        return f"{text}. Near misses: {'; '.join(misses)}{more}"
    try:
        empty = not any(True for _ in os.scandir(root))
    except OSError:
        empty = False
    return f"{text}. The folder is empty." if empty else f"{text}. Nothing in it looks like one."
