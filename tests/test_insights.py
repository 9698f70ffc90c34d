"""Training insight across steps and experiments, on real builds (and real Chromium)."""

from __future__ import annotations

import csv
import io
import json
import math
import random
import re
from pathlib import Path

import pytest

from conftest import build_site, read, tok, trajectory, wait_for_step, write_step
from trajdocs.charts import MAX_POINTS, Point, Series, line_chart, sparkline

REWARDS = {5: [0.0, 0.5], 10: [1.0, 1.0], 20: [0.25, 0.75]}


def record(step: int, i: int, reward: float, tokens: list[dict], prompt: str = "Q", **extra) -> dict:
    r = trajectory(step, i, tokens, reward=reward, **extra)
    text = "".join(t["text"] for t in tokens)
    r["full_sequence"] = f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{text}<|im_end|>"
    return r


@pytest.fixture
def run_site(tmp_path: Path) -> dict:
    runs = tmp_path / "results"
    inputs = {}
    for step, rewards in REWARDS.items():
        records = [record(step, i, r, [tok(" Wait", True, 2.0 + i), tok(" so"), tok(" Wait", i == 0, 3.0 if i == 0 else None)],
                          prompt=f"question {step % 10}", policy_entropy=0.5 + step / 100,
                          info={"reward": r, "reward_metrics": {"accuracy": float(r >= 0.5)}})
                   for i, r in enumerate(rewards)]
        write_step(runs, "exp-a", step, records)
        inputs[step] = records
    write_step(runs, "exp-b", 5, [record(5, 0, 0.9, [tok("x", True, 1.0)], prompt="question 5")])
    site = build_site(tmp_path, strict=True)
    return {"site": site, "inputs": inputs, "project": tmp_path}


def chart_points(html: str, caption: str) -> list[dict]:
    start = html.index(f"<figcaption>{caption}</figcaption>")
    figure = html[start:html.index("</figure>", start)]
    return [dict(re.findall(r'(data-x|data-y|href|class)="([^"]*)"', m)) for m in re.findall(r'<a [^>]*class="td-pt[^>]*>', figure)]


def test_chart_points_match_the_step_aggregates_and_link_to_steps(run_site):
    site, inputs = run_site["site"], run_site["inputs"]
    html = read(site / "runs" / "exp-a" / "index.html")
    points = chart_points(html, "Mean reward and accuracy")
    reward = [p for p in points if "td-s0" in p["class"]]
    accuracy = [p for p in points if "td-s1" in p["class"]]
    assert [int(float(p["data-x"])) for p in reward] == sorted(REWARDS)
    for p, step in zip(reward, sorted(REWARDS)):
        assert float(p["data-y"]) == pytest.approx(sum(REWARDS[step]) / len(REWARDS[step]))
        assert p["href"] == f"step-{step}/" and (site / "runs" / "exp-a" / p["href"] / "index.html").exists()
    assert [float(p["data-y"]) for p in accuracy] == [0.5, 1.0, 0.5]
    length = chart_points(html, "Mean response length (tokens)")
    assert [float(p["data-y"]) for p in length] == [3.0, 3.0, 3.0]
    ratio = chart_points(html, "High-entropy ratio")
    for p in ratio:
        records = inputs[int(float(p["data-x"]))]
        tokens = [t for r in records for t in r["generated_tokens"]]  # response tokens and end of sequence
        assert float(p["data-y"]) == pytest.approx(sum(t["high_entropy"] for t in tokens) / len(tokens))
    policy = chart_points(html, "Policy entropy")
    assert [float(p["data-y"]) for p in policy] == pytest.approx([0.55, 0.6, 0.7])
    assert "Entropy scores over steps" in html and "Entropy score distribution: first, middle and last step" in html


def test_forking_tokens_counted_as_by_hand(run_site):
    html = read(run_site["site"] / "runs" / "exp-a" / "index.html")
    table = html[html.index('<table class="td-table td-sortable td-forking">'):]
    rows = re.findall(r'<tr><td><code class="td-tok">([^<]*)</code></td><td data-sort="(\d+)">\d+</td>'
                      r'<td data-sort="(\d+)">\d+</td><td[^>]*>([^<]+)</td><td[^>]*>([^<]+)</td>', table)
    # per step, two trajectories: " Wait"(flagged, 2.0 / 3.0), " so", " Wait"(flagged only in the first, 3.0)
    # => "Wait": 4 occurrences and 3 flagged per step, scores 2.0 + 3.0 + 3.0
    assert rows[0] == ("Wait", "9", "12", "75.0%", "2.667")  # a mean: four significant digits
    assert not [r for r in rows if r[0] == "so"]  # never flagged


