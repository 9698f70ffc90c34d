"""The `trajdocs` command line: what is not a build (demo data, checks, scaffolding)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoOptions, write_demo

    opts = DemoOptions(experiments=args.experiments, steps=args.steps, interval=args.interval,
                       trajectories=args.trajectories, group_size=args.group_size,
                       min_tokens=args.min_tokens, max_tokens=args.max_tokens, ratio=args.ratio,
                       all_scores=args.all_scores, token_lists=not args.no_token_lists, seed=args.seed,
                       names=tuple(args.name or ()))
    if opts.min_tokens < 1 or opts.max_tokens < opts.min_tokens:
        print("trajdocs demo: need 1 <= --min-tokens <= --max-tokens", file=sys.stderr)
        return 2
    written = write_demo(args.folder, opts)
    print(f"wrote {len(written)} synthetic step files under {args.folder}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .check import check_runs
    from .readers import CorrectRule

    rule = CorrectRule(args.correct, args.correct_min) if args.correct else None
    return 1 if check_runs(args.paths, args.format, rule=rule) else 0


SITE_CONFIG = """\
site_name: {name}
theme:
  name: material
  font: false  # no request to Google Fonts: the site works offline
  palette:
    - media: "(prefers-color-scheme: light)"
      scheme: default
      toggle: {{icon: material/brightness-4, name: Switch to dark mode}}
    - media: "(prefers-color-scheme: dark)"
      scheme: slate
      toggle: {{icon: material/brightness-7, name: Switch to light mode}}
  features:
    - navigation.instant
plugins:
  - search
  - trajdocs:
      runs: {runs}
"""
INDEX_PAGE = """\
# {name}

Training runs from `{runs}`, browsable step by step: see the [overview of all experiments](runs/index.md).

