"""The `trajdocs` command line: what is not a build (demo data, checks, scaffolding)."""

from __future__ import annotations

import argparse
import sys

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

    return 1 if check_runs(args.paths, args.format) else 0


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
    check.set_defaults(run=_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
