"""Real MkDocs builds (Material and the plain mkdocs theme) of fixture runs, asserting on the HTML."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from mkdocs.exceptions import Abort

from conftest import build_site, read, steps_table, simple_run, tok, tokens_in, trajectory, write_step

HOSTILE = ["<script>alert(1)</script>", "</s>", "<think>", "&amp;", "&lt;b&gt;", " ", "", "\n\n", "\r\n",
           "\ufffd", "中文", "🤔", "e\u0301", "\u2028", "\t", '"quoted"', "'", "a" * 300, "<!--", "]]>"]


def stats_of(tokens: list[dict]) -> tuple[int, int, float | None]:
    scores = [t["entropy_score"] for t in tokens if "entropy_score" in t]
    return len(tokens), sum(t["high_entropy"] for t in tokens), (sum(scores) / len(scores) if scores else None)


def step_stats(html: str) -> list[list[str]]:
    return [re.findall(r"<dd>(.*?)</dd>", block) for block in re.findall(r'<dl class="td-stats">(.*?)</dl>', html)]


@pytest.fixture
def two_experiments(tmp_path: Path) -> dict:
    """Two experiments, steps with gaps and out-of-order names, trajectories of varied shapes."""
    runs = tmp_path / "results"
    inputs: dict = {}
    for exp, steps in (("exp-a", (5, 10, 100)), ("exp-b", (1, 2))):
        for step in steps:
            records = []
            for i in range(3):
                tokens = [tok(f" w{j}", high=(j + i) % 4 == 0, score=round(0.5 + j * 0.37 + i, 3) if (j + i) % 4 == 0 else None)
                          for j in range(7 + i * 3)]
                records.append(trajectory(step, i, tokens, reward=[0.0, 1.0, 0.5][i]))
            write_step(runs, exp, step, records)
            inputs[(exp, step)] = records
    return {"project": tmp_path, "inputs": inputs}


def test_every_step_has_a_page_and_statistics_match_input(two_experiments):
    site = build_site(two_experiments["project"], strict=True)
    for (exp, step), records in two_experiments["inputs"].items():
        html = read(site / "runs" / exp / f"step-{step}" / "index.html")
        shown = step_stats(html)
        assert len(shown) == len(records)
        for record, cells in zip(records, shown):
            # LightRFT's saver: the flags and scores of the response tokens and the end-of-sequence token
            total, high, mean = stats_of(record["generated_tokens"])
            assert cells[0] == str(total)
            assert cells[1] == str(high)
            assert cells[2] == f"{100 * high / total:.1f}%"
            assert float(cells[3]) == pytest.approx(mean, abs=1e-4)
        # the tokens shown are exactly the pure tokens' texts, once each (not generated_tokens again)
        containers = tokens_in(html)
        assert [[t["text"] for t in c] for c in containers] == \
            [[t["text"] for t in r["pure_generated_tokens"]] for r in records]


def test_experiment_table_lists_steps_in_numeric_order_with_aggregates(two_experiments):
    site = build_site(two_experiments["project"])
    html = read(site / "runs" / "exp-a" / "index.html")
    rows = re.findall(r"<tr><td><a href=\"([^\"]+)\">(\d+)</a></td><td>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td>"
                      r"<td>([^<]+)</td><td>([^<]+)</td>", html)
    assert [int(r[1]) for r in rows] == [5, 10, 100]
    for href, step, count, reward, accuracy, length, ratio in rows:
        records = two_experiments["inputs"][("exp-a", int(step))]
        assert href == f"step-{step}/"
        assert (site / "runs" / "exp-a" / href / "index.html").exists()
        assert int(count) == len(records)
        assert float(reward) == pytest.approx(sum(r["info"]["reward"] for r in records) / len(records), abs=1e-4)
        assert float(accuracy) == pytest.approx(sum(r["info"]["reward_metrics"]["accuracy"] for r in records) / len(records))
        assert float(length) == pytest.approx(sum(r["response_token_count"] for r in records) / len(records), abs=1e-4)
        tokens = [t for r in records for t in r["generated_tokens"]]  # response tokens and end of sequence
        assert ratio == f"{100 * sum(t['high_entropy'] for t in tokens) / len(tokens):.1f}%"


def test_overview_lists_every_experiment(two_experiments):
    site = build_site(two_experiments["project"])
    html = read(site / "runs" / "index.html")
    for exp, first, last, steps in (("exp-a", 5, 100, 3), ("exp-b", 1, 2, 2)):
        row = re.search(rf'<tr><td><a href="{exp}/"><span class="td-seg">{exp}</span></a></td><td>(\d+)</td><td>(\d+)–(\d+)</td><td>(\d+)</td>', html)
        assert row, exp
        assert (int(row[1]), int(row[2]), int(row[3]), int(row[4])) == (steps, first, last, steps * 3)


def test_step_links_prev_next_and_up(two_experiments):
    site = build_site(two_experiments["project"])
    page = site / "runs" / "exp-a" / "step-10" / "index.html"
    html = read(page)
    assert 'href="../step-5/" rel="prev"' in html
    assert 'href="../step-100/" rel="next"' in html
    assert 'class="td-up" href="../"' in html
    first = read(site / "runs" / "exp-a" / "step-5" / "index.html")
    assert 'rel="prev"' not in first and 'rel="next"' in first


def test_metadata_shows_zero_and_summarises_per_token_lists(tmp_path):
    lists = [0.1 * i for i in range(1500)]
    record = trajectory(3, 0, [tok("a", True, 1.0), tok("b")], experience_index=0, sample_in_exp=0,
                        advantages=lists, action_log_probs=[-x for x in lists], policy_entropy=0.25,
                        info={"reward": 0.75, "kl": 0.01, "reward_metrics": {"format": 1.0, "acc": 0.0}})
    write_step(tmp_path / "results", "exp", 3, [record])
    html = read(build_site(tmp_path) / "runs" / "exp" / "step-3" / "index.html")
    assert "<dt>experience_<wbr>index</dt><dd>0</dd>" in html  # <wbr>: keys break only after "_" and "."
    assert "<dt>sample_<wbr>in_<wbr>exp</dt><dd>0</dd>" in html
    assert "<dt>reward_<wbr>metrics.<wbr>acc</dt><dd>0</dd>" in html
    assert "<dt>kl</dt><dd>0.01</dd>" in html
    assert "list of 1500; mean 74.95, min 0, max 149.9" in html
    assert "list of 1500; mean -74.95, min -149.9, max 0" in html
    assert "149.8" not in html  # not dumped value by value
    assert '<details class="td-prompt"><summary>Prompt</summary>' in html  # collapsed by default


def test_token_text_is_escaped_and_round_trips(tmp_path):
    tokens = [tok(t, high=i % 3 == 0, score=float(i) if i % 3 == 0 else None) for i, t in enumerate(HOSTILE)]
    record = trajectory(1, 0, tokens, label="<img src=x onerror=alert(1)>", reference="<b>72</b>")
    write_step(tmp_path / "results", "exp", 1, [record])
    html = read(build_site(tmp_path, strict=True) / "runs" / "exp" / "step-1" / "index.html")
    (shown,) = tokens_in(html)
    assert [t["text"] for t in shown] == HOSTILE
    assert "".join(t["text"] for t in shown) == "".join(HOSTILE)
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>72" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_nav_stays_small_and_lists_no_step(tmp_path):
    def nav_of(project: Path, steps: int) -> str:
        simple_run(project / "results", "exp", range(1, steps + 1))
        html = read(build_site(project) / "index.html")
        return re.search(r'<nav class="md-nav md-nav--primary".*?</nav>\s*</div>\s*</div>\s*</div>', html, re.S).group(0)

    small, large = nav_of(tmp_path / "a", 3), nav_of(tmp_path / "b", 40)
    assert "step-" not in large
    assert len(large) == len(small)
    assert 'href="runs/exp/"' in large and 'href="runs/"' in large


def test_user_written_nav_is_respected(tmp_path):
    simple_run(tmp_path / "results", "exp", (1, 2))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n")
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n")
    site = build_site(tmp_path, nav=[{"Start": "index.md"}, {"More": [{"All runs": "runs/index.md"}]}])
    html = read(site / "guide" / "index.html")
    nav = re.search(r'<nav class="md-nav md-nav--primary".*?</nav>\s*</div>\s*</div>\s*</div>', html, re.S).group(0)
    assert "All runs" in nav and "Start" in nav and "More" in nav
    assert "Guide" not in nav and "step-" not in nav
    assert 'href="../runs/exp/"' in nav  # the overview entry became the runs section
    assert (site / "runs" / "exp" / "step-2" / "index.html").exists()
    site = build_site(tmp_path, nav=[{"Start": "index.md"}])
    assert "runs/" not in re.search(r'<nav class="md-nav md-nav--primary".*?</nav>', read(site / "index.html"), re.S).group(0)
    assert (site / "runs" / "exp" / "index.html").exists()


def test_step_pages_are_excluded_from_search_but_indexes_are_searchable(two_experiments):
    site = build_site(two_experiments["project"])
    index = json.loads(read(site / "search" / "search_index.json"))
    locations = {d["location"].split("#")[0] for d in index["docs"]}
    assert "runs/" in locations and "runs/exp-a/" in locations
    assert not [loc for loc in locations if "step-" in loc]
    assert " w3" not in read(site / "search" / "search_index.json")


def test_plain_mkdocs_theme(two_experiments):
    site = build_site(two_experiments["project"], theme="mkdocs", strict=True)
    html = read(site / "runs" / "exp-a" / "step-10" / "index.html")
    assert 'assets/trajdocs/trajdocs.css' in html and 'assets/trajdocs/trajdocs.js' in html
    assert len(tokens_in(html)) == 3
    assert (site / "assets" / "trajdocs" / "trajdocs.js").exists()
    assert 'href="step-100/"' in steps_table(read(site / "runs" / "exp-a" / "index.html"))


def test_directory_urls_off(two_experiments):
    site = build_site(two_experiments["project"], use_directory_urls=False)
    html = read(site / "runs" / "exp-a" / "step-10.html")
    assert 'href="step-5.html" rel="prev"' in html and 'href="index.html"' in html
    assert 'href="step-100.html"' in read(site / "runs" / "exp-a" / "index.html")


def test_docs_dir_is_never_written(two_experiments):
    docs = two_experiments["project"] / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n")
    before = sorted(p.name for p in docs.rglob("*"))
    build_site(two_experiments["project"])
    assert sorted(p.name for p in docs.rglob("*")) == before


def test_several_roots_and_nested_experiments(tmp_path):
    simple_run(tmp_path / "results", "exp", (1,))
    simple_run(tmp_path / "old" / "results", "exp", (7,))
    (tmp_path / "results" / "empty-exp" / "trajectories").mkdir(parents=True)
    site = build_site(tmp_path, plugin={"runs": ["results", "old/results"]})
    overview = read(site / "runs" / "index.html")
    seg = '<span class="td-seg">{}</span>'.format  # each folder of a name kept whole, a break after "/"
    assert f">{seg('results')}/<wbr>{seg('exp')}</a>" in overview
    assert f">{seg('old')}/<wbr>{seg('results')}/<wbr>{seg('exp')}</a>" in overview
    assert (site / "runs" / "results" / "exp" / "step-1" / "index.html").exists()
    assert (site / "runs" / "old" / "results" / "exp" / "step-7" / "index.html").exists()
    assert "empty-exp" not in overview


def test_any_prefix_and_numeric_order(tmp_path):
    for step in (9, 10, 1):
        write_step(tmp_path / "results", "exp", step, [trajectory(step, 0, [tok("x", True, 1.0)])], prefix="rollouts")
    site = build_site(tmp_path)
    html = steps_table(read(site / "runs" / "exp" / "index.html"))
    assert re.findall(r'<a href="step-(\d+)/">', html) == ["1", "9", "10"]


def test_broken_step_warns_keeps_the_rest_and_fails_strict(tmp_path, warnings_logged):
    simple_run(tmp_path / "results", "exp", (1, 3))
    path = write_step(tmp_path / "results", "exp", 2, '[\n  {\n    "global_step": 2,\n    "generated_tok')
    site = build_site(tmp_path)
    assert any(str(path) in m and "line 4" in m for m in warnings_logged), warnings_logged
    table = read(site / "runs" / "exp" / "index.html")
    assert "unreadable" in table
    assert (site / "runs" / "exp" / "step-3" / "index.html").exists()
    assert "Unreadable step file" in read(site / "runs" / "exp" / "step-2" / "index.html")
    with pytest.raises(Abort):
        build_site(tmp_path, strict=True)


def test_nan_values_read_and_stay_out_of_means(tmp_path):
    text = json.dumps([trajectory(1, 0, [tok("a", True, 2.0), tok("b", True, float("nan"))], reward=float("nan")),
                       trajectory(1, 1, [tok("c", True, 4.0)], reward=1.0, advantages=float("inf"))])
    assert "NaN" in text and "Infinity" in text
    write_step(tmp_path / "results", "exp", 1, text)
    site = build_site(tmp_path, strict=True)
    table = read(site / "runs" / "exp" / "index.html")
    row = re.search(r'step-1/">1</a></td><td>2</td><td>([^<]+)</td>', table)
    assert row and float(row[1]) == 1.0
    html = read(site / "runs" / "exp" / "step-1" / "index.html")
    assert "<dt>advantages</dt><dd class=\"td-single\" title=\"one value for the trajectory, not a list per token\">∞</dd>" in html and "reward NaN" in html
    assert math.isclose(float(step_stats(html)[0][3]), 2.0)


def test_worker_processes_give_the_same_site_as_one_process(tmp_path, caplog):
    pages = {}
    for workers in (1, 2):
        project = tmp_path / f"w{workers}"
        simple_run(project / "results", "exp", range(1, 9), per_step=3)
        with caplog.at_level("INFO", logger="mkdocs.plugins.trajdocs"):
            site = build_site(project, plugin={"runs": "results", "workers": workers, "cache": False,
                                               "trajectories_per_page": 2})
        assert ("8 read, 8 of them by worker processes" in caplog.text) == (workers == 2), caplog.text
        caplog.clear()
        pages[workers] = {p.relative_to(site).as_posix(): read(p) for p in (site / "runs").rglob("*.html")}
    # 8 steps of 2 pages (the last step's pages rendered while MkDocs writes pages), experiment, overview, prompts
    assert len(pages[1]) == 19 and pages[1].keys() == pages[2].keys()
    for name, html in pages[1].items():
        assert pages[2][name].replace("w2", "w1") == html, name


def test_a_failing_worker_falls_back_to_this_process(tmp_path, monkeypatch):
    import sys
    simple_run(tmp_path / "results", "exp", range(1, 9))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    site = build_site(tmp_path, plugin={"runs": "results", "workers": 2}, strict=True)
    assert len(list((site / "runs" / "exp").glob("step-*/index.html"))) == 8


def test_cache_reuses_entries_and_prunes_only_its_own_files(tmp_path, caplog):
    simple_run(tmp_path / "results", "exp", (1, 2, 3))
    cache = tmp_path / "mycache"
    cache.mkdir()
    (cache / "notes.html").write_text("mine")
    (cache / "data.json").write_text("{}")
    plugin = {"runs": "results", "cache_dir": "mycache", "workers": 1}
    build_site(tmp_path, plugin=plugin)
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 2 + 3 * 3 + 2, entries  # ours: the entry, the search shard and the page per step; the downloads
    write_step(tmp_path / "results", "exp", 2, [trajectory(2, 0, [tok("changed", True, 1.0)])])
    with caplog.at_level("INFO", logger="mkdocs.plugins.trajdocs"):
        site = build_site(tmp_path, plugin=plugin)
    assert "(1 read, 2 from cache)" in caplog.text
    assert "changed" in read(site / "runs" / "exp" / "step-2" / "index.html")
    assert (cache / "notes.html").read_text() == "mine" and (cache / "data.json").exists()
    assert len(list(cache.iterdir())) == 2 + 3 * 3 + 2  # the old entries of step 2 are gone


def test_a_cut_or_damaged_cache_entry_is_read_again(tmp_path, caplog):
    simple_run(tmp_path / "results", "exp", (1, 2, 3))
    plugin = {"runs": "results", "workers": 1}
    first = read(build_site(tmp_path, plugin=plugin) / "runs" / "exp" / "step-2" / "index.html")
    entries = sorted((tmp_path / ".cache" / "trajdocs").glob("*.entry"))
    assert len(entries) == 3
    entries[0].write_bytes(entries[0].read_bytes()[:-5])  # cut short
    entries[1].write_bytes(b"not an entry\n" + entries[1].read_bytes())
    with caplog.at_level("INFO", logger="mkdocs.plugins.trajdocs"):
        site = build_site(tmp_path, plugin=plugin, strict=True)
    assert "(2 read, 1 from cache)" in caplog.text
    assert read(site / "runs" / "exp" / "step-2" / "index.html") == first


def test_search_shards_are_linked_from_the_cache_and_a_shard_changed_in_place_is_made_again(tmp_path, caplog):
    simple_run(tmp_path / "results", "exp", (1, 2))
    plugin = {"runs": "results", "workers": 1}
    site = build_site(tmp_path, plugin=plugin)
    shard = site / "runs" / "exp" / "search" / "step-1.js"
    whole = shard.read_bytes()
    kept = [p for p in (tmp_path / ".cache" / "trajdocs").glob("*.search.js") if p.samefile(shard)]
    assert len(kept) == 1
    with open(shard, "r+b") as f:  # what a plugin that rewrites the site's scripts in place would do
        f.write(b"/* minified */")
    with caplog.at_level("INFO", logger="mkdocs.plugins.trajdocs"):
        site = build_site(tmp_path, plugin=plugin)
    assert "(1 read, 1 from cache)" in caplog.text
    assert shard.read_bytes() == whole


def test_unchanged_step_pages_are_linked_not_rewritten_and_never_written_through(tmp_path):
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    simple_run(tmp_path / "results", "exp", (1, 2))
    plugin = {"runs": "results", "workers": 1}
    site = build_site(tmp_path, plugin=plugin)
    page = site / "runs" / "exp" / "step-1" / "index.html"
    html = read(page)
    kept = [p for p in (tmp_path / ".cache" / "trajdocs").glob("*.page.html") if p.samefile(page)]
    assert len(kept) == 1 and "td-tokens" in html
    first = page.stat().st_ino
    site = build_site(tmp_path, plugin=plugin)
    assert page.stat().st_ino == first and read(page) == html  # the same page again: linked, not written
    page.write_text("changed in place")  # through the link: the cache's copy no longer fits
    site = build_site(tmp_path, plugin=plugin)
    assert read(page) == html
    config = load_config(str(tmp_path / "mkdocs.yml"))
    build(config, dirty=True)  # MkDocs writes pages over the old ones (with its own dirty-build chrome)
    assert "td-tokens" in read(page)
    kept = list((tmp_path / ".cache" / "trajdocs").glob("*.page.html"))
    assert kept and all("td-tokens" in read(p) for p in kept)  # no page of the cache overwritten by MkDocs


def test_without_hard_links_pages_are_written(tmp_path, monkeypatch):
    import errno
    import os

    def no_links(src, dst, *args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)  # the cache on another file system than the site
    simple_run(tmp_path / "results", "exp", (1, 2))
    for _ in range(2):
        site = build_site(tmp_path, plugin={"runs": "results", "workers": 1}, strict=True)
        page = site / "runs" / "exp" / "step-2" / "index.html"
        assert "td-tokens" in read(page) and 'href="../step-1/"' in read(page)
    assert not list((tmp_path / ".cache" / "trajdocs").glob("*.page.html"))