`mkdocs serve` shows new step files as the trainer writes them; `mkdocs build` writes a static site
to `site/`, and `mkdocs gh-deploy` publishes it to GitHub Pages.
"""


def _init(args: argparse.Namespace) -> int:
    folder = os.path.abspath(args.folder)
    name = os.path.basename(folder) or "RL runs"
    files = {os.path.join(folder, "mkdocs.yml"): SITE_CONFIG.format(name=_yaml_text(f"{name} runs"), runs=_yaml_text(args.runs)),
             os.path.join(folder, "docs", "index.md"): INDEX_PAGE.format(name=f"{name} runs", runs=args.runs)}
    existing = [path for path in files if os.path.exists(path)]
    if existing and not args.force:
        print("trajdocs init: not overwriting " + ", ".join(existing) + " (use --force)", file=sys.stderr)
        return 1
    for path, text in files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {path}")
    if not os.path.isdir(os.path.join(folder, args.runs)):
        print(f"note: {os.path.join(folder, args.runs)} does not exist yet")
    print(f"next: cd {args.folder} && mkdocs serve")
    return 0


def _yaml_text(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _one_off_config(runs: str, site: str | None) -> str:
    """A temporary mkdocs.yml for a runs folder that has none; its cache outlives it."""
    runs = os.path.abspath(runs)
    work = tempfile.mkdtemp(prefix="trajdocs-site-")
    os.makedirs(os.path.join(work, "docs"))
    name = os.path.basename(runs.rstrip(os.sep)) or "runs"
    with open(os.path.join(work, "docs", "index.md"), "w", encoding="utf-8") as f:
        f.write(INDEX_PAGE.format(name=name, runs=runs))
    cache = os.path.join(tempfile.gettempdir(), "trajdocs-cache", hashlib.sha1(runs.encode()).hexdigest()[:12])
    config = SITE_CONFIG.format(name=_yaml_text(name), runs=_yaml_text(runs)) + f"      cache_dir: {_yaml_text(cache)}\n"
    if site:
        config += f"site_dir: {_yaml_text(os.path.abspath(site))}\n"
    path = os.path.join(work, "mkdocs.yml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(config)
    return path


def _mkdocs(arguments: list[str]) -> int:
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    from mkdocs.__main__ import cli

    try:
        cli(arguments, standalone_mode=False)
    except SystemExit as stop:
        return int(stop.code or 0)
    except Exception as err:  # noqa: BLE001 - report MkDocs' own errors as a command would
        print(f"trajdocs: {err}", file=sys.stderr)
        return 1
    return 0


def _one_off(command: str, runs: str, site: str | None, options: list[str]) -> int:
    """`mkdocs build|serve` for a runs folder, with a temporary configuration."""
    if not os.path.isdir(runs):
        print(f"trajdocs {command}: {runs} is not a folder", file=sys.stderr)
        return 2
    config = _one_off_config(runs, site)
    try:
        return _mkdocs([command, "-f", config, *options])
    finally:
        shutil.rmtree(os.path.dirname(config), ignore_errors=True)


def _build(args: argparse.Namespace) -> int:
    return _one_off("build", args.runs, args.output, ["--strict"] if args.strict else [])


def _serve(args: argparse.Namespace) -> int:
    return _one_off("serve", args.runs, None, ["-a", args.dev_addr])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trajdocs", description="Browse RL trajectory dumps as an MkDocs site.")
    parser.add_argument("--version", action="version", version=f"trajdocs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="write synthetic LightRFT-style runs (clearly labelled synthetic)")
    demo.add_argument("folder", help="where to write <experiment>/trajectories/trajectories_step_<N>.json")
    demo.add_argument("--experiments", type=int, default=2)
    demo.add_argument("--steps", type=int, default=12, help="step files per experiment")
    demo.add_argument("--interval", type=int, default=5, help="training steps between saved files")
    demo.add_argument("--trajectories", type=int, default=8, help="trajectories per step file")
    demo.add_argument("--group-size", type=int, default=4, help="responses per prompt (GRPO group)")
    demo.add_argument("--min-tokens", type=int, default=200)
    demo.add_argument("--max-tokens", type=int, default=600)
    demo.add_argument("--ratio", type=float, default=0.2, help="share of tokens flagged high-entropy")
    demo.add_argument("--all-scores", action="store_true", help="entropy_score on every token, not only flagged ones")
    demo.add_argument("--no-token-lists", action="store_true", help="scalar advantages/return, no per-token lists")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--name", action="append", help="experiment folder name (repeat for each experiment)")
    demo.set_defaults(run=_demo)

    check = sub.add_parser("check", help="validate run folders without building; exit 1 on any problem")
    check.add_argument("paths", nargs="+", help="run folders, as in the plugin's 'runs' option")
    check.add_argument("--format", choices=("auto", "lightrft", "verl"), default="auto")
    check.add_argument("--correct", metavar="FIELD", help="as the plugin's 'correct' option: field deciding correct")
    check.add_argument("--correct-min", metavar="N", type=float, default=1.0, help="its threshold (default 1)")
    check.set_defaults(run=_check)

    init = sub.add_parser("init", help="write a ready mkdocs.yml and docs/index.md for a results folder")
    init.add_argument("folder", nargs="?", default=".", help="project folder (default: here)")
    init.add_argument("--runs", default="results", help="the runs folder, relative to the project (default: results)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(run=_init)

    build = sub.add_parser("build", help="build a site for a runs folder, without any mkdocs.yml")
    build.add_argument("runs", help="the runs folder")
    build.add_argument("-o", "--output", default="site", help="site folder (default: site)")
    build.add_argument("--strict", action="store_true", help="fail on any problem in the step files")
    build.set_defaults(run=_build)

    serve = sub.add_parser("serve", help="serve a live site for a runs folder, without any mkdocs.yml")
    serve.add_argument("runs", help="the runs folder")
    serve.add_argument("-a", "--dev-addr", default="127.0.0.1:8000", help="address (default: 127.0.0.1:8000)")
    serve.set_defaults(run=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
