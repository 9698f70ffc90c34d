"""The step page as a reading tool, in real headless Chromium: heat map, details, re-flagging,
sorting and filtering, persistence, keyboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import build_site, tok, trajectory, wait_for_step, write_step

pytestmark = pytest.mark.browser
SCORES = [0.1, 3.2, 0.5, 2.0, 0.05, 1.1, 4.0, 0.3, 0.9, 2.6]  # every token scored


def scored_record(step: int, index: int, reward: float, shift: float = 0.0) -> dict:
    tokens = [tok(f" t{i}", high=s >= 2.6, score=round(s + shift, 3)) for i, s in enumerate(SCORES)]
    return trajectory(step, index, tokens, reward=reward,
                      action_log_probs=[round(-s / 2, 3) for s in SCORES],
                      advantages=[reward - 0.5] * len(SCORES),
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
    assert page.locator("option[value='heat']").is_disabled()
    assert page.locator("[data-td-setting='ratio']").get_attribute("max") == "50"  # file ratio: 50%


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
    page.wait_for_function("location.hash === '#traj-1'")
    top = page.locator("#traj-1").evaluate("e => e.getBoundingClientRect().top")
    assert 0 <= top < 200


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
