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
    assert "images/leak.png: links to" in result.stdout and "linked/passwd: links to" in result.stdout
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
    from trajdocs.formats import read_step

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
          "b/index.html", "step", "c/step", "c/step_", "step-by-step", "a/step-1_"]


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
        nav = re.findall(r'<a href="([^"]*)" class="md-nav__link[^"]*"[^>]*>(.*?)</a>', read(overview), re.S)
        nav = {re.sub(r"<[^>]+>|\s+", " ", title).strip(): href for href, title in nav}
        for name in NESTED:  # the nav entry of each experiment leads to its own page
            assert parsed(page_at(site, overview, nav[name])).h1.strip() == name, (name, nav[name])
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
    assert (site / "runs" / "step-by-step" / "index.html").is_file()  # a name unlike a generated one keeps its URL


def test_colliding_generated_files_stop_the_build(tmp_path):
    from mkdocs.config import load_config
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File, Files

    (tmp_path / "docs").mkdir()
    (tmp_path / "mkdocs.yml").write_text("site_name: x\nplugins: [trajdocs]\n")
    config = load_config(str(tmp_path / "mkdocs.yml"))
    plugin = config.plugins["trajdocs"]
    plugin.site.prefix = "runs"
    config.plugins._current_plugin = "trajdocs"  # as during a build event

    def files(*uris: str) -> Files:
        return Files([File.generated(config, uri, content="x") for uri in uris])

    plugin.check_collisions(files("runs/a/index.md", "runs/a/step-1.md", "runs/a/step-1_/index.md", "runs/a/steps.csv"))
    with pytest.raises(PluginError, match="collide"):  # both written to runs/a/step-1/index.html
        plugin.check_collisions(files("runs/a/index.md", "runs/a/step-1.md", "runs/a/step-1/index.md"))
    with pytest.raises(PluginError, match="collide"):  # a file where a folder must go
        plugin.check_collisions(files("runs/b/steps.csv", "runs/b/steps.csv/index.md"))


# --- huge texts and the size report ---------------------------------------------------------

def test_one_enormous_token_is_cut_on_pages_and_published_whole(tmp_path, warnings_logged):
    huge = "Z" * (3 * 2 ** 20) + "END"
    tokens = [tok("Let", True, 2.0), tok(huge, True, 3.0), tok(" go")]
    records = [trajectory(1, 0, tokens, reward=1.0), trajectory(1, 1, [tok(huge, True, 1.0)], reward=0.0)]
    write_step(tmp_path / "results", "exp", 1, records)
    site = build_site(tmp_path, plugin={"runs": "results", "file_limit_mb": 2, "max_text_chars": 5000})
    step = site / "runs" / "exp" / "step-1" / "index.html"
    experiment = site / "runs" / "exp" / "index.html"
    assert step.stat().st_size < 200_000 and experiment.stat().st_size < 200_000
    html = read(step)
    assert 'data-cut="3145731"' in html and "Z" * 1000 + "</i>" in html and "END" not in html
    assert "Cut: the first 5,000 of 3,145,738 characters are shown" in html  # generated_text, written out cut
    texts = json.loads((site / "runs" / "exp" / "texts" / "step-1.json").read_text())
    assert texts["trajectory 0 token 1"] == huge and texts["trajectory 1 token 0"] == {"same as": "trajectory 0 token 1"}
    assert texts["trajectory 0 pure_generated_text"] == "Let" + huge + " go"
    assert 'href="../texts/step-1.json" download' in html
    assert "(cut: the whole token is in its steps' long texts)" in read(experiment) and "END" not in read(experiment)
    over = [m for m in warnings_logged if "over the 2 MB per-file limit" in m]
    assert len(over) == 1 and "texts/step-1.json" in over[0]
    assert not any("near the 2 MB" in m for m in warnings_logged)
    with pytest.raises(Abort):
        build_site(tmp_path, strict=True, plugin={"runs": "results", "file_limit_mb": 2, "max_text_chars": 5000})


def test_size_report_names_every_file_over_the_limit(tmp_path, warnings_logged):
    for name in ("a", "b"):
        write_step(tmp_path / "results", name, 1, [trajectory(1, 0, [tok("x" * 900) for _ in range(700)])])
    build_site(tmp_path, plugin={"runs": "results", "file_limit_mb": 0.3})
    over = [m for m in warnings_logged if "over the 0.3 MB per-file limit" in m]
    assert len(over) == 1 and "runs/a/step-1/index.html" in over[0] and "runs/b/step-1/index.html" in over[0]


# --- cache, odd names, odd bytes -------------------------------------------------------------

