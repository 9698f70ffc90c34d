"""The `trajdocs` command line: what is not a build (demo data, checks, scaffolding)."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile

from . import __version__
from .demo import KINDS as KIND_CHOICES  # stdlib only: the tokenizer loads when demo data is written
from .formats import FORMAT_CHOICES
from .guard import overlap_problem, output_problem


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoOptions, DemoUnavailable, write_demo

    opts = DemoOptions(experiments=args.experiments, steps=args.steps, interval=args.interval,
                       trajectories=args.trajectories, group_size=args.group_size,
                       min_tokens=args.min_tokens, max_tokens=args.max_tokens, ratio=args.ratio,
                       all_scores=args.all_scores, token_lists=args.token_lists and not args.no_token_lists,
                       seed=args.seed, names=tuple(args.name or ()), kinds=tuple(args.kind or ()))
    if opts.min_tokens < 1 or opts.max_tokens < opts.min_tokens:
        print("trajdocs demo: need 1 <= --min-tokens <= --max-tokens", file=sys.stderr)
        return 2
    try:
        written = write_demo(args.folder, opts)
    except DemoUnavailable as err:
        print(f"trajdocs demo: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} synthetic step files under {args.folder}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .check import check_runs
    from .formats import CorrectRule

    rule = CorrectRule(args.correct, args.correct_min) if args.correct else None
    if args.tokenizer and not os.path.exists(args.tokenizer):
        print(f"trajdocs check: --tokenizer {args.tokenizer}: no such file or folder", file=sys.stderr)
        return 2
    mapping = _mapping_file("check", args.mapping)
    if mapping is None:
        return 2
    return 1 if check_runs(args.paths, args.format, rule=rule, tokenizer=os.path.abspath(args.tokenizer or "")
                           if args.tokenizer else "", mapping=mapping) else 0


def _mapping_file(command: str, path: str | None) -> str | None:
    """The `--mapping FILE` option: the plugin's `mapping` option read from a YAML file (the keys
    themselves, or a mkdocs.yml whose trajdocs plugin has them), checked, as JSON text ("" without
    the option); None after printing why it cannot be used."""
    if not path:
        return ""
    import yaml

    from .settings import OptionError, mapping_option

    class Loader(yaml.SafeLoader):  # a mkdocs.yml may hold tags (!ENV, !!python/name:): not needed here
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.load(f, Loader=Loader)  # noqa: S506 - a SafeLoader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        print(f"trajdocs {command}: --mapping {path}: cannot be read ({err})", file=sys.stderr)
        return None
    if isinstance(doc, dict) and isinstance(doc.get("plugins"), list):
        found = [p["trajdocs"] for p in doc["plugins"] if isinstance(p, dict) and isinstance(p.get("trajdocs"), dict)]
        doc = found[0].get("mapping") if found else None
    elif isinstance(doc, dict) and set(doc) == {"mapping"}:
        doc = doc["mapping"]
    try:
        return mapping_option(doc if doc is not None else "no mapping")
    except OptionError as err:
        print(f"trajdocs {command}: --mapping {path}: {str(err).removeprefix('trajdocs: ')}", file=sys.stderr)
        return None


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
ONE_OFF_PAGE = """\
# Home

Training runs from the folder {name}, browsable step by step: see the
[overview of all experiments](runs/index.md).

This site was made by trajdocs from that folder alone. To rebuild it with the steps written since,
run `trajdocs build <runs folder> -o <site folder>` again (it reads only new or changed step files);
`trajdocs serve <runs folder>` shows new step files as the trainer writes them.
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
    here = os.path.realpath(folder) == os.path.realpath(os.getcwd())
    print("next: mkdocs serve" if here else f"next: cd {shlex.quote(args.folder)} && mkdocs serve")
    return 0


