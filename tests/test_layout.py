"""The step page made for comparing rollouts, and tables that fit their content, in real headless
Chromium at 1440 and 390 px: prompt groups side by side, best and worst marked, links to one
trajectory, numbers for reading, experiment names, the recurring-prompts page."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import build_site, tok, trajectory, write_step

pytestmark = pytest.mark.browser
NAME = "lightrft-gsm8k-grpo-all-scores/qwen2.5-0.5b-ep30-kl0.01-lr1e-6"
REWARDS = [0.2, 0.9, 0.0, 0.6]
LENGTHS = [380, 385, 387, 387]  # mean 384.75: shown as 384.8
PROMPT = "<|im_start|>user\nNatalia sold clips to 48 friends. How many?<|im_end|>\n<|im_start|>assistant\n"


def group_record(step: int, index: int) -> dict:
    tokens = [tok(f" w{index}-{i}", high=i % 7 == 0, score=2.5 if i % 7 == 0 else None) for i in range(40)]
    record = trajectory(step, index, tokens, reward=REWARDS[index], advantages=REWARDS[index] - 0.425,
                        response_token_count=LENGTHS[index])
    record["full_sequence"] = PROMPT + record["pure_generated_text"] + "<|im_end|>"
    return record


@pytest.fixture
def layout_site(tmp_path: Path, serve) -> str:
    for step in (1, 2):
        write_step(tmp_path / "results", NAME, step, [group_record(step, i) for i in range(4)])
    base = serve(tmp_path / "site")
    build_site(tmp_path, site_url=base)
    return base


def step_url(base: str, step: int = 1) -> str:
    return f"{base}runs/{NAME}/step-{step}/"


def boxes(page) -> list[dict]:
    return page.locator(".td-traj").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return {left: r.left, top: r.top, width: r.width}; })")


def test_a_prompt_group_reads_side_by_side_on_wide_screens_and_stacked_on_narrow(browser, layout_site):
    wide = browser.new_page(viewport={"width": 1440, "height": 900})
    wide.goto(step_url(layout_site))
    assert wide.locator(".td-group details.td-prompt").count() == 1  # the prompt once per group
    placed = boxes(wide)
    assert len({round(b["left"]) for b in placed}) >= 2 and len({round(b["top"]) for b in placed}) < len(placed)
    # the tokens get the width: no table of contents, content wider than Material's default column
    assert not wide.locator(".md-sidebar--secondary").is_visible()
    assert wide.locator(".td-step").evaluate("e => e.getBoundingClientRect().width") > 1000
    wide.close()
    narrow = browser.new_page(viewport={"width": 390, "height": 800})
    narrow.goto(step_url(layout_site))
    placed = boxes(narrow)
    assert len({round(b["left"]) for b in placed}) == 1
    assert [b["top"] for b in placed] == sorted(b["top"] for b in placed)
    assert narrow.evaluate("document.documentElement.scrollWidth") <= 390
    narrow.close()


def test_each_response_shows_reward_advantage_and_its_rank_in_the_group_at_the_top(page, layout_site):
    page.goto(step_url(layout_site))
    heads = page.locator(".td-traj .td-head-right").all_inner_texts()
    assert [("best" in h, "worst" in h) for h in heads] == [(False, False), (True, False), (False, True), (False, False)]
    assert "reward 0.9" in heads[1] and "advantage 0.475" in heads[1]
    assert page.errors == [] and page.outside == []


def test_metadata_is_compact_and_numbers_read_well(page, layout_site):
    page.goto(step_url(layout_site))
    section = page.locator(".td-traj").first
    assert section.locator(".td-stats").is_visible() and not section.locator("dl.td-meta").is_visible()
    section.locator("details.td-meta-box > summary").click()
    assert section.locator("dl.td-meta dt", has_text="response_token_count").is_visible()
    summary = page.locator(".td-step-summary").inner_text()
    assert "mean response length 384.8 tokens" in summary and "384.75" not in summary
    page.goto(f"{layout_site}runs/{NAME}/")
    assert "384.8" in page.locator("table.td-steps").inner_text()


def test_a_link_to_a_trajectory_opens_it_marked_and_can_be_copied(browser, layout_site):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(step_url(layout_site) + "#t2")
    target = page.locator("#t2")
    assert target.evaluate("e => e.classList.contains('td-target')")
    assert target.locator("dl.td-meta").is_visible()  # opened: its fields shown
    assert 0 <= target.locator(".td-traj-title").evaluate("e => e.getBoundingClientRect().top") < 200
    assert page.locator(".td-traj.td-target").count() == 1
    page.locator("#t3 button.td-copy-link").click()
    page.wait_for_function("document.querySelector('#t3 button.td-copy-link').textContent === 'copied'")
    assert page.evaluate("navigator.clipboard.readText()") == step_url(layout_site) + "#t3"
    page.goto(step_url(layout_site) + "#t1")  # a link opened from elsewhere
    assert page.locator("#t1").evaluate("e => e.classList.contains('td-target')")
    context.close()


def test_experiment_names_break_only_between_folders(browser, layout_site):
    for width in (1440, 1280):
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(f"{layout_site}runs/")
        for table in ("table.td-experiments", "table.td-compare"):
            cell = page.locator(f"{table} tbody td:first-child").first
            lines = cell.evaluate("td => td.getBoundingClientRect().height / parseFloat(getComputedStyle(td).lineHeight)")
            assert lines < 2.9, (width, table, lines)  # one line per folder of the name at most
            assert cell.inner_text().replace("\n", "") == NAME
        page.close()


def test_recurring_prompt_openings_read_as_text(page, layout_site):
    page.goto(f"{layout_site}runs/prompts/")
    cell = page.locator("td.td-opening").first
    assert cell.evaluate("td => getComputedStyle(td).textAlign") == "left"
    excerpt = cell.locator("pre.td-excerpt")
    assert "monospace" not in excerpt.evaluate("e => getComputedStyle(e).fontFamily")
    assert excerpt.evaluate("e => getComputedStyle(e).textAlign") == "left"