def test_an_edit_that_keeps_size_and_mtime_is_not_served_from_the_cache(tmp_path):
    write_step(tmp_path / "results", "exp", 1, [trajectory(1, 0, [tok("alpha", True, 1.0)])])
    path = tmp_path / "results" / "exp" / "trajectories" / "trajectories_step_1.json"
    site = build_site(tmp_path)
    assert "alpha" in read(site / "runs" / "exp" / "step-1" / "index.html")
    before = path.stat()
    path.write_text(path.read_text().replace("alpha", "omega"))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as rsync -t or a checkpoint sync leaves it
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    html = read(build_site(tmp_path) / "runs" / "exp" / "step-1" / "index.html")
    assert "omega" in html and "alpha" not in html


def test_step_file_names_with_newlines_are_read_or_named(tmp_path, warnings_logged):
    folder = tmp_path / "results" / "exp" / "trajectories"
    simple_run(tmp_path / "results", "exp", [1])
    record = json.dumps([trajectory(2, 0, [tok("x")])])
    (folder / "traj\nectories_step_2.json").write_text(record)  # a prefix with a newline: read
    (folder / "trajectories_step_3.json\n").write_text(record)  # no step file name: named, skipped
    build_site(tmp_path)
    assert any("trajectories_step_3.json\\n: a step file name with a control character" in m
               for m in warnings_logged), warnings_logged
    assert (tmp_path / "site" / "runs" / "exp-traj-ectories" / "step-2" / "index.html").exists()
    result = subprocess.run([sys.executable, "-m", "trajdocs", "check", str(tmp_path / "results")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "exp [traj\\nectories]: 1 step " in result.stdout
    assert "trajectories_step_3.json\\n: a step file name" in result.stdout
    assert not re.search(r"^(ectories|: |\])", result.stdout, re.M), result.stdout  # no name split over lines


@pytest.mark.parametrize("order", [("7", "007"), ("007", "7"), ("07", "007")])
def test_two_files_for_one_step_are_named_and_one_is_chosen_by_rule(tmp_path, warnings_logged, order):
    folder = tmp_path / "results" / "exp" / "trajectories"
    folder.mkdir(parents=True)
    for digits in order:  # written in this order: directory order must not matter
        (folder / f"trajectories_step_{digits}.json").write_text(json.dumps([trajectory(7, 0, [tok(f"from-{digits}")])]))
    html = read(build_site(tmp_path) / "runs" / "exp" / "step-7" / "index.html")
    winner = "7" if "7" in order else "007"  # the number without leading zeros, else the first name
    assert f"from-{winner}" in html and sum(f"from-{d}<" in html for d in order) == 1
    (message,) = [m for m in warnings_logged if "more than one file" in m]
    assert all(f"trajectories_step_{d}.json" in message for d in order)
    assert f"shown: trajectories_step_{winner}.json" in message


def test_check_prints_folder_names_escaped(tmp_path):
    simple_run(tmp_path / "results", "line\nbreak\x1b[31m", [1])
    result = subprocess.run([sys.executable, "-m", "trajdocs", "check", str(tmp_path / "results")],
                            capture_output=True, timeout=120)
    assert b"\x1b" not in result.stdout
    assert b"line\\nbreak\\x1b[31m: 1 step " in result.stdout
    assert len(result.stdout.splitlines()) == 2 and result.returncode == 0


def test_a_bad_byte_shows_the_step_and_names_the_byte(tmp_path, warnings_logged):
    path = write_step(tmp_path / "results", "exp", 1, [trajectory(1, 0, [tok("caf"), tok("é", True, 2.0)])])
    path.write_bytes(path.read_bytes().replace("é".encode(), b"\xe9"))  # one Latin-1 byte
    verl = tmp_path / "results" / "v"
    verl.mkdir()
    line = json.dumps({"input": "q", "output": "ok", "score": 1.0})
    (verl / "1.jsonl").write_bytes((line + "\n" + line.replace("ok", "o\xe9k") + "\n").encode("latin-1"))
    (verl / "2.jsonl").write_bytes((line + "\n" + line + "\n").encode("utf-16"))
    (verl / "3.jsonl").write_bytes(line.encode() + b"\n" + ("\ufeff" + line + "\n" + line).encode("utf-16-le"))
    site = build_site(tmp_path)
    html = read(site / "runs" / "exp" / "step-1" / "index.html")
    assert "caf\ufffd" in html.replace("<i>", "").replace("</i>", "").replace('<i class="h" data-e="2">', "")
    assert any("trajectories_step_1.json" in m and re.search(r"byte \d+ \(line \d+\) and any further", m)
               for m in warnings_logged), warnings_logged
    assert "o\ufffdk" in read(site / "runs" / "v" / "step-1" / "index.html")
    assert any("1.jsonl: line 2: byte" in m for m in warnings_logged)
    assert read(site / "runs" / "v" / "step-2" / "index.html").count('class="td-traj"') == 2
    assert any("2.jsonl: the file is UTF-16 text" in m for m in warnings_logged)
    assert any("3.jsonl: line 3: UTF-16 text" in m for m in warnings_logged), warnings_logged
    assert not any("codec" in m for m in warnings_logged)


# --- hostile text, in a real browser -------------------------------------------------------------

HOSTILE = ['<script>window.__xss="script"</script>', '<img src=x onerror="window.__xss=\'img\'">',
           '"><svg onload="window.__xss=\'svg\'">', "'><svg/onload=window.__xss='svg2'>",
           "{{ 7*7 }}{{ config }}", "{% raw %}{% include 'x' %}", "[link](javascript:window.__xss='md')",
           "<a href=\"javascript:window.__xss='a'\">a</a>", "</textarea><textarea>", "</pre></details></code>",
           "<!--", "]]>", "<style>body{display:none}</style>", "&lt;b&gt;&amp;"]
NAME_SAFE = [h.replace("/", "|") for h in HOSTILE]  # a file name cannot hold "/"


@pytest.mark.browser
def test_hostile_text_everywhere_stays_text_in_the_browser(page, tmp_path, serve):
    text = "".join(HOSTILE)
    prompt = f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    for step in (1, 2):  # the prompt recurs: it is on the prompts page too
        tokens = [tok(h, i % 2 == 0, 1.0 + i) for i, h in enumerate(HOSTILE)]
        records = [trajectory(step, i, tokens, reward=float(i), label=text, **{h: h for h in HOSTILE},
                              info={"reward": float(i), text: text, "reward_metrics": {h: 1 for h in HOSTILE}},
                              full_sequence=prompt + "".join(HOSTILE)) for i in range(2)]
        for folder, prefix in ((NAME_SAFE[1] + NAME_SAFE[2], "trajectories"), ("two", NAME_SAFE[0]),
                               ("two", "trajectories")):
            write_step(tmp_path / "results", folder, step, records, prefix=prefix)
        verl = tmp_path / "results" / (NAME_SAFE[6] + NAME_SAFE[4])
        verl.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"input": prompt, "output": text, "score": float(i), text: text}) for i in range(2)]
        (verl / f"{step}.jsonl").write_text("\n".join(lines) + "\n")
    site = build_site(tmp_path)
    base = serve(site)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    overview_links = re.findall(r'<td><a href="([^"]+)">', read(site / "runs" / "index.html"))
    experiments = ["runs/" + href for href in dict.fromkeys(overview_links)]
    assert len(experiments) == 4, experiments
    pages = ["runs/", "runs/prompts/"] + [e + sub for e in experiments for sub in ("", "step-1/", "step-2/")]
    for path in pages:
        page.goto(base + path)
        page.wait_for_load_state("load")
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        for box in page.locator(".td-controls input[type=checkbox]").all():
            box.check()  # generated_text and pure_generated_text built from the tokens, shown
        for token in page.locator(".td-tokens i").all()[:12]:
            token.hover()
        page.wait_for_timeout(50)
        assert page.evaluate("window.__xss") is None, path
        injected = page.evaluate("""() => [...document.querySelectorAll(
            '[onerror], [onload], textarea, a[href^="javascript"], '
            + 'article style, article img[src="x"], .md-content script')].map(e => e.outerHTML.slice(0, 80))""")
        assert injected == [], (path, injected)
        assert dialogs == [] and page.errors == [], (path, dialogs, page.errors)
        assert "{{ 7*7 }}" in page.locator(".md-content").inner_text(), path  # shown as written: no template ran
    page.goto(base + experiments[0] + "step-1/")
    assert HOSTILE[1] in page.locator(".td-tokens").first.inner_text()
    assert page.locator(".td-meta dt", has_text=HOSTILE[0]).count() >= 1


@pytest.mark.browser
def test_a_cut_token_says_so_on_hover(page, tmp_path, serve):
    write_step(tmp_path / "results", "exp", 1, [trajectory(1, 0, [tok("a"), tok("Q" * 5000, True, 2.0), tok("b")])])
    site = build_site(tmp_path)
    page.goto(serve(site) + "runs/exp/step-1/")
    token = page.locator(".td-tokens i[data-cut]")
    assert token.inner_text() == "Q" * 1000
    token.hover()
    assert "the first 1,000 of 5,000 characters shown" in page.locator(".td-tip").inner_text()
    href = page.locator(".td-cut-texts a").get_attribute("href")  # Material makes links absolute
    assert href.endswith("/runs/exp/texts/step-1.json")
    assert page.request.get(href).json()["trajectory 0 token 1"] == "Q" * 5000  # the whole token, one click away
    assert page.errors == []