def test_recurring_prompts_page(run_site):
    site = run_site["site"]
    html = read(site / "runs" / "prompts" / "index.html")
    sections = re.findall(r'<section class="td-prompt-use".*?</section>', html, re.S)
    # "question 5" at steps 5 (exp-a) and 5 (exp-b), "question 0" at steps 10 and 20 of exp-a
    assert len(sections) == 2
    q0 = next(s for s in sections if "question 0" in s)
    rows = re.findall(r'<tr><td>([^<]*)</td><td><a href="([^"]+)">(\d+)</a></td><td>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td>', q0)
    assert [(r[0], r[2], r[3], r[4], r[5]) for r in rows] == [("exp-a", "10", "2", "1", "1"), ("exp-a", "20", "2", "0.5", "0.75")]
    assert rows[1][1] == "../exp-a/step-20/#traj-1"
    q5 = next(s for s in sections if "question 5" in s)
    assert "exp-b" in q5 and "exp-a" in q5
    assert "Prompt seen at 2 steps" in q5


def test_downloads_and_comparison(run_site):
    site = run_site["site"]
    rows = list(csv.DictReader(io.StringIO(read(site / "runs" / "exp-a" / "steps.csv"))))
    assert [int(r["step"]) for r in rows] == sorted(REWARDS)
    assert [float(r["mean_reward"]) for r in rows] == [0.25, 1.0, 0.5]
    data = json.loads(read(site / "runs" / "exp-a" / "steps.json"))
    assert [d["mean_accuracy"] for d in data] == [0.5, 1.0, 0.5] and len(data[0]["histogram"]) == 41
    overview = read(site / "runs" / "index.html")
    points = chart_points(overview, "Mean reward")
    assert {p["class"].split()[-1] for p in points} == {"td-s0", "td-s1"}  # one line per experiment
    assert "exp-b/step-5/" in {p["href"] for p in points}
    table = overview[overview.index('<table class="td-table td-sortable td-compare">'):]
    assert re.search(r'>exp-a</span></a></td><td>20</td><td data-sort="0.5">0.5</td><td data-sort="1.0">1 \(10\)</td>', table)


def test_step_page_has_its_entropy_histogram(run_site):
    html = read(run_site["site"] / "runs" / "exp-a" / "step-10" / "index.html")
    bars = re.findall(r'<rect class="td-bar td-s0"[^>]*data-count="(\d+)"><title>([^<]+)</title>', html)
    # scores at step 10: 2.0, 3.0 (first trajectory), 3.0 (second) -> bins 2–2.25 and 3–3.25
    assert bars == [("1", "2–2.25: 1"), ("2", "3–3.25: 2")]


@pytest.mark.browser
def test_chart_point_navigates_and_tables_sort(page, run_site, serve):
    project = run_site["project"]
    base = serve(project / "site")
    build_site(project, site_url=base)
    page.goto(base + "runs/exp-a/")
    point = page.locator("figure", has_text="Mean reward and accuracy").locator("a.td-pt").nth(0)
    assert point.get_attribute("title") == "mean reward · step 5: 0.25"
    point.click()
    wait_for_step(page, 5)
    page.goto(base + "runs/exp-a/")
    table = page.locator("table.td-steps")
    steps = lambda: [int(x) for x in table.locator("tbody tr td:first-child").all_inner_texts()]  # noqa: E731
    assert steps() == [5, 10, 20]
    table.locator("th", has_text="Mean reward").click()
    assert steps() == [5, 20, 10]
    table.locator("th", has_text="Mean reward").click()
    assert steps() == [10, 20, 5]
    table.locator("th", has_text="Step").click()
    assert steps() == [5, 10, 20]
    assert page.errors == [] and page.outside == []


@pytest.mark.browser
def test_best_and_worst_side_by_side(page, run_site, serve):
    page.goto(serve(run_site["project"] / "site") + "runs/exp-a/step-20/")
    page.get_by_role("button", name="Best and worst side by side").click()
    columns = page.locator(".td-versus > div")
    assert columns.count() == 2
    assert "best: trajectory 1, reward 0.75" in columns.nth(0).inner_text()
    assert "worst: trajectory 0, reward 0.25" in columns.nth(1).inner_text()
    page.get_by_role("button", name="Close the comparison").click()
    assert page.locator(".td-versus").count() == 0


