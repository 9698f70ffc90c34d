"""Step pages in a real headless Chromium: hover details, toggles, instant navigation, themes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conftest import build_site, tok, trajectory, wait_for_step, write_step

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def site(tmp_path: Path, serve) -> str:
    """Three steps of one experiment, served; site_url matches so Material's instant navigation runs."""
    for step in (10, 20, 30):
        records = [trajectory(step, i, [tok("Let", True, 2.5 + step / 100), tok(" me"), tok(" think", True, 1.25),
                                        tok(" <b>bold</b>"), tok("\n\nWait", True, 3.0)], reward=float(i))
                   for i in range(2)]
        write_step(tmp_path / "results", "exp", step, records)
    base = serve(tmp_path / "site")
    build_site(tmp_path, site_url=base)
    return base


def test_hover_shows_entropy_score(page, site):
    page.goto(site + "runs/exp/step-20/")
    token = page.locator(".td-tokens .h").first
    token.hover()
    tip = page.locator(".td-tip")
    assert tip.is_visible()
    assert "entropy 2.7" in tip.inner_text()
    assert "“Let”" in tip.inner_text()
    page.locator(".td-tokens i:not(.h)").first.hover()  # every token has details, only those in the file
    assert "entropy" not in tip.inner_text() and "position 1" in tip.inner_text()
    page.locator(".td-traj-title").first.hover()
    assert not tip.is_visible()
    assert page.errors == [] and page.outside == []


def test_keyboard_focus_shows_details(page, site):
    page.goto(site + "runs/exp/step-10/")
    page.locator(".td-tokens .h").nth(1).focus()
    tip = page.locator(".td-tip")
    assert tip.is_visible() and "entropy 1.2500" in tip.inner_text() and "position 2" in tip.inner_text()


def test_metadata_is_one_click_away_and_the_toggle_opens_all_of_it_across_steps(page, site):
    page.goto(site + "runs/exp/step-10/")
    meta = page.locator(".td-meta").first
    assert not meta.is_visible() and page.locator(".td-stats").first.is_visible()  # key numbers on one line
    page.locator("details.td-meta-box > summary").first.click()
    assert meta.is_visible()
    page.get_by_label("All metadata").check()
    assert all(m.is_visible() for m in page.locator(".td-meta").all())
    page.locator("a.td-next").first.click()
    wait_for_step(page, 20)
    assert page.get_by_label("All metadata").is_checked()
    assert all(m.is_visible() for m in page.locator(".td-meta").all())
    page.get_by_label("All metadata").uncheck()
    assert not page.locator(".td-meta").first.is_visible()


def test_entropy_score_toggle_turns_hover_off(page, site):
    page.goto(site + "runs/exp/step-10/")
    page.get_by_label("Entropy score", exact=True).uncheck()
    page.locator(".td-tokens .h").first.hover()
    assert not page.locator(".td-tip").is_visible()


def test_instant_navigation_reinitialises_the_page(page, site):
    page.goto(site + "runs/exp/step-10/")
    page.evaluate("window.__sameDocument = true")
    page.get_by_label("generated_text", exact=True).check()
    page.locator("a.td-next").first.click()
    wait_for_step(page, 20)
    page.wait_for_selector(".td-step")
    assert page.evaluate("window.__sameDocument === true"), "Material instant navigation did not run"
    assert page.locator(".td-gen").first.is_visible()
    page.locator(".td-tokens .h").first.hover()
    assert "entropy 2.7" in page.locator(".td-tip").inner_text()
    assert page.errors == [] and page.outside == []


def test_highlight_is_visible_in_light_and_dark(page, site):
    page.goto(site + "runs/exp/step-10/")
    light = page.locator(".td-tokens .h").first.evaluate("e => getComputedStyle(e).backgroundColor")
    page.locator("label[for='__palette_1']").click()
    page.wait_for_function("document.body.getAttribute('data-md-color-scheme') === 'slate'")
    dark = page.locator(".td-tokens .h").first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert light != dark and "rgba" in dark
    underline = page.locator(".td-tokens .h").first.evaluate("e => getComputedStyle(e).textDecorationLine")
    assert underline == "underline"  # distinguishable without colour


