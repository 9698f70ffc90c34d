"""Property tests: any token text renders to text only, and reads back exactly."""

from __future__ import annotations

import json
import math

import html5lib
from hypothesis import given, settings
from hypothesis import strategies as st

from trajdocs.model import Tokens, Trajectory
from trajdocs.render import RenderOptions, tokens_html, trajectory_html

TRICKY = ["<", ">", "&", "&amp;", "\r", "\r\n", "\x00", "</span>", "<script>", '"', "'", "<!--", "\ufeff",
          "\ud800", "\u2028", " ", "\n\n", "<template>", "</div>", "<![CDATA[", "\x0c"]
texts = st.one_of(st.text(st.characters(exclude_categories=()), max_size=12), st.sampled_from(TRICKY))
scores = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5).map(float))
token_lists = st.lists(st.tuples(texts, st.booleans(), scores), max_size=40)
TOKEN_ATTRS = {"class", "data-e", "data-raw"}


def parse(html: str):
    return html5lib.parseFragment(html, treebuilder="etree", namespaceHTMLElements=False)


def token_elements(root) -> list:
    return [el for el in root.iter() if el.tag == "i"]


def token_text(element) -> str:
    raw = element.get("data-raw")
    if raw is not None:
        return json.loads('"' + raw + '"')
    return "".join(element.itertext())


@settings(max_examples=300, deadline=None)
@given(token_lists, st.integers(1, 50))
def test_tokens_round_trip_and_produce_only_our_elements(items, max_tokens):
    tokens = Tokens([t for t, _, _ in items], [f for _, f, _ in items], [s for _, _, s in items])
    root = parse(tokens_html(tokens, max_tokens))
    tags = {el.tag for el in root.iter()} - {"DOCUMENT_FRAGMENT"}
    assert tags <= {"div", "i", "template", "button"}, tags
    found = token_elements(root)
    assert [token_text(s) for s in found] == tokens.texts
    for element, flag, score in zip(found, tokens.flags, tokens.scores):
        assert set(element.attrib) <= TOKEN_ATTRS and len(element) == 0
        assert (element.get("class") == "h") == flag
        if score is None:
            assert element.get("data-e") is None
        elif math.isfinite(score):
            assert math.isclose(float(element.get("data-e")), score, rel_tol=1e-3, abs_tol=1e-12)
        else:
            assert element.get("data-e") in ("NaN", "Infinity", "-Infinity")


ALLOWED_TAGS = {"section", "h2", "span", "i", "dl", "div", "dt", "dd", "p", "details", "summary", "pre", "template", "button",
                "wbr", "a"}  # wbr: a line-break opportunity in metadata keys, no text; a: the trajectory's own link


@settings(max_examples=150, deadline=None)
@given(token_lists, texts, st.dictionaries(texts, st.one_of(texts, scores, st.integers()), max_size=6), texts)
def test_any_trajectory_text_stays_text(items, prompt, metadata, generated):
    traj = Trajectory(index=0, tokens=Tokens([t for t, _, _ in items], [f for _, f, _ in items], [s for _, _, s in items]),
                      prompt=prompt, generated_text=generated, pure_generated_text=generated, metadata=metadata)
    root = parse(trajectory_html(traj, RenderOptions(max_tokens=10)))
    for el in root.iter():
        if el.tag == "DOCUMENT_FRAGMENT":
            continue
        assert el.tag in ALLOWED_TAGS, el.tag
        assert not [a for a in el.attrib if a.startswith("on") or a in ("src", "style")], el.attrib
        assert "href" not in el.attrib or el.attrib["href"] == "#t0", el.attrib  # only the link to itself
    pres = [el for el in root.iter() if el.tag == "pre"]
    assert len(pres) == 3
    assert "".join(pres[0].itertext()) == displayed(prompt)
    joined = "".join(t for t, _, _ in items)
    for pre in pres[1:]:
        if "data-from-tokens" in pre.attrib:  # left out because the browser rebuilds it from the tokens
            assert pre.get("data-tail") == "" and generated == joined and not pre.text
        else:
            assert "".join(pre.itertext()) == displayed(generated)
    keys = ["".join(el.itertext()) for el in root.iter() if el.tag == "dt"]
    assert keys[-len(metadata):] == [displayed(k) for k in metadata] if metadata else True


@settings(max_examples=100, deadline=None)
@given(token_lists)
def test_text_equal_to_the_tokens_is_not_repeated(items):
    texts = [t for t, _, _ in items]
    joined = "".join(texts)
    traj = Trajectory(index=0, tokens=Tokens(texts, [f for _, f, _ in items], [s for _, _, s in items]),
                      generated_text="\n" + joined, pure_generated_text=joined, prompt_tail="\n")
    pres = [el for el in parse(trajectory_html(traj)).iter() if el.tag == "pre"]
    unshowable = any(c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF for c in joined)
    assert all(("data-from-tokens" in p.attrib) != unshowable for p in pres)
    if not unshowable:
        assert [p.get("data-tail") for p in pres] == ["\n", ""]


def displayed(text: str) -> str:
    """What text blocks show: NUL as U+2400 and lone surrogates as U+FFFD, everything else as is."""
    return "".join("\u2400" if c == "\x00" else "\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