def _yaml_text(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _cache_folder(runs: str) -> str:
    """The one-off commands' step cache: per user, per runs folder (its real path), kept between
    runs so that the second `trajdocs build` reads only new or changed step files."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha1(os.path.realpath(runs).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    folder = os.path.join(base, "trajdocs", key)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:  # no writable home: a per-user folder in the system's temporary folder
        folder = os.path.join(tempfile.gettempdir(), f"trajdocs-cache-{os.getuid() if hasattr(os, 'getuid') else 0}", key)
    return folder


def _one_off_config(work: str, runs: str, site: str | None, tokenizer: str = "", mapping: str = "") -> str:
    """A temporary mkdocs.yml in `work` for a runs folder that has none; the cache outlives it."""
    runs = os.path.abspath(runs)
    os.makedirs(os.path.join(work, "docs"))
    name = os.path.basename(runs.rstrip(os.sep)) or "runs"
    with open(os.path.join(work, "docs", "index.md"), "w", encoding="utf-8") as f:
        fence = "`" * (max(map(len, re.findall("`+", name)), default=0) + 1)  # a code span: the name as written
        f.write(ONE_OFF_PAGE.format(name=f"{fence} {name} {fence}"))  # the name only: no local path in a published site
    config = (SITE_CONFIG.format(name=_yaml_text(name), runs=_yaml_text(runs))
              + f"      cache_dir: {_yaml_text(_cache_folder(runs))}\n"
              + f"      paths_relative_to: {_yaml_text(os.path.dirname(runs.rstrip(os.sep)) or runs)}\n")
    if tokenizer:
        config += f"      tokenizer: {_yaml_text(os.path.abspath(tokenizer))}\n"
    if mapping:
        config += f"      mapping: {mapping}\n"  # JSON: a YAML flow mapping
    if site:
        config += f"site_dir: {_yaml_text(os.path.abspath(site))}\n"
    path = os.path.join(work, "mkdocs.yml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(config)
    return path


def _mkdocs(arguments: list[str]) -> int:
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    import click
    from mkdocs.__main__ import cli

    try:
        cli(arguments, standalone_mode=False)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except (KeyboardInterrupt, click.exceptions.Abort):  # click turns Ctrl-C into its Abort
        print("trajdocs: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - report MkDocs' own errors as a command would
        print(f"trajdocs: {err}", file=sys.stderr)
        return 1
    return 0


STOP_SIGNALS = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
_stopped: list[int] = []  # the signal that stops this command, once one came


def _stop(signum: int, frame: object) -> None:
    """Unwind like Ctrl-C, so that every `finally` runs (MkDocs' own cleaning too)."""
    if signum != getattr(signal, "SIGALRM", None):
        _stopped.append(signum)
    if _stopped and _stopped[0] == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + (_stopped[0] if _stopped else signum))


def _quiet_unraisable(unraisable) -> None:  # type: ignore[no-untyped-def]
    """An exception raised while Python runs a callback (a weakref's, a __del__) is dropped: when
    it is the one that stops this command, raise it again a moment later (SIGALRM), silently."""
    if _stopped and isinstance(unraisable.exc_value, (SystemExit, KeyboardInterrupt)):
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0.05)
        return
    sys.__unraisablehook__(unraisable)