def test_markup_in_tokens_stays_text(page, site):
    page.goto(site + "runs/exp/step-10/")
    assert page.locator(".td-tokens b").count() == 0
    assert "<b>bold</b>" in page.locator(".td-tokens").first.inner_text()


def test_plain_mkdocs_theme_hover_and_toggles(page, tmp_path, serve):
    write_step(tmp_path / "results", "exp", 1, [trajectory(1, 0, [tok("x"), tok(" fork", True, 4.5)])])
    build_site(tmp_path, theme={"name": "mkdocs", "highlightjs": False})  # dark mode + no highlightjs trips the theme's own darkmode.js
    page.goto(serve(tmp_path / "site") + "runs/exp/step-1/")
    page.locator(".td-tokens .h").hover()
    assert "entropy 4.5" in page.locator(".td-tip").inner_text()
    page.get_by_label("Statistics").uncheck()
    assert not page.locator(".td-stats").is_visible()
    assert page.errors == [] and page.outside == []


PAYLOAD = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def test_hostile_input_injects_nothing_and_runs_no_script(page, tmp_path, serve):
    name = '<img src=x onerror=window.__xss=3>'
    long_token = "x" * 6000
    tokens = [tok(PAYLOAD, True, 2.0), tok(long_token), tok("</span></div><b>", True, 1.0)]
    record = trajectory(1, 0, tokens, label=PAYLOAD, reference="</pre>" + PAYLOAD, **{PAYLOAD: PAYLOAD},
                        full_sequence=PAYLOAD + "</details></summary>" + "".join(t["text"] for t in tokens))
    write_step(tmp_path / "results", name, 1, [record])
    write_step(tmp_path / "results", name, 2, [record])  # the hostile prompt recurs: on the prompts page
    build_site(tmp_path)
    base = serve(tmp_path / "site")
    assert PAYLOAD.replace("<", "&lt;").replace(">", "&gt;") in (tmp_path / "site" / "runs" / "prompts" / "index.html").read_text()
    for path in ("runs/", "runs/prompts/", "runs/img-src-x-onerror-window.__xss-3/",
                 "runs/img-src-x-onerror-window.__xss-3/step-1/"):
        page.goto(base + path)
        page.wait_for_load_state("load")
        for token in page.locator(".td-tokens .h").all():
            token.hover()
        assert page.evaluate("window.__xss") is None, path
        assert page.locator("article img[src='x'], article b, .md-content script").count() == 0, path
        assert page.errors == [], (path, page.errors)
    assert page.locator(".td-tokens i").first.inner_text() == PAYLOAD
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # long tokens wrap


def test_show_all_tokens_of_a_long_response(page, tmp_path, serve):
    tokens = [tok(f"w{i} ", i % 10 == 0, float(i)) for i in range(250)]
    write_step(tmp_path / "results", "exp", 1, [trajectory(1, 0, tokens)])
    build_site(tmp_path, plugin={"runs": "results", "max_tokens": 100})
    page.goto(serve(tmp_path / "site") + "runs/exp/step-1/")
    assert page.locator(".td-tokens i").count() == 100
    page.get_by_label("pure_generated_text").check()  # rebuilt from all tokens, collapsed ones too
    assert page.locator(".td-pure pre").inner_text() == "".join(t["text"] for t in tokens)
    page.get_by_label("generated_text", exact=True).check()
    assert page.locator(".td-gen pre").inner_text() == "\n" + "".join(t["text"] for t in tokens)
    page.get_by_role("button", name="Show the remaining 151 tokens").click()  # with the end of sequence
    assert page.locator(".td-tokens i:not(.td-end)").count() == 250
    assert page.locator(".td-tokens").inner_text() == "".join(t["text"] for t in tokens)
    page.locator(".td-tokens .h").last.hover()
    assert "position 240" in page.locator(".td-tip").inner_text()
