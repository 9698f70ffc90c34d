"""A run's views (verl's training and validation dumps) as one experiment: discovery's rule for
merging sibling folders, the site's pages, URLs and links, and grouping of verl samples."""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build_site, read
from test_real_shapes import compare_step, has_class, parse_page, shown_trajectories, step_pages
from trajdocs import demo
from trajdocs.discover import find_experiments
from trajdocs.formats import ReadContext, read_step
from trajdocs.formats.common import Problems
from trajdocs.formats.verl import read as read_verl


def verl_line(prompt: str, answer: str, score: float, step: int, validation: bool = False, **extra) -> str:
    """A line of verl's `_dump_generations` (validation adds `reward` = score)."""
    entry = {"input": prompt, "output": answer, "gts": "72", "score": score, "step": step}
    if validation:
        entry["reward"] = score
    entry.update(extra)
    return json.dumps(entry, ensure_ascii=False)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def verl_run(root: Path, name: str = "exp", train: str = "rollout_data", val: str = "validation_data",
             reward_in_val: bool = True) -> None:
    for step in (1, 2):
        write_lines(root / name / train / f"{step}.jsonl",
                    [verl_line(f"Q{i % 2}", f"train {step}.{i}", float(i % 2), step) for i in range(4)])
    for step in (0, 2):
        write_lines(root / name / val / f"{step}.jsonl",
                    [verl_line(f"V{i // 2}", f"val {step}.{i}", float(i % 2), step, validation=reward_in_val)
                     for i in range(4)])


def names(root: Path) -> dict[str, tuple[str, str, str]]:
    return {e.name: (e.slug, e.view, e.run) for e in find_experiments([str(root)])}


# --- discovery's rule ---------------------------------------------------------------------------

def test_sibling_rollout_and_validation_folders_are_one_run(tmp_path):
    verl_run(tmp_path / "results")
    assert names(tmp_path / "results") == {"exp [train]": ("exp/train", "train", "exp"),
                                          "exp [validation]": ("exp/validation", "validation", "exp")}


@pytest.mark.parametrize("case", ["no reward in validation lines", "two training folders", "folder names unknown",
                                  "parent has its own steps"])
def test_unsure_pairs_stay_apart(tmp_path, case):
    root = tmp_path / "results"
    if case == "no reward in validation lines":
        verl_run(root, reward_in_val=False)
    elif case == "two training folders":
        verl_run(root)
        write_lines(root / "exp" / "train_data" / "1.jsonl", [verl_line("Q", "a", 1.0, 1)])
    elif case == "folder names unknown":
        verl_run(root, train="dump_a", val="dump_b")
    else:
        verl_run(root)
        write_lines(root / "exp" / "3.jsonl", [verl_line("Q", "a", 1.0, 3)])
    found = names(root)
    assert all(view == "" and run == "" for _, view, run in found.values()), found
    assert "exp/rollout_data" in found or "exp/dump_a" in found


def test_views_of_a_run_stay_together_training_first(tmp_path):
    """A folder sorting between the two dump folders does not split the run's views."""
    root = tmp_path / "results"
    verl_run(root)
    write_lines(root / "exp" / "sample" / "4.jsonl", [verl_line("Q", "a", 1.0, 4)])
    assert [e.name for e in find_experiments([str(root)])] == ["exp [train]", "exp [validation]", "exp/sample"]


# --- the site -----------------------------------------------------------------------------------

def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


def resolves(site: Path, page_url: str, href: str) -> bool:
    """Whether a relative link from the page at `page_url` (a site URL ending in '/') leads to a file."""
    target = href.split("#")[0]
    path = posixpath.normpath(posixpath.join(page_url, target)) if target else page_url.rstrip("/")
    where = site / path
    return (where / "index.html").is_file() if where.is_dir() else where.is_file()


@pytest.fixture(scope="module")
def verl_site(tmp_path_factory):
    project = tmp_path_factory.mktemp("views")
    demo.write_demo(str(project / "results"), demo.DemoOptions(experiments=1, steps=5, trajectories=8, min_tokens=20,
                                                               max_tokens=60, kinds=("verl",)))
    return project, build_site(project)


