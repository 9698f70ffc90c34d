"""Helpers: write trajectory files as trainers do, build real MkDocs sites, drive real Chromium."""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# --- writing inputs ---------------------------------------------------------------------------

def tok(text: str, high: bool = False, score: float | None = None) -> dict:
    obj: dict = {"text": text, "high_entropy": high}
    if score is not None:
        obj["entropy_score"] = score
    return obj


def saver_tokens(tokens: list[dict], end: dict | None = None, tail: str = "\n") -> list[dict]:
    """`generated_tokens` as LightRFT's saver writes it for response `tokens` (each with its own
    flag and score): entry j has the text of the token before response token j (entry 0: the
    prompt's last token, `tail`) and response token j's flag and score; the last entry carries the
    end-of-sequence token's (`end`: unflagged unless given), whose text is not written."""
    marks = [{k: v for k, v in t.items() if k != "text"} for t in tokens] + [end or {"high_entropy": False}]
    return [{"text": text, **mark} for text, mark in zip([tail] + [t["text"] for t in tokens], marks)]


def trajectory(step: int, index: int, tokens: list[dict], reward: float = 1.0, end: dict | None = None,
               **extra) -> dict:
    """One LightRFT trajectory as the newer TrajectorySaver writes it (`tokens`: the response
    tokens with their own flags and scores, placed as the saver places them; `end`: the
    end-of-sequence token's flag and score)."""
    text = "".join(t["text"] for t in tokens)
    gen = saver_tokens(tokens, end)
    record = {
        "global_step": step, "experience_index": index // 4, "sample_in_exp": index % 4,
        "full_sequence": f"<|im_start|>user\nQuestion {index}?<|im_end|>\n<|im_start|>assistant\n{text}<|im_end|>",
        "generated_text": "\n" + text, "pure_generated_text": text,
        "generated_tokens": gen, "pure_generated_tokens": gen[1:],
        "label": "gsm8k_rule", "reference": "72", "response_token_count": len(tokens),
        "advantages": 0.5, "return": 0.5,
        "info": {"reward": reward, "response_length": len(tokens), "reward_metrics": {"accuracy": reward}},
    }
    if len(gen) < 2:
        del record["pure_generated_tokens"]  # the saver writes it for more than one entry only
    record.update(extra)
    return record


def write_step(root: Path, experiment: str, step: int, records, prefix: str = "trajectories") -> Path:
    folder = root / experiment / "trajectories"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}_step_{step}.json"
    text = records if isinstance(records, str) else json.dumps(records, indent=2, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    return path


def simple_run(root: Path, experiment: str, steps, per_step: int = 2) -> None:
    for step in steps:
        records = [trajectory(step, i, [tok("The", True, 2.5), tok(" answer"), tok(" is", True, 1.5), tok(" 72")],
                              reward=float(i % 2)) for i in range(per_step)]
        write_step(root, experiment, step, records)


# --- building sites ---------------------------------------------------------------------------

def build_site(project: Path, plugin: dict | None = None, theme: str | dict = "material", strict: bool = False,
               **extra) -> Path:
    """Write mkdocs.yml + docs/ into `project`, build with real MkDocs, return the site folder."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    docs = project / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    if not (docs / "index.md").exists():
        (docs / "index.md").write_text("# Home\n\nWelcome.\n", encoding="utf-8")
    theme_config: dict = theme if isinstance(theme, dict) else {"name": theme}
    if theme == "material":
        theme_config.update(font=False, features=["navigation.instant"], palette=[
            {"scheme": "default", "toggle": {"icon": "material/brightness-4", "name": "dark"}},
            {"scheme": "slate", "toggle": {"icon": "material/brightness-7", "name": "light"}}])
    config = {"site_name": "Test runs", "theme": theme_config,
              "plugins": ["search", {"trajdocs": plugin or {"runs": "results"}}], **extra}  # extra may replace plugins
    (project / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    cfg = load_config(str(project / "mkdocs.yml"), strict=strict)
    build(cfg)
    return project / "site"


class WarningCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def build_site_warnings(project: Path, plugin: dict | None = None, **kwargs) -> tuple[Path, list[str]]:
    """`build_site`, and the warnings MkDocs logged while building."""
    handler = WarningCapture()
    logging.getLogger("mkdocs").addHandler(handler)
    try:
        site = build_site(project, plugin, **kwargs)
    finally:
        logging.getLogger("mkdocs").removeHandler(handler)
    return site, handler.messages


@pytest.fixture
def warnings_logged():
    handler = WarningCapture()
    logger = logging.getLogger("mkdocs")
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


# --- reading output ---------------------------------------------------------------------------

class TokenExtractor(HTMLParser):
    """Collects, per `.td-tokens` container, the decoded text of each token element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.containers: list[list[dict]] = []
        self._depth = 0  # element depth inside the current container
        self._token: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self._depth:
            self._depth += 1
            if self._depth == 2 and tag == "i":
                self._token = {"text": "", "class": a.get("class"), "score": a.get("data-e")}
            return
        if tag == "div" and "td-tokens" in (a.get("class") or "").split():
            self.containers.append([])
            self._depth = 1

    def handle_endtag(self, tag):
        if not self._depth:
            return
        if self._depth == 2 and self._token is not None:
            self.containers[-1].append(self._token)
            self._token = None
        self._depth -= 1

    def handle_data(self, data):
        if self._token is not None:
            self._token["text"] += data


def tokens_in(html: str, with_end: bool = False) -> list[list[dict]]:
    """Tokens of each response; the end-of-sequence token (class td-end, no text) only with `with_end`."""
    parser = TokenExtractor()
    parser.feed(html)
    if with_end:
        return parser.containers
    return [[t for t in c if "td-end" not in (t["class"] or "").split()] for c in parser.containers]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --- browser ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must install it")
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def serve():
    """serve(folder) -> base URL of a static server on 127.0.0.1 for that folder."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page(browser):
    """A fresh browser page that records console errors, page errors and off-machine requests."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = context.new_page()
    pg.errors = []
    pg.outside = []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("request", lambda r: pg.outside.append(r.url)
          if not r.url.startswith(("http://127.0.0.1", "data:", "about:", "file:")) else None)
    yield pg
    context.close()


def wait_for_step(page, step: int) -> None:
    """After a click or key that navigates: Material's instant navigation changes the URL before
    it swaps the content in, so wait for the new page's heading too."""
    page.wait_for_url(f"**/step-{step}/")
    page.wait_for_function(f"(document.querySelector('article h1, h1') || {{}}).textContent === 'Step {step}'")


def steps_table(html: str) -> str:
    """The experiment page's table of steps (charts link to steps too)."""
    start = html.index('<table class="td-table td-sortable td-steps">')
    return html[start:html.index("</table>", start)]