def test_views_after_an_appended_step_equal_a_fresh_build(tmp_path):
    """serve keeps the plugin: a rebuild that only appends a step updates the merged views from
    the new step alone; they must equal what a fresh build computes from every step."""
    def forking_and_prompts(site: Path) -> tuple[str, str]:
        exp = read(site / "runs" / "exp-a" / "index.html")
        prompts = read(site / "runs" / "prompts" / "index.html")
        return (exp[exp.index('<table class="td-table td-sortable td-forking">'):exp.index("</table>", exp.index("td-forking"))],
                prompts[prompts.index('<section class="td-prompt-use"'):prompts.rindex("</section>")])

    def step(n: int) -> list:
        words = [" Wait", " so", " Hmm", " then"]
        return [record(n, i, float(i % 2), [tok(w, (n + i + j) % 3 == 0, 1.0 + j) for j, w in enumerate(words * (1 + n % 2))],
                       prompt=f"question {n % 2}") for i in range(2)]

    live, fresh = tmp_path / "live", tmp_path / "fresh"
    for n in (1, 2, 3):
        write_step(live / "results", "exp-a", n, step(n))
    build_site(live)
    for n in (4, 5):  # the trainer writes more steps; the same plugin instance rebuilds
        write_step(live / "results", "exp-a", n, step(n))
        incremental = forking_and_prompts(build_site(live))
    for n in (1, 2, 3, 4, 5):
        write_step(fresh / "results", "exp-a", n, step(n))
    assert forking_and_prompts(build_site(fresh)) == incremental
    assert "Prompt seen at 3 steps" in incremental[1] and "Prompt seen at 2 steps" in incremental[1]


def test_long_runs_keep_every_step_in_the_line_and_a_bounded_number_of_points():
    rng = random.Random(7)
    ys = [rng.uniform(0, 1) for _ in range(1000)]
    ys[613], ys[271] = 5.0, -5.0
    points = [Point(10 * i, y, f"step-{10 * i}/") for i, y in enumerate(ys)]
    html = line_chart("Mean reward", [Series("reward", points)])
    line = re.search(r'<polyline[^>]* points="([^"]*)"', html).group(1)
    assert len(line.split()) == 1000
    shown = chart_points(html, "Mean reward")
    steps = [int(p["data-x"]) for p in shown]
    assert len(shown) <= MAX_POINTS + 4 and steps == sorted(steps)
    assert {0, 9990, 6130, 2710} <= set(steps)  # first, last, highest, lowest
    assert max(b - a for a, b in zip(steps, steps[1:])) <= 2 * 10 * 1000 / MAX_POINTS
    small = line_chart("Mean reward", [Series("reward", points[:MAX_POINTS])])
    assert len(chart_points(small, "Mean reward")) == MAX_POINTS


def test_sparklines_of_long_runs_average_per_pixel():
    values = [float(i) for i in range(1000)] + [math.nan] * 200
    line = re.search(r'points="([^"]*)"', sparkline(values)).group(1).split()
    assert len(line) == 100  # 120 pixels, the last 20 all gaps
    ys = [float(p.split(",")[1]) for p in line]
    assert ys == sorted(ys, reverse=True)  # rising values: y falls in SVG coordinates
    assert sparkline([1.0, None, 2.0]).count(",") == 2


def test_forking_table_says_what_it_counts(tmp_path):
    """"<think>" occurs 3 times and is flagged once; the step where it occurs unflagged is not one
    of the strings that step counts: the table shows what it counted (2, 50%, "—" at step 2) and
    its note says so."""
    write_step(tmp_path / "results", "exp", 1, [trajectory(1, 0, [tok("<think>", True, 1.5), tok(" a")]),
                                                trajectory(1, 1, [tok("<think>"), tok(" b")])])
    write_step(tmp_path / "results", "exp", 2, [trajectory(2, 0, [tok("<think>"), tok(" c", True, 1.0)])])
    html = read(build_site(tmp_path) / "runs" / "exp" / "index.html")
    table = html[html.index('<table class="td-table td-sortable td-forking">'):]
    assert re.search(r'<code class="td-tok">&lt;think&gt;</code></td><td data-sort="1">1</td><td data-sort="2">2</td>'
                     r'<td[^>]*>50.0%</td>', table)
    note = re.sub(r"\s+", " ", table[table.index('<p class="td-note">'):table.index("</p>")])
    assert "a step where it occurs but is not flagged" in note and "adds nothing" in note


def test_count_axis_has_whole_number_ticks_only():
    from trajdocs.charts import bar_chart
    svg = bar_chart("Entropy scores", [1, 0, 1], 0.1, "entropy")
    ticks = re.findall(r'text-anchor="end">([^<]+)</text>', svg)[:-1]  # the last one: the axis label
    assert ticks == ["0", "1"]