def test_one_experiment_page_with_a_section_per_view(verl_site):
    project, site = verl_site
    runs = site / "runs"
    assert sorted(p.name for p in (runs / "verl-dapo-math").iterdir()) == ["index.html", "train", "validation"]
    page = read(runs / "verl-dapo-math" / "index.html")
    assert page.index('id="view-train"') < page.index('id="view-validation"')
    assert "Mean reward by view" in page
    for step in (1, 2, 3, 4, 5):
        assert f'href="train/step-{step}/"' in page
    for step in (0, 4, 5):  # before training, every test_freq steps, the last
        assert f'href="validation/step-{step}/"' in page
    assert 'href="validation/steps.csv"' in page and (runs / "verl-dapo-math" / "validation" / "steps.csv").is_file()
    bad = [h for h in hrefs(page) if not h.startswith(("http", "#", "mailto")) and "assets" not in h
           and not resolves(site, "runs/verl-dapo-math/", h)]
    assert not bad, bad
    # one nav entry for the run, none for its views
    nav = re.findall(r'href="(?:\.\./)*runs/verl-dapo-math/[^"]*"', read(site / "index.html"))
    assert nav and all(h.endswith('runs/verl-dapo-math/"') for h in nav), nav
    overview = read(runs / "index.html")
    assert 'href="verl-dapo-math/#view-train"' in overview and 'href="verl-dapo-math/#view-validation"' in overview


def test_step_pages_link_within_their_view_and_across_views(verl_site):
    _, site = verl_site
    folder = site / "runs" / "verl-dapo-math"
    val0 = read(folder / "validation" / "step-0" / "index.html")
    assert "Step 0 · validation" in val0
    assert 'class="td-up" href="../../#view-validation"' in val0
    assert 'href="../step-4/" rel="next"' in val0
    assert 'href="../../#view-train">train (no step 0)' in val0  # training starts at step 1
    val4 = read(folder / "validation" / "step-4" / "index.html")
    assert 'href="../../train/step-4/">train: step 4' in val4
    train4 = read(folder / "train" / "step-4" / "index.html")
    assert 'href="../../validation/step-4/">validation: step 4' in train4
    for name, html in (("validation/step-0/", val0), ("validation/step-4/", val4), ("train/step-4/", train4)):
        bad = [h for h in hrefs(html) if not h.startswith(("http", "#", "data:")) and "assets" not in h
               and not resolves(site, f"runs/verl-dapo-math/{name}", h)]
        assert not bad, (name, bad)


def test_every_view_page_equals_its_file(verl_site):
    project, site = verl_site
    failures, checked = [], 0
    for exp in find_experiments([str(project / "results")]):
        for step in exp.steps:
            failures += compare_step(Path(step.path), step_pages(site, exp.slug, step.step))
            checked += 1
    assert checked == 5 + 3 and not failures, failures[:10]


def test_view_urls_never_collide_with_a_folder_of_that_name(tmp_path):
    """A LightRFT experiment in `exp/train/` and the run `exp`'s view "train" get different URLs."""
    root = tmp_path / "results"
    verl_run(root)
    from conftest import simple_run
    simple_run(root, "exp/train", [1])
    site = build_site(tmp_path)
    slugs = {e.name: e.slug for e in find_experiments([str(root)])}
    assert slugs["exp [train]"] != slugs["exp/train"]
    assert (site / "runs" / slugs["exp/train"] / "step-1" / "index.html").is_file()
    assert "train 1.0" in read(site / "runs" / slugs["exp [train]"] / "step-1" / "index.html")


# --- grouping -----------------------------------------------------------------------------------

def groups_of(lines: list[str], folder: str = "rollout_data") -> list[list[int]]:
    from trajdocs.stats import group_trajectories

    trajectories = read_verl("\n".join(lines).encode(), Problems(), ReadContext(path=f"/r/exp/{folder}/3.jsonl"))
    return [[t.index for t in g] for g in group_trajectories(trajectories)]


def test_a_balanced_training_dump_groups_by_input():
    """verl's _balance_batch reorders the batch: the samples of a prompt are not adjacent."""
    order = [0, 4, 1, 5, 2, 6, 3, 7]  # prompts A (0-3) and B (4-7) interleaved by balancing
    lines = [verl_line("A" if i < 4 else "B", f"r{i}", 1.0, 3) for i in order]
    assert groups_of(lines) == [[0, 2, 4, 6], [1, 3, 5, 7]]