@contextlib.contextmanager
def _stop_signals_held():  # type: ignore[no-untyped-def]
    """The stop signals wait until the block has run: a folder made and named in it is then
    always known to the `finally` that removes it (a signal between the folder's creation and
    the assignment of its name would leave it behind); a waiting signal acts on leaving."""
    block = getattr(signal, "pthread_sigmask", None)
    if block is not None:
        block(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        if block is not None:
            block(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _one_off(command: str, runs: str, site: str | None, options: list[str], tokenizer: str = "",
             mapping_path: str | None = None) -> int:
    """`mkdocs build|serve` for a runs folder, with a temporary configuration removed on every way
    out (an error, Ctrl-C, SIGTERM, SIGHUP)."""
    if not os.path.isdir(runs):
        print(f"trajdocs {command}: {runs} is not a folder", file=sys.stderr)
        return 2
    if tokenizer and not os.path.exists(tokenizer):
        print(f"trajdocs {command}: --tokenizer {tokenizer}: no such file or folder", file=sys.stderr)
        return 2
    mapping = _mapping_file(command, mapping_path)
    if mapping is None:
        return 2
    _stopped.clear()
    tempfile.gettempdir()  # Python probes the folder with a file: not while a signal could cut it short
    catch = STOP_SIGNALS + ([signal.SIGALRM] if hasattr(signal, "setitimer") else [])
    previous = {sig: signal.signal(sig, _stop) for sig in catch}
    hook, sys.unraisablehook = sys.unraisablehook, _quiet_unraisable
    work = None
    try:
        with _stop_signals_held():
            work = tempfile.mkdtemp(prefix="trajdocs-site-")
        problem = site and overlap_problem(site, [("temporary configuration folder", work)])
        if problem:
            print(f"trajdocs {command}: refusing to build: {problem}", file=sys.stderr)
            return 1
        code = _mkdocs([command, "-f", _one_off_config(work, runs, site, tokenizer, mapping), *options])
        return 128 + _stopped[0] if _stopped else code
    except KeyboardInterrupt:
        return 130
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    finally:
        for sig in catch:  # a second signal must not cut the cleaning short
            signal.signal(sig, signal.SIG_IGN)
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)
        if work:
            shutil.rmtree(work, ignore_errors=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = hook


def _build(args: argparse.Namespace) -> int:
    problem = output_problem(args.output, [args.runs], args.force)
    if problem:
        print(f"trajdocs build: refusing to build: {problem}", file=sys.stderr)
        return 1
    return _one_off("build", args.runs, args.output, ["--strict"] if args.strict else [], args.tokenizer,
                    args.mapping)


def _port_problem(address: str) -> str | None:
    """Why the server could not listen on HOST:PORT, found before a whole site is built."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit():
        return f"{address} is not HOST:PORT"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        return f"cannot resolve {host}: {err}"
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server itself does
        try:
            probe.bind(sockaddr)
        except OSError as err:
            return f"cannot listen on {address}: {err.strerror or err} (another server there? try -a {host}:{int(port) + 1})"
    return None


def _serve(args: argparse.Namespace) -> int:
    problem = _port_problem(args.dev_addr)
    if problem:
        print(f"trajdocs serve: {problem}", file=sys.stderr)
        return 1
    return _one_off("serve", args.runs, None, ["-a", args.dev_addr], args.tokenizer, args.mapping)


TOKENIZER_HELP = ("a tokenizer.json file or a local Hugging Face model folder, to show token ids as text "
                  "(needs the 'tokenizers' package: pip install 'trajdocs[tokenizer]')")
MAPPING_HELP = ("a YAML file holding the plugin's 'mapping' option (or a mkdocs.yml that sets it): which "
                "files hold the samples of another trainer and which fields are prompt, response, reward ...")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trajdocs", description="Browse RL trajectory dumps as an MkDocs site.")
    parser.add_argument("--version", action="version", version=f"trajdocs {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo",
                          help="write synthetic runs shaped as LightRFT's and verl's writers write them",
                          description="Write synthetic runs for trying trajdocs out and for benchmarks, laid "
                                      "out and serialised as LightRFT's and verl's writers do, tokenised with "
                                      "Qwen's tokenizer (pip install 'trajdocs[demo]'): template text and "
                                      "random entropies, not model output.")
    demo.add_argument("folder", help="where to write <experiment>/<model>/trajectories/trajectories_step_<N>.json")
    demo.add_argument("--experiments", type=int, default=2, metavar="N", help="number of experiments (default: %(default)s)")
    demo.add_argument("--steps", type=int, default=12, metavar="N", help="step files per experiment (default: %(default)s)")
    demo.add_argument("--interval", type=int, default=5, metavar="N", help="training steps between saved files (default: %(default)s)")
    demo.add_argument("--trajectories", type=int, default=8, metavar="N", help="trajectories per step file (default: %(default)s)")
    demo.add_argument("--group-size", type=int, default=4, metavar="N", help="responses per prompt (GRPO group) (default: %(default)s)")
    demo.add_argument("--min-tokens", type=int, default=200, metavar="N", help="fewest tokens in a response (default: %(default)s)")
    demo.add_argument("--max-tokens", type=int, default=600, metavar="N", help="most tokens in a response (default: %(default)s)")
    demo.add_argument("--ratio", type=float, default=0.2, metavar="R",
                      help="high_entropy_token_ratio: share of each response's tokens flagged, 0 for marking off "
                           "(default: %(default)s)")
    demo.add_argument("--all-scores", action="store_true", help="entropy_score on every token, not only flagged ones")
    demo.add_argument("--token-lists", action="store_true",
                      help="the saver given whole micro-batches: per-token advantages/return/log-probs lists")
    demo.add_argument("--no-token-lists", action="store_true",
                      help="scalar advantages/return/log-probs, as the trainer's path writes them (the default)")
    demo.add_argument("--kind", action="append", choices=KIND_CHOICES,
                      help="run kind, repeat to cycle over the experiments (default: lightrft)")
    demo.add_argument("--seed", type=int, default=0, metavar="N",
                      help="random seed: the same seed writes the same files (default: %(default)s)")
    demo.add_argument("--name", action="append", metavar="NAME",
                      help="experiment folder name (repeat for each experiment)")
    demo.set_defaults(run=_demo)

    check = sub.add_parser("check",
                           help="validate run folders without building; exit 1 on any problem",
                           description="List the experiments and step files trajdocs finds, and every problem "
                                       "a strict build would fail on; exit status 1 on any problem.")
    check.add_argument("paths", nargs="+", metavar="RUNS", help="run folders, as in the plugin's 'runs' option")
    check.add_argument("--format", choices=FORMAT_CHOICES, default="auto",
                       help="file format (default: auto: each file by its path, as its trainer names it)")
    check.add_argument("--correct", metavar="FIELD",
                       help="as the plugin's 'correct' option: the field that says a trajectory is correct")
    check.add_argument("--correct-min", metavar="N", type=float, default=1.0,
                       help="the lowest value of that field counted as correct (default: %(default)s)")
    check.add_argument("--tokenizer", metavar="PATH", help=TOKENIZER_HELP)
    check.add_argument("--mapping", metavar="FILE", help=MAPPING_HELP)
    check.set_defaults(run=_check)

    init = sub.add_parser("init", help="write a ready mkdocs.yml and docs/index.md for a results folder",
                          description="Write a ready mkdocs.yml and docs/index.md; existing files are kept "
                                      "unless --force.")
    init.add_argument("folder", nargs="?", default=".", help="project folder (default: here)")
    init.add_argument("--runs", default="results", help="the runs folder, relative to the project (default: results)")
    init.add_argument("--force", action="store_true", help="overwrite an existing mkdocs.yml and docs/index.md")
    init.set_defaults(run=_init)

    build = sub.add_parser("build", help="build a site for a runs folder, without any mkdocs.yml",
                           description="Build a static site for a runs folder, without any mkdocs.yml. The "
                                       "output folder is emptied first: trajdocs refuses one that is, holds or "
                                       "lies inside the runs folder, the current folder or one above it, and "
                                       "(unless --force) a non-empty folder that is not a site.")
    build.add_argument("runs", help="the runs folder")
    build.add_argument("-o", "--output", default="site", help="site folder, emptied first (default: site)")
    build.add_argument("--strict", action="store_true", help="fail on any problem in the step files")
    build.add_argument("--force", "--clean", action="store_true",
                       help="replace an output folder that does not look like a site (its files are deleted)")
    build.add_argument("--tokenizer", metavar="PATH", help=TOKENIZER_HELP)
    build.add_argument("--mapping", metavar="FILE", help=MAPPING_HELP)
    build.set_defaults(run=_build)

    serve = sub.add_parser("serve", help="serve a live site for a runs folder, without any mkdocs.yml",
                           description="Serve a live site for a runs folder, without any mkdocs.yml; new step "
                                       "files appear without restarting. Nothing is written next to the runs.")
    serve.add_argument("runs", help="the runs folder")
    serve.add_argument("-a", "--dev-addr", default="127.0.0.1:8000", metavar="HOST:PORT",
                       help="address to serve on (default: 127.0.0.1:8000)")
    serve.add_argument("--tokenizer", metavar="PATH", help=TOKENIZER_HELP)
    serve.add_argument("--mapping", metavar="FILE", help=MAPPING_HELP)
    serve.set_defaults(run=_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
