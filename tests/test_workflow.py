"""The daily workflow, run as a user would: commands in subprocesses, temporary folders."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mkdocs.exceptions import Abort

from conftest import build_site, read, simple_run

ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=ENV, capture_output=True, text=True)


def test_init_then_mkdocs_build(tmp_path):
    simple_run(tmp_path / "results", "exp", (1, 2))
    made = run("trajdocs", "init", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    config = read(tmp_path / "mkdocs.yml")
    assert "font: false" in config and "scheme: slate" in config and "runs: \"results\"" in config
    built = run("mkdocs", "build", "--strict", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "runs" / "exp" / "step-2" / "index.html").exists()
    assert 'href="runs/"' in read(tmp_path / "site" / "index.html")


def test_init_never_overwrites_without_force(tmp_path):
    (tmp_path / "mkdocs.yml").write_text("site_name: mine\n")
    refused = run("trajdocs", "init", cwd=tmp_path)
    assert refused.returncode == 1 and "not overwriting" in refused.stderr
    assert read(tmp_path / "mkdocs.yml") == "site_name: mine\n"
    assert not (tmp_path / "docs").exists()
    forced = run("trajdocs", "init", "--force", "--runs", "out/runs", cwd=tmp_path)
    assert forced.returncode == 0 and 'runs: "out/runs"' in read(tmp_path / "mkdocs.yml")


def test_build_a_runs_folder_without_config(tmp_path):
    simple_run(tmp_path / "results", "exp", (5, 10))
    built = run("trajdocs", "build", "results", "-o", "out", "--strict", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    for page in ("index.html", "runs/index.html", "runs/exp/index.html", "runs/exp/step-10/index.html"):
        assert (tmp_path / "out" / page).exists(), page
    assert not (tmp_path / "mkdocs.yml").exists() and not (tmp_path / "docs").exists()
    (tmp_path / "results" / "exp" / "trajectories" / "trajectories_step_15.json").write_text("[{")
    failed = run("trajdocs", "build", "results", "-o", "out", "--strict", cwd=tmp_path)
    assert failed.returncode != 0


def test_size_report_warns_near_the_limits(tmp_path, warnings_logged):
    simple_run(tmp_path / "results", "exp", range(1, 4))
    build_site(tmp_path)
    assert not [m for m in warnings_logged if "limit" in m]
    build_site(tmp_path, plugin={"runs": "results", "size_limit_mb": 0.2, "file_limit_mb": 0.01})
    assert any("over the 0.2 MB limit" in m and "trajectories_per_page" in m for m in warnings_logged), warnings_logged
    assert any("per-file limit" in m for m in warnings_logged)
    with pytest.raises(Abort):
        build_site(tmp_path, plugin={"runs": "results", "size_limit_mb": 0.2}, strict=True)


@pytest.mark.browser
def test_site_opened_from_disk(page, tmp_path):
    simple_run(tmp_path / "results", "exp", (1, 2))
    site = build_site(tmp_path, use_directory_urls=False,
                      plugins=["offline", "search", {"trajdocs": {"runs": "results"}}])
    page.goto((site / "runs" / "exp" / "index.html").as_uri())
    page.locator("table.td-steps a", has_text="2").click()
    page.wait_for_url("**/step-2.html")
    page.locator(".td-tokens .h").first.hover()
    assert "entropy 2.5" in page.locator(".td-tip").inner_text()
    page.locator("a.td-prev").first.click()
    page.wait_for_url("**/step-1.html")
    assert page.errors == [] and page.outside == [], (page.errors, page.outside)


def test_properdocs_builds_the_same_site(tmp_path):
    import shutil

    properdocs = shutil.which("properdocs", path=os.path.dirname(sys.executable)) or shutil.which("properdocs")
    if not properdocs:
        if os.environ.get("CI"):
            pytest.fail("properdocs is not installed; the test extras install it")
        pytest.skip("properdocs not installed")
    simple_run(tmp_path / "results", "exp", (1, 2))
    assert run("trajdocs", "init", cwd=tmp_path).returncode == 0
    built = subprocess.run([properdocs, "build", "--strict"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    html = read(tmp_path / "site" / "runs" / "exp" / "step-2" / "index.html")
    assert 'class="h" data-e="2.5"' in html and "td-step" in html


def test_runs_from_fsspec_urls(tmp_path, caplog):
    import fsspec

    simple_run(tmp_path / "local" / "results", "exp", (1, 2))
    memory = fsspec.filesystem("memory")
    for path in (tmp_path / "local" / "results").rglob("*.json"):
        memory.pipe(f"/bucket/results/{path.relative_to(tmp_path / 'local' / 'results').as_posix()}", path.read_bytes())
    plugin = {"runs": ["memory://bucket/results", (tmp_path / "local" / "results").as_uri()], "workers": 1}
    with caplog.at_level("INFO", logger="mkdocs.plugins.trajdocs"):
        site = build_site(tmp_path / "project", plugin=plugin, strict=True)
    overview = read(site / "runs" / "index.html")
    seg = '<span class="td-seg">{}</span>'.format
    assert f">{seg('memory:')}/<wbr>{seg('')}/<wbr>{seg('bucket')}/<wbr>{seg('results')}/<wbr>{seg('exp')}</a>" in overview
    assert f"/<wbr>{seg('local')}/<wbr>{seg('results')}/<wbr>{seg('exp')}</a>" in overview
    pages = sorted(p.relative_to(site).as_posix() for p in (site / "runs").rglob("step-2/index.html"))
    assert len(pages) == 2
    html = [read(site / p) for p in pages]
    assert html[0].count('class="h"') == html[1].count('class="h"') > 0  # the same pages either way
    # a new step in the bucket appears at the next build; unchanged files are not copied again
    memory.pipe("/bucket/results/exp/trajectories/trajectories_step_3.json",
                (tmp_path / "local" / "results" / "exp" / "trajectories" / "trajectories_step_2.json").read_bytes())
    caplog.clear()
    with caplog.at_level("INFO", logger="mkdocs.plugins.trajdocs"):
        site = build_site(tmp_path / "project", plugin=plugin, strict=True)
    assert "(1 read, 4 from cache)" in caplog.text
    assert any(p.name == "step-3" for p in (site / "runs").rglob("step-3"))


def test_one_off_site_home_page_is_true_for_a_one_off_site(tmp_path):
    """No mkdocs commands (the site has no mkdocs.yml), no absolute local path, no repeated nav."""
    simple_run(tmp_path / "RUNS", "exp", (1,))
    built = run("trajdocs", "build", "RUNS", "-o", "out", cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    home = read(tmp_path / "out" / "index.html")
    assert "mkdocs serve" not in home and "gh-deploy" not in home and str(tmp_path) not in home
    assert "<code>RUNS</code>" in home and "trajdocs build" in home
    primary = home[home.index("md-nav--primary"):]
    nav = [t.strip() for t in re.split(r"<[^>]+>", primary[:primary.index("Overview")]) if t.strip()]
    assert nav.count("RUNS") == 1, nav  # the site's name once, not again as its home page's title
