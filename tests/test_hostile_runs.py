"""Odd and hostile runs folders: links out of the runs, special files, nested experiments, huge
texts, cache staleness, odd names and bytes. Real builds, real files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from mkdocs.exceptions import Abort

from conftest import build_site, read, simple_run, steps_table, tok, trajectory, write_step

SECRET = "trajdocs-secret-7d1e2f0b9c"


def site_bytes(site: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file())


def outside_files(tmp_path: Path) -> Path:
    """A folder outside the runs holding a secret: as text, as an image, as a step file."""
    out = tmp_path / "outside"
    (out / "exp" / "trajectories").mkdir(parents=True)
    (out / "passwd").write_text(f"root:x:0:0:{SECRET}\n")
    records = [trajectory(1, 0, [tok(SECRET, True, 2.0)])]
    (out / "exp" / "trajectories" / "trajectories_step_1.json").write_text(json.dumps(records))
    (out / "step.json").write_text(json.dumps(records))
    return out


def hostile_links(tmp_path: Path) -> None:
    out = outside_files(tmp_path)
    run = tmp_path / "results" / "vl" / "trajectories"
    (run / "images").mkdir(parents=True)
    (run / "images" / "leak.png").symlink_to(out / "passwd")  # an image that is a link out
    (run / "linked").symlink_to(out)  # a folder that is a link out, holding an image
    records = [trajectory(1, 0, [tok("cat", True, 1.0)], image_paths=["images/leak.png", "linked/passwd"])]
    write_step(tmp_path / "results", "vl", 1, records)
    (run / "trajectories_step_2.json").symlink_to(out / "step.json")  # a step file linking out
    (tmp_path / "results" / "other").symlink_to(out / "exp")  # an experiment folder linking out


def test_no_byte_from_outside_the_runs_folder_is_published(tmp_path, warnings_logged):
    hostile_links(tmp_path)
    site = build_site(tmp_path)
    assert SECRET.encode() not in site_bytes(site)
    assert (site / "runs" / "vl" / "step-1" / "index.html").exists()
    assert not (site / "runs" / "vl" / "step-2").exists() and not (site / "runs" / "other").exists()
    for name in ("leak.png", "linked/passwd", "trajectories_step_2.json", "results/other"):
        assert any(name in m and "outside the runs folder" in m for m in warnings_logged), (name, warnings_logged)
    with pytest.raises(Abort):
        build_site(tmp_path, strict=True)


def test_links_out_are_published_only_when_allowed(tmp_path):
    hostile_links(tmp_path)
    site = build_site(tmp_path, plugin={"runs": "results", "allow_outside": ["outside"]})
    assert SECRET.encode() in (site / "runs" / "vl" / "files" / "images" / "leak.png").read_bytes()
    assert SECRET in read(site / "runs" / "vl" / "step-2" / "index.html")
    assert SECRET in read(site / "runs" / "other" / "step-1" / "index.html")


def test_check_reports_links_out(tmp_path):
    hostile_links(tmp_path)
    result = subprocess.run([sys.executable, "-m", "trajdocs", "check", str(tmp_path / "results")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "trajectories_step_2.json: links to" in result.stdout and "outside the runs folder" in result.stdout
    assert SECRET not in result.stdout


@pytest.mark.parametrize("command", ["check", "build"])
def test_fifos_and_device_links_are_skipped_within_seconds(tmp_path, command):
    simple_run(tmp_path / "results", "exp", [1])
    folder = tmp_path / "results" / "exp" / "trajectories"
    os.mkfifo(folder / "trajectories_step_2.json")
    (folder / "trajectories_step_3.json").symlink_to("/dev/zero")
    verl = tmp_path / "results" / "v"
    verl.mkdir()
    os.mkfifo(verl / "1.jsonl")
    args = [str(tmp_path / "results")] + (["-o", str(tmp_path / "out")] if command == "build" else [])
    result = subprocess.run([sys.executable, "-m", "trajdocs", command, *args], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    output = result.stdout + result.stderr
    for name in ("trajectories_step_2.json", "trajectories_step_3.json", "1.jsonl"):
        assert re.search(re.escape(name) + r".*(not a regular file|outside the runs folder)", output), (name, output)
    if command == "check":
        assert result.returncode == 1
    else:
        assert result.returncode == 0
        assert (tmp_path / "out" / "runs" / "exp" / "step-1" / "index.html").exists()


def test_the_reader_itself_refuses_special_files_and_files_over_the_cap(tmp_path):
    from trajdocs.readers import read_step

    os.mkfifo(tmp_path / "trajectories_step_1.json")
    assert "not a regular file" in read_step(str(tmp_path / "trajectories_step_1.json")).unreadable
    assert "not a regular file" in read_step("/dev/zero").unreadable
    path = simple_run(tmp_path, "e", [1]) or tmp_path / "e" / "trajectories" / "trajectories_step_1.json"
    message = read_step(str(path), max_bytes=100).unreadable
    assert "over the 0 MB size cap" in message and "max_file_mb" in message
    assert read_step(str(path)).unreadable is None


def test_step_files_over_the_size_cap_are_named_with_the_cap(tmp_path, warnings_logged):
    simple_run(tmp_path / "results", "exp", [1, 2])
    big = tmp_path / "results" / "exp" / "trajectories" / "trajectories_step_2.json"
    big.write_text(big.read_text() + " " * 2 ** 20)
    site = build_site(tmp_path, plugin={"runs": "results", "max_file_mb": 1})
    assert any("trajectories_step_2.json" in m and "over the 1 MB size cap" in m for m in warnings_logged)
    assert (site / "runs" / "exp" / "step-1" / "index.html").exists()


# --- nested experiments ---------------------------------------------------------------------

class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.h1 = ""
        self._in_h1 = False

    def handle_starttag(self, tag, attrs):
        if tag == "a" and dict(attrs).get("href"):
            self.links.append(dict(attrs)["href"])
        self._in_h1 = self._in_h1 or tag == "h1"

    def handle_endtag(self, tag):
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._in_h1:
            self.h1 += data


def parsed(path: Path) -> Links:
    parser = Links()
    parser.feed(read(path))
    return parser


def page_at(site: Path, page: Path, href: str) -> Path:
    target = (page.parent / href.split("#")[0]).resolve()
    return target / "index.html" if target.is_dir() else target


NESTED = ["a", "a/step-1", "a/step-2-2", "a/files", "a/texts", "a/steps.json", "b", "b/steps.csv",
          "b/index.html", "step", "c/step", "c/step_"]


def test_nested_experiments_never_share_a_url(tmp_path):
    for name in NESTED:
        simple_run(tmp_path / "results", name, [1, 2], per_step=60 if name == "a" else 1)  # a: two pages per step
    (tmp_path / "results" / "c" / "step" / "trajectories" / "x").mkdir()
    simple_run(tmp_path / "results" / "c" / "step" / "trajectories", "x", [1, 2])  # c/step/trajectories/x beside c/step
    for urls in (True, False):
        project = tmp_path / ("dir" if urls else "flat")
        project.mkdir()
        (project / "results").symlink_to(tmp_path / "results")  # a runs folder that is a link is fine
        site = build_site(project, strict=True, use_directory_urls=urls)
        overview = site / "runs" / ("index.html")
        names = {}
        for href in parsed(overview).links:
            target = page_at(site, overview, href)
            if "runs" in target.parts and target.exists() and "td-steps" in read(target):
                names[parsed(target).h1.strip()] = target
        assert set(names) >= set(NESTED) | {"c/step/trajectories/x"}, sorted(names)
        assert len(set(names.values())) == len(names)
        for name, page in names.items():
            table = steps_table(read(page))
            hrefs = re.findall(r'href="([^"]+)"', table)
            assert len(hrefs) == 2, (name, hrefs)
            for href, step in zip(hrefs, (1, 2)):
                step_page = page_at(site, page, href)
                html = read(step_page)
                assert f"<h1" in html and f">Step {step}" in html, (name, href)
                up = re.search(r'<a class="td-up" href="[^"]*">↑ ([^<]*)</a>', html)[1]
                assert up == name, (name, href, up)
            csv = page_at(site, page, "steps.csv")
            assert csv.is_file() and csv.read_text().startswith("step,"), name
