"""The step page as a reading tool, in real headless Chromium: heat map, details, re-flagging,
sorting and filtering, persistence, keyboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import build_site, read, tok, trajectory, wait_for_step, write_step

pytestmark = pytest.mark.browser
SCORES = [0.1, 3.2, 0.5, 2.0, 0.05, 1.1, 4.0, 0.3, 0.9, 2.6]  # every token scored


def scored_record(step: int, index: int, reward: float, shift: float = 0.0) -> dict:
    tokens = [tok(f" t{i}", high=s >= 2.6, score=round(s + shift, 3)) for i, s in enumerate(SCORES)]
    # one log-prob and advantage per action: the response tokens and the end of sequence
    return trajectory(step, index, tokens, reward=reward, end={"high_entropy": False, "entropy_score": 0.0},
                      action_log_probs=[round(-s / 2, 3) for s in SCORES] + [-0.01],
                      advantages=[reward - 0.5] * (len(SCORES) + 1),
                      info={"reward": reward, "reward_metrics": {"accuracy": 1.0 if reward > 0.5 else 0.0}})


@pytest.fixture
def viewer_site(tmp_path: Path, serve) -> str:
    for step in (1, 2, 3):
        rewards = [0.2, 0.9, 0.0, 0.6]
        write_step(tmp_path / "results", "exp", step,
                   [scored_record(step, i, r, shift=i / 100) for i, r in enumerate(rewards)])
    base = serve(tmp_path / "site")
    build_site(tmp_path, site_url=base)
    return base


def flagged(page, section: int) -> list[str]:
    return page.locator(".td-traj").nth(section).locator(".td-tokens i.h").all_inner_texts()


def test_heat_map_colours_every_token_on_a_shared_scale(page, viewer_site):
    page.goto(viewer_site + "runs/exp/step-1/")
    assert not page.locator(".td-legend-heat").is_visible()
    page.select_option("[data-td-setting='mode']", "heat")
    assert page.locator(".td-legend-heat").is_visible()
    tokens = page.locator(".td-traj").first.locator(".td-tokens i")
    classes = [tokens.nth(i).get_attribute("class") or "" for i in range(len(SCORES))]
    assert "e9" in classes[6] and "e0" in classes[4]  # the top score and the lowest
    levels = [int(next(c for c in cls.split() if c.startswith("e"))[1:]) for cls in classes]
    assert all(levels[i] <= levels[j] for i in range(10) for j in range(10) if SCORES[i] < SCORES[j])
    assert len(set(levels)) >= 5  # a continuous scale, not two colours
    low = tokens.nth(4).evaluate("e => getComputedStyle(e).backgroundColor")
    high = tokens.nth(6).evaluate("e => getComputedStyle(e).backgroundColor")
    assert low != high
    assert tokens.nth(6).evaluate("e => getComputedStyle(e).textDecorationLine") == "underline"  # still flagged
    page.locator("a.td-next").first.click()
    wait_for_step(page, 2)
    assert page.locator("[data-td-setting='mode']").input_value() == "heat"  # remembered
    assert "e9" in (page.locator(".td-traj").first.locator(".td-tokens i").nth(6).get_attribute("class") or "")
    assert page.errors == [] and page.outside == []


def test_heat_map_needs_scores_on_every_token(page, tmp_path, serve):
    write_step(tmp_path / "results", "exp", 1, [trajectory(1, 0, [tok("a", True, 2.0), tok("b")])])
    build_site(tmp_path)
    page.goto(serve(tmp_path / "site") + "runs/exp/step-1/")
    assert page.locator("[data-td-setting='mode']").count() == 0  # no heat map to choose
    assert page.locator("[data-td-setting='ratio']").get_attribute("max") == "33"  # file ratio: 1 of 3 tokens


def test_details_show_log_prob_and_advantage(page, viewer_site):
    page.goto(viewer_site + "runs/exp/step-1/")
    page.locator(".td-traj").nth(1).locator(".td-tokens i").nth(3).hover()
    text = page.locator(".td-tip").inner_text()
    assert "entropy 2.01" in text and "position 3" in text and "log-prob -1" in text
    assert "advantage 0.4" in text and "“␣t3”" in text


def test_slider_reflags_the_top_share_of_each_trajectory(page, viewer_site):
    page.goto(viewer_site + "runs/exp/step-1/")
    assert flagged(page, 0) == [" t1", " t6", " t9"]  # as in the file
    page.locator("[data-td-setting='ratio']").fill("50")
    expected = [f" t{i}" for i in sorted(range(10), key=lambda i: -SCORES[i])[:5]]
    assert sorted(flagged(page, 0)) == sorted(expected)
    assert page.locator(".td-ratio-out").inner_text() == "50%"
    assert "top 50%" in page.locator(".td-ratio-note").inner_text()
    page.locator("[data-td-setting='ratio']").fill("10")
    assert flagged(page, 0) == [" t6"] and flagged(page, 3) == [" t6"]
    page.reload()  # remembered
    assert flagged(page, 0) == [" t6"]
    page.get_by_role("button", name="as in file").click()
    assert flagged(page, 0) == [" t1", " t6", " t9"]


def section_order(page) -> list[int]:
    boxes = page.locator(".td-traj:visible").evaluate_all(
        "els => els.map(e => [e.getBoundingClientRect().top, +e.dataset.index])")
    return [index for _, index in sorted(boxes)]


def test_sort_and_filter_trajectories(page, viewer_site):
    page.goto(viewer_site + "runs/exp/step-1/")
    assert section_order(page) == [0, 1, 2, 3]
    page.select_option("[data-td-setting='sort']", "reward-desc")
    assert section_order(page) == [1, 3, 0, 2]
    rows = page.locator(".td-summary tbody tr").evaluate_all("rs => rs.map(r => +r.dataset.index)")
    assert rows == [1, 3, 0, 2]
    page.select_option("[data-td-setting='sort']", "reward-asc")
    assert section_order(page) == [2, 0, 3, 1]
    page.select_option("[data-td-setting='filter']", "correct")
    assert section_order(page) == [3, 1]
    assert page.locator(".td-summary tbody tr:visible").count() == 2
    page.select_option("[data-td-setting='filter']", "incorrect")
    assert section_order(page) == [2, 0]
    assert page.locator(".td-summary tr[data-index='1']").evaluate("r => r.hidden")
    page.select_option("[data-td-setting='filter']", "")
    page.select_option("[data-td-setting='sort']", "")
    assert section_order(page) == [0, 1, 2, 3]


def test_summary_row_jumps_to_its_trajectory(page, viewer_site):
    page.goto(viewer_site + "runs/exp/step-1/")
    page.locator(".td-summary a", has_text="1").click()
    page.wait_for_function("location.hash === '#t1'")
    top = page.locator("#traj-1").evaluate("e => e.getBoundingClientRect().top")
    assert 0 <= top < 200
    assert page.locator("#t1").evaluate("e => e.classList.contains('td-target')")


def test_keyboard_moves_between_steps_and_trajectories(page, viewer_site):
    page.goto(viewer_site + "runs/exp/step-2/")
    assert "p" in page.locator(".td-keys").inner_text() and "j" in page.locator(".td-keys").inner_text()
    page.keyboard.press("j")
    first = page.locator(".td-traj").nth(0).evaluate("e => e.getBoundingClientRect().top")
    page.keyboard.press("j")
    second = page.locator(".td-traj").nth(1).evaluate("e => e.getBoundingClientRect().top")
    assert abs(first - 80) < 5 and abs(second - 80) < 5
    page.keyboard.press("k")
    assert abs(page.locator(".td-traj").nth(0).evaluate("e => e.getBoundingClientRect().top") - 80) < 5
    page.keyboard.press("n")
    wait_for_step(page, 3)
    page.keyboard.press("p")
    wait_for_step(page, 2)
    page.locator("[data-td-setting='sort']").focus()
    page.keyboard.press("n")  # typing in a control never navigates
    assert page.url.endswith("/step-2/")
    assert page.errors == [] and page.outside == []


def test_settings_apply_without_instant_navigation(page, tmp_path, serve):
    for step in (1, 2):
        write_step(tmp_path / "results", "exp", step, [scored_record(step, i, r) for i, r in enumerate([0.1, 0.8])])
    build_site(tmp_path, theme={"name": "material", "font": False, "features": []})  # full page loads
    page.goto(serve(tmp_path / "site") + "runs/exp/step-1/")
    page.evaluate("window.__samePage = true")
    page.select_option("[data-td-setting='sort']", "reward-desc")
    page.select_option("[data-td-setting='mode']", "heat")
    page.locator("a.td-next").first.click()
    page.wait_for_url("**/step-2/")
    page.wait_for_load_state("load")
    assert page.evaluate("window.__samePage") is None  # a real page load
    assert section_order(page) == [1, 0]
    assert "e9" in (page.locator(".td-traj").first.locator(".td-tokens i").nth(6).get_attribute("class") or "")
    assert page.errors == [] and page.outside == []


def test_real_shapes_on_the_page(page, tmp_path, serve):
    """LightRFT's saver shape: the end-of-sequence token has its details; a run of image pads is
    one element that copies back whole; a verl step has no entropy controls; no console errors."""
    gen = [{"text": "\n", "high_entropy": True, "entropy_score": 3.5}, {"text": "A", "high_entropy": False},
           {"text": " cat", "high_entropy": True, "entropy_score": 1.25}]
    prompt = "<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * 324 + "<|vision_end|>What?<|im_end|>\n<|im_start|>assistant\n"
    record = {"global_step": 1, "full_sequence": prompt + "A cat<|im_end|>", "generated_text": "\nA cat",
              "pure_generated_text": "A cat", "generated_tokens": gen, "pure_generated_tokens": gen[1:],
              "advantages": 0.5, "info": {"reward": 1.0}}
    write_step(tmp_path / "results", "exp", 1, [record])
    verl = tmp_path / "results" / "verl"
    verl.mkdir()
    (verl / "1.jsonl").write_text('{"input": "user\\nQ\\nassistant\\n", "output": "4", "score": 1.0, "step": 1}\n')
    build_site(tmp_path, strict=True)
    base = serve(tmp_path / "site")
    page.goto(base + "runs/exp/step-1/")
    tokens = page.locator(".td-tokens i")
    assert tokens.count() == 3 and tokens.nth(0).inner_text() == "A"
    tokens.nth(0).hover()
    assert "entropy 3.5" in page.locator(".td-tip").inner_text()  # the first response token's own score
    tokens.nth(2).hover()
    tip = page.locator(".td-tip").inner_text()
    assert "entropy 1.25" in tip and "end of sequence" in tip and "position 2" in tip
    assert "advantage" not in tip  # a single value: nothing per token
    page.locator("details.td-prompt summary").first.click()
    run = page.locator(".td-run")
    assert run.count() == 1 and run.inner_text() == "<|image_pad|>" and run.get_attribute("data-n") == "324"
    assert "×324" in run.evaluate("e => getComputedStyle(e, '::after').content")
    copied = page.evaluate("""() => {
        const pre = document.querySelector('details.td-prompt pre');
        const range = document.createRange(); range.selectNodeContents(pre);
        const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
        const event = new ClipboardEvent('copy', {clipboardData: new DataTransfer(), bubbles: true, cancelable: true});
        pre.dispatchEvent(event);
        return event.clipboardData.getData('text/plain');
    }""")
    assert copied == prompt  # each run back in full
    page.goto(base + "runs/verl/step-1/")
    assert page.locator(".td-traj").count() == 1
    assert page.locator("[data-td-setting='mode'], [data-td-setting='ratio'], [data-td-setting='filter']").count() == 0
    assert page.locator("[data-td-setting='sort']").count() == 1
    assert page.errors == [] and page.outside == []


def test_sort_without_correctness_filter(page, tmp_path, serve):
    """A LightRFT page has no correct/incorrect filter (badges are never guessed): sorting works,
    a saved sort is applied on the next load, and no console errors."""
    for step in (1, 2):
        records = [scored_record(step, i, r) for i, r in enumerate([0.2, 0.9, 0.0])]
        for record in records:
            del record["info"]["reward_metrics"]
        write_step(tmp_path / "results", "exp", step, records)
    build_site(tmp_path)
    base = serve(tmp_path / "site")
    page.goto(base + "runs/exp/step-1/")
    assert page.locator("[data-td-setting='filter']").count() == 0
    page.select_option("[data-td-setting='sort']", "reward-desc")
    assert section_order(page) == [1, 0, 2]
    page.goto(base + "runs/exp/step-2/")
    page.wait_for_load_state("load")
    assert section_order(page) == [1, 0, 2]  # the saved sort, applied on load
    assert page.errors == [] and page.outside == []


def test_empty_token_is_visible_and_hoverable(page, tmp_path, serve):
    """A special token inside a response decodes to "" (skip_special_tokens): it gets a visible
    box that can be hovered, with no text added (copying stays exact); the forking-tokens table
    names it apart from whitespace; the prompt is found though full_sequence holds the token."""
    tokens = [tok("A", True, 1.0), tok("", True, 2.5), tok(" B"), tok("\n", True, 0.7)]
    records = [trajectory(1, i, tokens) for i in range(2)]
    for record in records:
        record["full_sequence"] = records[0]["full_sequence"].replace("A B", "A<|endoftext|> B")
    write_step(tmp_path / "results", "exp", 1, records)
    site = build_site(tmp_path, strict=True)
    experiment = read(site / "runs" / "exp" / "index.html")
    assert "(empty: a special token)" in experiment and "(whitespace)" in experiment
    page.goto(serve(tmp_path / "site") + "runs/exp/step-1/")
    assert page.locator(".td-group").count() == 1 and "Full sequence" not in page.content()
    empty = page.locator(".td-traj").first.locator(".td-tokens i").nth(1)
    assert empty.inner_text() == ""
    box = empty.bounding_box()
    assert box["width"] >= 5 and box["height"] >= 5
    empty.hover()
    tip = page.locator(".td-tip").inner_text()
    assert "entropy 2.5" in tip and "empty" in tip
    assert page.locator(".td-traj").first.locator(".td-tokens").evaluate("e => e.textContent").startswith("A B\n")
    assert page.errors == [] and page.outside == []


def test_slider_reads_the_files_ratio_as_the_legend_does(page, tmp_path, serve):
    tokens = [tok(f" t{i}", high=i < 2, score=2.0 - i if i < 2 else None) for i in range(10)]
    write_step(tmp_path / "results", "exp", 1, [trajectory(1, 0, tokens)])  # 2 of 11 flagged: 18.2%
    build_site(tmp_path)
    page.goto(serve(tmp_path / "site") + "runs/exp/step-1/")
    assert "18.2% of this step's tokens" in page.locator(".td-ratio-note").inner_text()
    assert page.locator(".td-ratio-out").inner_text() == "18.2%"
    page.locator("input[data-td-setting='ratio']").fill("10")
    assert page.locator(".td-ratio-out").inner_text() == "10%"
    page.locator("[data-td-reset='ratio']").click()
    assert page.locator(".td-ratio-out").inner_text() == "18.2%"
    assert page.errors == [] and page.outside == []


def test_layout_wide_tables_and_narrow_screens(browser, tmp_path, serve):
    """Experiment names readable on the overview (broken only at "/" and "-"); wide tables scroll
    inside their own box with the first column in view; at 390 px no page scrolls sideways."""
    name = "lightrft-gsm8k-grpo/qwen2.5-0.5b-ep30-kl0.01-lr1e-6"
    for step in (1, 2):
        records = [scored_record(step, i, r) for i, r in enumerate([0.2, 0.9])]
        for record in records:
            record["info"]["reward_metrics"]["format_reward"] = 1.0
        write_step(tmp_path / "results", name, step, records)
    build_site(tmp_path)
    base = serve(tmp_path / "site") + "runs/"
    slug = base + name + "/"
    wide = browser.new_page(viewport={"width": 1440, "height": 900})
    wide.goto(base)
    link = wide.locator("table.td-experiments td:first-child a").first
    assert link.evaluate("a => a.getBoundingClientRect().width") >= 140
    assert wide.locator("table.td-experiments td:first-child").first.evaluate(
        "td => getComputedStyle(td).position") == "sticky"
    wide.close()
    narrow = browser.new_page(viewport={"width": 390, "height": 800})
    for url in (base, slug, slug + "step-1/"):
        narrow.goto(url)
        assert narrow.evaluate("document.documentElement.scrollWidth") <= 390, url
    narrow.goto(base)
    table = narrow.locator("table.td-compare")
    assert table.evaluate("t => t.scrollWidth > t.clientWidth")  # scrolls inside its own box
    table.evaluate("t => { t.scrollLeft = 200; }")
    first = table.locator("tbody td:first-child").first
    assert first.evaluate("td => td.getBoundingClientRect().left") >= table.evaluate("t => t.getBoundingClientRect().left") - 1
    narrow.goto(slug + "step-1/")
    narrow.get_by_label("All metadata").check()
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 390
    key = narrow.locator("dl.td-meta dt", has_text="format_reward").first
    assert key.evaluate("dt => dt.innerHTML") == "reward_<wbr>metrics.<wbr>format_<wbr>reward"
    assert key.inner_text() == "reward_metrics.format_reward"
    narrow.close()
