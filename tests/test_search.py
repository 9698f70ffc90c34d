"""Search across the whole run: shards written at build time (cached like step pages) and the
search box of the overview and experiment pages, in real headless Chromium on real builds."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import given, settings, strategies as st

from conftest import build_site, tok, trajectory, write_step
from trajdocs.model import Tokens, Trajectory
from trajdocs.search import response_text, score_level, search_shard

WORDS = ["Wait", " wait", " the", " answer", " is", " 72", " Let", " me", " check", " Hmm", " WAIT", "\n"]
MARKUP = ' <img src=x onerror="window.__pwned=1"><b>bold</b>'
EXPS = ("alpha", "beta")
STEPS = (1, 2, 3, 4, 5)


def record(exp: str, step: int, index: int) -> dict:
    rng = random.Random(f"{exp}-{step}-{index}")
    tokens = [tok(w, high=s >= 2.0, score=s) for w, s in
              ((rng.choice(WORDS), round(rng.uniform(0, 3), 2)) for _ in range(8))]
    if (exp, step, index) == ("alpha", 2, 1):
        tokens.append(tok(MARKUP, high=True, score=2.9))
    text = "".join(t["text"] for t in tokens)
    reward = [0.0, 0.5, 1.0][index % 3]
    prompt = f"<|im_start|>user\nQuestion {index // 2} of step {step}: {'Wait' if index < 2 and step % 2 else 'go'}?<|im_end|>\n<|im_start|>assistant\n"
    return trajectory(step, index, tokens, reward=reward, full_sequence=prompt + text + "<|im_end|>",
                      info={"reward": reward, "response_length": len(tokens),
                            "reward_metrics": {"accuracy": 1.0 if reward == 1.0 else 0.0}})


def write_corpus(root: Path) -> None:
    for exp in EXPS:
        for step in STEPS:
            write_step(root / "results", exp, step, [record(exp, step, i) for i in range(4)])


def expected(root: Path, keep, exps=EXPS) -> set:
    """(experiment, step, trajectory) of every response the files say `keep`s."""
    out = set()
    for exp in exps:
        for path in sorted((root / "results" / exp / "trajectories").glob("*.json")):
            for i, rec in enumerate(json.loads(path.read_text(encoding="utf-8"))):
                if keep(rec):
                    out.add((exp, rec["global_step"], i))
    return out


def search(page, text: str) -> None:
    page.fill(".td-search-input", text)
    page.wait_for_function("document.querySelector('.td-search').getAttribute('data-state') === 'done'"
                           " && document.querySelector('.td-search-input').value === " + json.dumps(text))


def run_search(page, text: str) -> None:
    """After a filter changed (a search is pending or running): the search with every filter."""
    search(page, text)


def found(page) -> set:
    out = set()
    for href in page.eval_on_selector_all(".td-search-link", "links => links.map(a => a.href)"):
        m = re.search(r"/(alpha|beta)/step-(\d+)(?:-\d+)?(?:/|\.html)\?[^#]*#traj-(\d+)$", unquote(href))
        assert m, href
        out.add((m.group(1), int(m.group(2)), int(m.group(3))))
    return out


@pytest.fixture
def corpus(tmp_path: Path, serve) -> tuple[Path, str]:
    write_corpus(tmp_path)
    base = serve(tmp_path / "site")
    build_site(tmp_path, plugin={"runs": "results", "correct": {"field": "info.reward_metrics.accuracy", "min": 1}},
               site_url=base)
    return tmp_path, base


@pytest.mark.browser
def test_search_finds_exactly_the_responses_with_a_word(page, corpus):
    root, base = corpus
    page.goto(base + "runs/")
    page.keyboard.press("/")  # ours on this page, not Material's
    assert page.evaluate("document.activeElement.classList.contains('td-search-input')")
    page.keyboard.type("wait")
    page.wait_for_function("document.querySelector('.td-search').getAttribute('data-state') === 'done'")
    want = expected(root, lambda r: "wait" in r["pure_generated_text"].lower())
    assert want and found(page) == want
    status = page.locator(".td-search-status").inner_text()
    assert status.startswith(f"{len(want)} matching responses of {len(EXPS) * len(STEPS) * 4}")
    # per step and experiment, one chart point each
    assert page.locator(".td-search-point").count() == len(EXPS) * len(STEPS)
    page.check(".td-search-case")
    run_search(page, "Wait")
    assert found(page) == expected(root, lambda r: "Wait" in r["pure_generated_text"])
    assert "td-q=Wait" in page.url and "td-case=1" in page.url
    # regular expressions
    page.uncheck(".td-search-case")
    page.check(".td-search-regex")
    run_search(page, r"^wait\b|72$")
    rx = re.compile(r"^wait\b|72$", re.I | re.M)
    assert found(page) == expected(root, lambda r: rx.search(r["pure_generated_text"]) is not None)
    page.fill(".td-search-input", "(unclosed")
    page.wait_for_function("document.querySelector('.td-search').getAttribute('data-state') === 'error'")
    assert "Not a valid regular expression" in page.locator(".td-search-status").inner_text()
    # prompts
    page.uncheck(".td-search-regex")
    page.select_option(".td-search-in", "p")
    run_search(page, "Wait")
    got, want = found(page), expected(root, lambda r: "Wait?" in r["full_sequence"].split("assistant")[0])
    assert got == want, (sorted(got - want), sorted(want - got))
    assert page.errors == [] and page.outside == []


@pytest.mark.browser
def test_search_filters(page, corpus):
    root, base = corpus
    page.goto(base + "runs/")
    word = lambda r: "the" in r["pure_generated_text"].lower()  # noqa: E731
    search(page, "the")
    assert found(page) == expected(root, word)
    page.uncheck(".td-search-exp[value='beta']")
    page.wait_for_function("document.querySelector('.td-search').getAttribute('data-state') === 'running'"
                           " || !location.search.includes('td-exp=beta')")
    run_search(page, "the")
    assert found(page) == expected(root, word, exps=("alpha",))
    assert "td-exp=alpha" in page.url
    page.fill(".td-search-from", "2")
    page.fill(".td-search-to", "4")
    run_search(page, "the")
    assert found(page) == {k for k in expected(root, word, exps=("alpha",)) if 2 <= k[1] <= 4}
    page.fill(".td-search-from", "")
    page.fill(".td-search-to", "")
    page.check(".td-search-exp[value='beta']")
    page.fill(".td-search-rmin", "0.5")
    run_search(page, "the")
    assert found(page) == expected(root, lambda r: word(r) and r["info"]["reward"] >= 0.5)
    page.fill(".td-search-rmin", "")
    page.select_option(".td-search-ok", "incorrect")
    run_search(page, "the")
    assert found(page) == expected(root, lambda r: word(r) and r["info"]["reward_metrics"]["accuracy"] < 1)
    page.select_option(".td-search-ok", "")
    page.fill(".td-search-min", "2.5")
    run_search(page, "the")

    def scored(r):  # a token holding the match scored at least 2.5 (the saver writes token j's text
        gen = r["generated_tokens"]  # in entry j + 1, its score in entry j)
        return any("the" in g["text"].lower() and s.get("entropy_score", 0) >= 2.5 for g, s in zip(gen[1:], gen))
    assert found(page) == expected(root, scored) and found(page) != expected(root, word)
    # a new query cancels the running one: only its results are listed
    page.fill(".td-search-min", "")
    page.evaluate("""() => { const input = document.querySelector('.td-search-input');
        input.value = 'the'; input.dispatchEvent(new Event('input', {bubbles: true}));
        setTimeout(() => { input.value = 'hmm'; input.dispatchEvent(new Event('input', {bubbles: true})); }, 150); }""")
    page.wait_for_function("document.querySelector('.td-search-input').value === 'hmm'"
                           " && document.querySelector('.td-search').getAttribute('data-state') === 'done'")
    assert found(page) == expected(root, lambda r: "hmm" in r["pure_generated_text"].lower())
    assert page.errors == [] and page.outside == []


@pytest.mark.browser
def test_results_link_to_the_trajectory_with_the_match_highlighted(page, corpus):
    root, base = corpus
    page.goto(base + "runs/alpha/")
    assert page.locator(".td-search-exp").count() == 2
    assert page.locator(".td-search-exp[value='alpha']").is_checked()
    assert not page.locator(".td-search-exp[value='beta']").is_checked()
    search(page, "onerror")  # markup in a response is text, never markup
    assert found(page) == {("alpha", 2, 1)}
    snippet = page.locator(".td-search-snippet").first
    assert "<img src=x" in snippet.inner_text() and snippet.locator("img, b").count() == 0
    assert snippet.locator("mark").inner_text() == "onerror"
    page.locator(".td-search-link").first.click()
    page.wait_for_selector("#traj-1 ~ * .td-found, .td-search-target .td-found")
    target = page.locator(".td-search-target")
    assert target.get_attribute("data-index") == "1" and "Step 2" in page.locator("h1").inner_text()
    marked = target.locator(".td-found")
    assert marked.count() == 1 and "onerror" in marked.inner_text()
    top = marked.evaluate("e => e.getBoundingClientRect().top")
    assert 0 <= top < page.viewport_size["height"]
    assert page.evaluate("window.__pwned") is None
    # a chart point opens its step
    page.go_back()
    page.wait_for_selector(".td-search-point", state="attached")
    point = page.locator(".td-search-point").first
    step = point.get_attribute("data-step")
    point.click()
    page.wait_for_function(f"(document.querySelector('article h1') || {{}}).textContent === 'Step {step}'")
    # a prompt match: the prompt opened and marked
    page.goto(base + "runs/?td-q=Wait&td-in=p&td-case=1")
    page.wait_for_function("document.querySelector('.td-search').getAttribute('data-state') === 'done'")
    assert page.input_value(".td-search-input") == "Wait" and page.locator(".td-search-case").is_checked()
    assert page.input_value(".td-search-in") == "p"  # the URL restores the search
    page.locator(".td-search-link").first.click()
    page.wait_for_selector(".td-found")
    assert page.locator(".td-found").first.evaluate("e => e.closest('details').open")
    assert page.locator(".td-found").first.inner_text() == "Wait"
    assert page.errors == [] and page.outside == []


@pytest.mark.browser
def test_search_from_disk(page, tmp_path):
    write_corpus(tmp_path)
    site = build_site(tmp_path, use_directory_urls=False,
                      plugin={"runs": "results", "trajectories_per_page": 2})  # two prompt groups: two pages a step
    page.goto((site / "runs" / "index.html").as_uri())
    search(page, "check")
    assert found(page) == expected(tmp_path, lambda r: "check" in r["pure_generated_text"].lower())
    links = page.eval_on_selector_all(".td-search-link", "links => links.map(a => a.getAttribute('href'))")
    for href in links:  # trajectories 2 and 3 are on the step's second page
        index = int(href.rsplit("#traj-", 1)[1])
        assert re.search(r"/step-\d+-2\.html\?" if index >= 2 else r"/step-\d+\.html\?", href), href
    second = next(i for i, href in enumerate(links) if "-2.html" in href)
    page.locator(".td-search-link").nth(second).click()
    page.wait_for_selector(".td-search-target .td-found")
    assert page.url.startswith("file://") and "td-q=check" in page.url and "-2.html" in page.url
    assert "page 2 of 2" in page.locator("h1").inner_text()
    assert page.errors == [] and page.outside == []


@pytest.mark.browser
def test_material_keeps_its_own_search_keys(page, corpus):
    _, base = corpus
    page.goto(base + "runs/")
    page.keyboard.press("s")
    assert page.evaluate("document.activeElement.classList.contains('md-search__input')")
    page.goto(base + "runs/alpha/step-1/")
    page.keyboard.press("/")  # no search box here: Material's
    assert page.evaluate("document.activeElement.classList.contains('md-search__input')")


def cache_shards(cache: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in cache.glob("*.search.js")}


def test_shards_are_cached_like_step_pages(tmp_path):
    write_corpus(tmp_path)
    plugin = {"runs": "results", "cache_dir": str(tmp_path / "cache")}
    site = build_site(tmp_path, plugin=plugin)
    first = cache_shards(tmp_path / "cache")
    assert len(first) == len(EXPS) * len(STEPS)
    build_site(tmp_path, plugin=plugin)
    assert cache_shards(tmp_path / "cache") == first  # a warm rebuild writes none
    write_step(tmp_path / "results", "alpha", 6, [record("alpha", 6, i) for i in range(4)])
    build_site(tmp_path, plugin=plugin)
    now = cache_shards(tmp_path / "cache")
    assert len(now) == len(first) + 1 and {k: v for k, v in now.items() if k in first} == first
    shard = (site / "runs" / "alpha" / "search" / "step-6.js").read_text(encoding="utf-8")
    assert shard.startswith("tdShard(") and "Question 1 of step 6" in shard


def test_shards_are_small_beside_the_input(tmp_path):
    demo = pytest.importorskip("trajdocs.demo")
    try:
        demo.qwen_tokenizer()
    except demo.DemoUnavailable as err:
        pytest.skip(str(err))
    demo.write_demo(str(tmp_path / "results"), demo.DemoOptions(experiments=2, steps=3, token_lists=True))
    site = build_site(tmp_path)
    inputs = sum(p.stat().st_size for p in (tmp_path / "results").rglob("*") if p.is_file())
    shards = sum(p.stat().st_size for p in (site / "runs").rglob("search/step-*.js"))
    assert 0 < shards <= 0.08 * inputs


# --- the shard's scored tokens ---------------------------------------------------------------

def decode(scores: list[int]) -> list[tuple[int, int, int]]:
    out, pos = [], 0
    for i in range(0, len(scores), 3):
        start = pos + scores[i]
        out.append((start, scores[i + 1], scores[i + 2]))
        pos = start + scores[i + 1]
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=4), st.one_of(st.none(), st.floats(0, 20))), max_size=30), st.booleans())
def test_scored_tokens_point_at_their_text(tokens, end):
    texts = [t for t, _ in tokens]
    scores = [s for _, s in tokens]
    if end:
        texts, scores = texts + [""], scores + [1.0]
    traj = Trajectory(0, tokens=Tokens(texts, [False] * len(texts), scores, end=end))
    text, packed = response_text(traj)
    assert text == "".join(t for t, _ in tokens)
    want = [(t, score_level(s)) for t, s in tokens if s is not None]
    got = decode(packed)
    units = text.encode("utf-16-le", "surrogatepass")  # offsets count UTF-16 units, as JavaScript does
    assert [(units[2 * a:2 * (a + n)].decode("utf-16-le", "surrogatepass"), level) for a, n, level in got] == want


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                                                     st.floats(0, 10))), max_size=40), st.integers(0, 50))
def test_scored_tokens_match_their_plain_twin(tokens, offset):
    import plain
    from itertools import accumulate
    from trajdocs.search import scored_tokens

    starts = list(accumulate([n for n, _ in tokens], initial=offset))
    values = [v for _, v in tokens]
    fast, slow = [7], [7]
    assert scored_tokens(starts, values, 3, fast) == plain.scored_tokens(starts, values, 3, slow)
    assert fast == slow


@given(st.floats(0, 100), st.integers(0, 10000))
def test_score_level_compares_exactly_at_two_decimals(score, hundredths):
    assert (score_level(score) >= hundredths) == (score >= hundredths / 100 - 1e-9) or \
        abs(score - hundredths / 100) < 1e-8


def test_shard_escapes_nothing_away():
    traj = Trajectory(3, prompt="p</script>", pure_generated_text="a\u2028b\ud800")
    body = search_shard([traj], {3: 2}).decode()
    assert body.startswith("tdShard(") and body.endswith(");\n")
    value = json.loads(body[len("tdShard("):-3])
    assert value["p"] == ["p</script>"] and value["t"] == [[3, 2, 0, None, None, "a\u2028b\ud800", []]]


@pytest.mark.browser
def test_find_a_forking_token_across_the_run(page, corpus):
    root, base = corpus
    page.goto(base + "runs/alpha/")
    row = page.locator("table.td-forking tbody tr").first
    token = row.locator("code.td-tok").inner_text()
    row.locator("button.td-find").click()
    page.wait_for_function("document.querySelector('.td-search').getAttribute('data-state') === 'done'")
    assert page.input_value(".td-search-input") == token and page.locator(".td-search-case").is_checked()
    assert page.locator(".td-search-exp[value='beta']").is_checked()  # across the run, not only this experiment
    assert found(page) == expected(root, lambda r: token in r["pure_generated_text"])
    assert page.errors == [] and page.outside == []


@pytest.mark.browser
def test_find_selected_text_of_a_step_page_across_the_run(page, corpus):
    root, base = corpus
    page.goto(base + "runs/beta/step-3/")
    token = page.locator(".td-traj .td-tokens > i", has_text="answer").first
    token.scroll_into_view_if_needed()
    token.evaluate("""e => { const r = document.createRange(); r.selectNodeContents(e);
        const s = getSelection(); s.removeAllRanges(); s.addRange(r); }""")
    text = page.evaluate("getSelection().toString()")
    token.dispatch_event("mouseup")
    page.locator("a.td-find-link").click()
    page.wait_for_function("document.querySelector('.td-search') && document.querySelector('.td-search').getAttribute('data-state') === 'done'")
    assert page.input_value(".td-search-input") == text and page.locator(".td-search-case").is_checked()
    assert page.locator(".td-search-exp:checked").count() == 2
    assert found(page) == expected(root, lambda r: text in r["pure_generated_text"])
    assert page.errors == [] and page.outside == []


@pytest.mark.browser
def test_a_missing_shard_is_reported_not_hidden(page, corpus):
    root, base = corpus
    (root / "site" / "runs" / "beta" / "search" / "step-3.js").unlink()
    page.goto(base + "runs/")
    search(page, "the")
    assert "1 step shards could not be loaded" in page.locator(".td-search-status").inner_text()
    assert found(page) == {k for k in expected(root, lambda r: "the" in r["pure_generated_text"].lower())
                           if k[:2] != ("beta", 3)}
    assert page.outside == []


def test_one_search_index_for_the_site_and_small_boxes(tmp_path):
    # every box points at one index of experiments and steps: a page does not grow with them
    write_corpus(tmp_path)
    site = build_site(tmp_path, strict=True)
    text = (site / "runs" / "search-index.js").read_text(encoding="utf-8")
    assert text.startswith("tdSearchIndex(") and text.endswith(");\n")
    index = json.loads(text[len("tdSearchIndex("):-3])
    assert [e["name"] for e in index["experiments"]] == list(EXPS)
    for exp in index["experiments"]:
        assert exp["shards"] == f"{exp['name']}/search/"
        assert [s[0] for s in exp["steps"]] == list(STEPS) and all(s[1] == 4 for s in exp["steps"])
        for step, _, urls, version in exp["steps"]:
            shard = site / "runs" / exp["name"] / "search" / f"step-{step}.js"  # fetched as step-N.js?v=<version>:
            assert version == hashlib.sha1(shard.read_bytes()).hexdigest()[:10]  # a changed shard, a new URL
            assert urls == [f"{exp['name']}/step-{step}/"]
            assert (site / "runs" / urls[0] / "index.html").is_file()
    boxes = {}
    for page in (site / "runs" / "index.html", site / "runs" / "beta" / "index.html"):
        m = re.search(r'data-search="([^"]*)"', page.read_text(encoding="utf-8"))
        assert m, page
        boxes[page.parent.name] = json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    version = hashlib.sha1(text.encode()).hexdigest()[:10]
    assert boxes["runs"] == {"index": f"search-index.js?v={version}", "current": list(EXPS), "here": "overview"}
    assert boxes["beta"] == {"index": f"../search-index.js?v={version}", "current": ["beta"], "here": "experiment"}
