"""The documentation is part of the product: it renders as written, its links lead somewhere, and
the package installs without warnings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import markdown
import pytest
import yaml

from conftest import simple_run

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]


def project_extensions() -> tuple[list[str], dict]:
    """The Markdown extensions of the project's own mkdocs.yml, as MkDocs passes them."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    names, settings = [], {}
    for entry in config.get("markdown_extensions", []):
        name, options = next(iter(entry.items())) if isinstance(entry, dict) else (entry, {})
        names.append(name)
        settings[name] = dict(options or {})
    if "pymdownx.snippets" in settings:
        settings["pymdownx.snippets"]["base_path"] = [str(ROOT)]
    return names, settings


class Paragraphs(HTMLParser):
    """The text that starts each <p>."""

    def __init__(self) -> None:
        super().__init__()
        self.starts: list[str] = []
        self._open = False

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        if tag == "p":
            self.starts.append("")
            self._open = True
        elif self._open and self.starts[-1] == "":
            self._open = False  # starts with an element, not with text

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self._open:
            self.starts[-1] += data
            if data.strip():
                self._open = False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_tables_render_as_tables(page):
    names, settings = project_extensions()
    html = markdown.markdown(page.read_text(encoding="utf-8"), extensions=names, extension_configs=settings)
    parser = Paragraphs()
    parser.feed(html)
    stray = [text for text in parser.starts if text.lstrip().startswith("|")]
    assert not stray, f"{page.name}: table rows rendered as a paragraph: {stray}"
    rows = [line for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    if rows:
        assert html.count("<tr>") >= len(rows) - html.count("<table>"), page.name  # every row but the rule


def test_the_project_site_builds_strictly_with_every_link_valid(tmp_path):
    """The project's own mkdocs.yml and docs/, with small runs in place of the example, built with
    MkDocs warning on any link or anchor that leads nowhere."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    simple_run(tmp_path / "example" / "results", "exp", (1, 2))
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    config += "\nvalidation:\n  nav: {omitted_files: warn, not_found: warn, absolute_links: warn}\n" \
              "  links: {not_found: warn, anchors: warn, absolute_links: warn, unrecognized_links: warn}\n"
    (tmp_path / "mkdocs.yml").write_text(config, encoding="utf-8")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path, capture_output=True,
                           text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr
    assert "WARNING" not in built.stderr, built.stderr


def test_readme_links_lead_to_files():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert targets
    for target in targets:
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        assert (ROOT / target.split("#")[0]).exists(), target


def test_quick_start_snippets_work_offline():
    """Every mkdocs.yml shown with Material sets `font: false` (no request to Google Fonts)."""
    for page in PAGES:
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
            if "material" in block:
                assert re.search(r"font: false", block), f"{page.name}: {block}"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to list the project's files")
def test_install_prints_no_warning(tmp_path):
    """`pip install` of the project (a wheel, and `pip install -e .`) shows no setuptools
    deprecation, packaging or editable-installation warning."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp_path / "src" / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "wheel"),
                            str(tmp_path / "src")], capture_output=True, text=True)
    if built.returncode != 0 and "satisfies the requirement setuptools" in built.stdout + built.stderr:
        pytest.skip("no package index to fetch the build backend from")
    assert built.returncode == 0, built.stdout + built.stderr
    output = built.stdout + built.stderr
    warnings = [line for line in output.splitlines()
                if "Warning:" in line]  # SetuptoolsDeprecationWarning: ..., _Warning: Package ... is absent
    assert not warnings, "\n".join(warnings)
    import zipfile
    names = zipfile.ZipFile(next((tmp_path / "wheel").glob("trajdocs-*.whl"))).namelist()
    assert "trajdocs/assets/trajdocs.js" in names and "trajdocs/assets/trajdocs.css" in names
    # `pip install -e .`: no "Editable installation" notice (setuptools' import-hook strategy) either
    # (--ignore-installed: into a folder of its own, never uninstalling the trajdocs under test)
    editable = subprocess.run([sys.executable, "-m", "pip", "install", "-e", str(tmp_path / "src"), "--no-deps", "-v",
                               "--ignore-installed", "--prefix", str(tmp_path / "prefix")], capture_output=True, text=True)
    assert editable.returncode == 0, editable.stdout + editable.stderr
    warnings = [line for line in (editable.stdout + editable.stderr).splitlines()
                if "Warning:" in line or "InformationOnly" in line]
    assert not warnings, "\n".join(warnings)