def test_uid_decides_the_group_where_a_line_has_one():
    lines = [verl_line("same", f"r{i}", 1.0, 3, uid=f"u{i % 2}") for i in range(4)]
    assert groups_of(lines) == [[0, 2], [1, 3]]


def test_validation_groups_adjacent_lines():
    """Each prompt's n samples are adjacent (interleaved repeat); a prompt the validation set holds
    twice is two groups, not one."""
    lines = [verl_line(p, f"r{i}", 1.0, 0, validation=True) for i, p in enumerate("AABBAA")]
    assert groups_of(lines, "validation_data") == [[0, 1], [2, 3], [4, 5]]
    # the same lines in a training dump (no `reward`, training folder): by input
    train = [verl_line(p, f"r{i}", 1.0, 0) for i, p in enumerate("AABBAA")]
    assert groups_of(train) == [[0, 1, 4, 5], [2, 3]]


def test_grouped_pages_of_a_balanced_dump(tmp_path):
    root = tmp_path / "results"
    order = [0, 4, 1, 5, 2, 6, 3, 7]
    write_lines(root / "exp" / "rollout_data" / "1.jsonl",
                [verl_line("A" if i < 4 else "B", f"r{i}", float(i % 2), 1) for i in order])
    site = build_site(tmp_path)
    root_node = parse_page(site / "runs" / "exp" / "rollout_data" / "step-1" / "index.html")
    groups = root_node.find_all(has_class("td-group"))
    assert [[int(s.attrs["data-index"]) for s in g.find_all(has_class("td-traj"))] for g in groups] == \
        [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert len(shown_trajectories([site / "runs" / "exp" / "rollout_data" / "step-1" / "index.html"])) == 8


def test_check_lists_the_views(tmp_path):
    verl_run(tmp_path / "results")
    done = subprocess.run([sys.executable, "-m", "trajdocs", "check", str(tmp_path / "results")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exp [train]: 2 steps (1–2)" in done.stdout and "exp [validation]: 2 steps (0–2)" in done.stdout
    assert read_step(find_experiments([str(tmp_path / "results")])[1].steps[0]).trajectories[0].group == "adjacent 0"


# --- views a format's paths give (any format with a `view` group) --------------------------------

@pytest.fixture
def viewed_format(monkeypatch):
    """A format claiming `<log_dir>/{train,val}_data_step<N>.jsonl` (NeMo-RL's layout) with verl's
    reader: files whose PATH has a `view` group. Read in this process (workers: 1)."""
    import types

    from trajdocs import formats
    from trajdocs.formats import verl

    module = types.SimpleNamespace(
        NAME="viewed", PATH=re.compile(r"(?P<view>train|val)_data_step(?P<step>\d+)\.jsonl"), SUFFIX=".jsonl",
        NAMES_TEXT="viewed files", TOKEN_CHANNELS=(), FIELDS=(), series=lambda m: "viewed", read=verl.read)
    monkeypatch.setitem(formats.FORMATS, "viewed", module)
    anchored = {"viewed": re.compile(r"(?:\A|(?<=/))(?:" + module.PATH.pattern + r")\Z")}
    monkeypatch.setattr(formats, "_ANCHORED", {**anchored, **formats._ANCHORED})


def test_a_formats_views_are_one_experiment(tmp_path, viewed_format):
    root = tmp_path / "results"
    for step in (1, 2, 3):
        write_lines(root / "logs" / f"train_data_step{step}.jsonl", [verl_line("Q", f"t{step}", 1.0, step)])
    for step in (2,):
        write_lines(root / "logs" / f"val_data_step{step}.jsonl", [verl_line("V", f"v{step}", 0.5, step)])
    assert names(root) == {"logs [train]": ("logs/train", "train", "logs"), "logs [val]": ("logs/val", "val", "logs")}
    site = build_site(tmp_path, plugin={"runs": "results", "workers": 1})
    page = read(site / "runs" / "logs" / "index.html")
    assert page.index('id="view-train"') < page.index('id="view-val"')
    assert 'href="val/step-2/"' in page and 'href="train/step-3/"' in page
    val2 = read(site / "runs" / "logs" / "val" / "step-2" / "index.html")
    assert "v2" in val2 and 'href="../../train/step-2/">train: step 2' in val2
    train1 = read(site / "runs" / "logs" / "train" / "step-1" / "index.html")
    assert 'href="../../#view-val">val (no step 1)' in train1
