"""The package's structure: no import cycles, MkDocs only in the plugin, cache keys that cannot go stale."""

from __future__ import annotations

import ast
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import simple_run

import trajdocs
from trajdocs.render import RenderOptions

PACKAGE = Path(trajdocs.__file__).parent


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (`trajdocs.formats.verl`)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    """Absolute names a module imports (relative imports resolved); with `top_level_only` only the
    imports that run when the module is imported (not those inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # imports under `if` / `try` at module level run on import too
        nodes = [n for top in tree.body for n in ast.walk(top)
                 if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import x`
    return found


def test_no_import_cycles_among_the_modules():
    names = modules()
    graph = {name: {i for i in imports(name, path, True) if i in names and i != name}
             for name, path in names.items()}
    for name in graph:  # a package imports its own __init__ first: not an edge back
        graph[name] -= {p for p in graph[name] if name.startswith(p + ".")}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert len(names) > 10 and any(graph.values())  # the graph was really read
    assert not cycles, cycles


def mkdocs_imports(name: str, path: Path) -> set[str]:
    return {i for i in imports(name, path, False) if i == "mkdocs" or i.startswith("mkdocs.")}


def test_only_the_plugin_imports_mkdocs():
    """The core never imports MkDocs; the plugin is its adapter, and the command line only runs
    MkDocs' own command line (for one-off builds), inside a function."""
    found = {name: mkdocs_imports(name, path) for name, path in modules().items()}
    users = sorted(name for name, used in found.items() if used)
    assert users == ["trajdocs.cli", "trajdocs.plugin"]
    assert found["trajdocs.cli"] == {"mkdocs.__main__", "mkdocs.__main__.cli"}
    assert not {i for i in imports("trajdocs.cli", modules()["trajdocs.cli"], True) if i.startswith("mkdocs")}


def test_options_key_covers_every_field():
    base = RenderOptions()
    for f in dataclasses.fields(RenderOptions):
        value = getattr(base, f.name)
        other = value + 1 if isinstance(value, (int, float)) else value + "x"
        assert dataclasses.replace(base, **{f.name: other}).key() != base.key(), f.name


def build_with_package_copy(project: Path, package_parent: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(package_parent), "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q"], cwd=project, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return (project / "site" / "runs" / "exp" / "step-1" / "index.html").read_text(encoding="utf-8")


def test_editing_any_rendering_module_invalidates_cached_pages(tmp_path):
    """The cache fingerprint covers every module: editing charts.py (which the cache's own list
    of modules once left out) or a string in render.py changes the pages on the next build that
    uses the same cache folder."""
    copy = tmp_path / "pkg"
    shutil.copytree(PACKAGE, copy / "trajdocs", ignore=shutil.ignore_patterns("__pycache__"))
    project = tmp_path / "project"
    simple_run(project / "results", "exp", [1, 2])
    (project / "docs").mkdir()
    (project / "docs" / "index.md").write_text("# Home\n", encoding="utf-8")
    (project / "mkdocs.yml").write_text(yaml.safe_dump({
        "site_name": "Runs", "theme": {"name": "mkdocs"},
        "plugins": [{"trajdocs": {"runs": "results", "cache_dir": str(tmp_path / "cache")}}]}), encoding="utf-8")
    first = build_with_package_copy(project, copy)
    assert 'class="td-bar td-s0"' in first and "copy-edited" not in first

    charts = copy / "trajdocs" / "charts.py"
    charts.write_text(charts.read_text(encoding="utf-8").replace(
        '<rect class="td-bar td-s0"', '<rect class="td-bar td-s0 copy-edited"'), encoding="utf-8")
    second = build_with_package_copy(project, copy)
    assert 'class="td-bar td-s0 copy-edited"' in second

    render = copy / "trajdocs" / "render.py"
    text = render.read_text(encoding="utf-8")
    assert '"Entropy score"' in text
    render.write_text(text.replace('"Entropy score"', '"Entropy score (edited copy)"'), encoding="utf-8")
    third = build_with_package_copy(project, copy)
    assert "Entropy score (edited copy)" in third and "copy-edited" in third


def test_every_format_declares_what_the_registry_uses():
    from trajdocs.formats import FORMAT_CHOICES, FORMATS, detect_format, match_step_file

    assert FORMAT_CHOICES == ("auto", *FORMATS) and {"lightrft", "verl"} <= set(FORMATS)
    for name, module in FORMATS.items():
        assert module.NAME == name and ("step" in module.PATH.groupindex or callable(module.steps_in))
        # the mapped format's files are named by the `mapping` option: no suffix of its own
        assert (module.SUFFIX.startswith(".") or name == "mapped" and module.SUFFIX == "") and module.NAMES_TEXT \
            and callable(module.read)
        assert isinstance(module.TOKEN_CHANNELS, tuple) and module.FIELDS
    assert match_step_file("trajectories_step_5.json") == ("json:trajectories", 5)
    assert match_step_file("step_5.json") == ("json:", 5) and match_step_file("12.jsonl") == ("jsonl", 12)
    assert match_step_file("5.json") is None and match_step_file("step_5.json\n") is None
    assert [detect_format(p) for p in ("a/7.jsonl", "a/x_step_7.json", "a/other.jsonl", "a/other.txt")] == \
        ["verl", "lightrft", "verl", "lightrft"]


def test_step_extras_cross_the_cache_as_the_json_they_always_were(tmp_path):
    """Typed in memory, the same lists and objects on disk: [occurrences, flagged, score sum,
    scored] per token, one object per prompt group."""
    from conftest import tok, trajectory, write_step
    from trajdocs.build import render_step
    from trajdocs.model import StepExtras, StepFile

    records = [trajectory(1, i, [tok("Wait", True, 2.0), tok(" so", False, 0.5)], reward=float(i % 2))
               for i in range(4)]
    path = write_step(tmp_path, "exp", 1, records)
    _, _, extras, _ = render_step(StepFile(1, str(path)), "auto", RenderOptions())
    as_json = extras.to_json()
    assert as_json["forking"]["Wait"] == [4, 4, 8.0, 4]
    assert set(as_json["prompts"][0]) == {"key", "prompt", "responses", "mean_reward", "best_reward",
                                          "best_index", "best_page", "best_start"}
    assert StepExtras.from_json(as_json) == extras
