"""Search benchmark hook: how fast the search box of a built site answers, and how large its shards
are beside the input. Meant to be called by the build benchmark (`benchmarks/build.py`) on a site
it has just built, e.g. on the 2 x 200-step corpus:

    from benchmarks.search import measure_search
    measure_search(site_dir, runs_dir)   # {"first_results_ms": ..., "full_scan_ms": ..., "shard_ratio": ...}

Targets (issue 17): first results within 300 ms of typing, a full scan within 2 s, all shards
together at most 0.08 x the input size. Nothing here runs on import.
"""

from __future__ import annotations

import functools
import shutil
import statistics
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Set in the page before typing: the time of the last input event, the first progress message
# that brought results (status text with a non-zero count, or a snippet), and the end of the scan.
PROBE = r"""
() => {
  const box = document.querySelector('.td-search');
  const input = box.querySelector('.td-search-input');
  window.__td = {typed: null, first: null, done: null};
  input.addEventListener('input', () => { window.__td.typed = performance.now(); window.__td.first = null; window.__td.done = null; });
  new MutationObserver(() => {
    const t = window.__td;
    if (t.typed === null) return;
    if (t.first === null && box.querySelector('.td-search-hit, .td-search-point')) t.first = performance.now();
    if (t.done === null && box.getAttribute('data-state') === 'done') t.done = performance.now();
  }).observe(box, {subtree: true, childList: true, attributes: true});
}
"""


def shard_ratio(site_dir: Path, runs_dir: Path) -> dict:
    """Bytes of every search shard in the site beside the bytes of every input file."""
    shards = sum(p.stat().st_size for p in Path(site_dir).rglob("search/step-*.js"))
    inputs = sum(p.stat().st_size for p in Path(runs_dir).rglob("*") if p.is_file())
    return {"shard_bytes": shards, "input_bytes": inputs, "shard_ratio": shards / inputs if inputs else None}


def measure_search(site_dir: Path, runs_dir: Path, queries: tuple[str, ...] = ("Wait", "boxed", r"\d+ apples"),
                   page: str = "runs/", repeat: int = 3) -> dict:
    """Serve `site_dir` on 127.0.0.1, open its overview in headless Chromium and type each query
    (`repeat` times, the shard cache of the page emptied by a reload between runs): the median
    time from the last keystroke to the first results and to the end of the scan, in ms, and the
    shard size ratio. The last query is typed in regular-expression mode."""
    from playwright.sync_api import sync_playwright

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # noqa: ANN002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/{page}"
    first, full = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
                                        headless=True, args=["--no-sandbox", "--disable-gpu"])
            tab = browser.new_page()
            for n, query in enumerate(queries):
                for _ in range(repeat):
                    tab.goto(url)
                    tab.wait_for_selector(".td-search-input")
                    if n == len(queries) - 1:
                        tab.check(".td-search-regex")
                    tab.evaluate(PROBE)
                    tab.type(".td-search-input", query)
                    tab.wait_for_function("window.__td.done !== null", timeout=60_000)
                    times = tab.evaluate("window.__td")
                    if times["first"] is not None:
                        first.append(times["first"] - times["typed"])
                    full.append(times["done"] - times["typed"])
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return {"first_results_ms": statistics.median(first) if first else None,
            "full_scan_ms": statistics.median(full), **shard_ratio(site_dir, runs_dir)}
