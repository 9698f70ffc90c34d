"""Build the project's site and take screenshots of a step page (light and dark) into docs/images.

Needs the test dependencies (playwright) and Debian's chromium: `python scripts/screenshots.py`.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mkdocs.commands.build import build
from mkdocs.config import load_config
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SHOTS = {  # file name: (page, colour mode or None for a page without tokens)
    "step": ("runs/lightrft-gsm8k-grpo/qwen2.5-0.5b-ep30-kl0.01-lr1e-6/step-30/", "flag"),
    "heat": ("runs/lightrft-gsm8k-grpo-all-scores/qwen2.5-0.5b-ep30-kl0.01-lr1e-6/step-30/", "heat"),
    "experiment": ("runs/lightrft-gsm8k-grpo-all-scores/qwen2.5-0.5b-ep30-kl0.01-lr1e-6/", None),
    "channel": ("runs/roll-rlvr-math/logging_board/step-5/", "token_reward"),  # colour by another channel
    "search": ("runs/", "search"),  # the run-wide search on the overview
}
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main() -> int:
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    out = ROOT / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=tmp))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}/"
        build(load_config(str(ROOT / "mkdocs.yml"), site_dir=tmp, site_url=base))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=ARGS)
            for name, (path, mode) in SHOTS.items():
                for scheme in ("light", "dark"):
                    page = browser.new_page(viewport={"width": 1280, "height": 860}, color_scheme=scheme)
                    page.goto(base + path)
                    page.evaluate("localStorage.clear()")
                    page.reload()
                    if page.locator(".td-search").count():  # its form is built once the search index loads
                        page.wait_for_selector(".td-search-form")
                    if mode is None:
                        page.evaluate("window.scrollTo(0, 120)")
                        page.wait_for_timeout(400)  # the header's title change on scrolling
                        page.screenshot(path=str(out / f"{name}-{scheme}.png"))
                        page.close()
                        continue
                    if mode == "search":
                        page.fill(".td-search-input", "Wait")
                        page.wait_for_function("document.querySelector('.td-search').getAttribute('data-state') === 'done'")
                        page.locator(".td-search").scroll_into_view_if_needed()
                        page.screenshot(path=str(out / f"{name}-{scheme}.png"))
                        page.close()
                        continue
                    channel = page.locator("[data-td-setting='channel']")
                    if channel.count() and mode not in ("flag", "heat"):
                        channel.select_option(mode)
                        page.wait_for_timeout(300)
                    if mode in ("flag", "heat") and page.locator("[data-td-setting='mode']").count():  # only where every token has a score
                        page.select_option("[data-td-setting='mode']", mode)
                    # the first trajectory with at least 10 flagged tokens (not an immediate end of sequence)
                    index = page.evaluate("Array.from(document.querySelectorAll('.td-traj')).findIndex("
                                          "t => t.querySelectorAll('.td-tokens i').length >= 10)"
                                          if mode not in ("flag", "heat") else
                                          "Array.from(document.querySelectorAll('.td-traj')).findIndex("
                                          "t => t.querySelectorAll('.td-tokens .h').length >= 10)")
                    page.evaluate(f"document.querySelectorAll('.td-traj')[{max(index, 0)}]"
                                  ".querySelector('.td-tokens').scrollIntoView(); window.scrollBy(0, -330)")
                    page.locator(".td-traj").nth(max(index, 0)).locator(
                        ".td-tokens .h" if mode in ("flag", "heat") else ".td-tokens i").nth(9).hover()
                    page.wait_for_timeout(200)
                    page.screenshot(path=str(out / f"{name}-{scheme}.png"))
                    page.close()
            browser.close()
        server.shutdown()
    print(f"screenshots written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
