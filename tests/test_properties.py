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


def spans(root) -> list:
    found = []
    for el in root.iter():
        if el.tag == "span":
            found.append(el)
    return found


def token_text(span) -> str:
    raw = span.get("data-raw")
    if raw is not None:
        return json.loads('"' + raw + '"')
    return "".join(span.itertext())


@settings(max_examples=300, deadline=None)
@given(token_lists, st.integers(1, 50))
def test_tokens_round_trip_and_produce_only_our_elements(items, max_tokens):
    tokens = Tokens([t for t, _, _ in items], [f for _, f, _ in items], [s for _, _, s in items])
    root = parse(tokens_html(tokens, max_tokens))
    tags = {el.tag for el in root.iter()} - {"DOCUMENT_FRAGMENT"}
    assert tags <= {"div", "span", "template", "button"}, tags
    found = spans(root)
    assert [token_text(s) for s in found] == tokens.texts
    for span, flag, score in zip(found, tokens.flags, tokens.scores):
        assert set(span.attrib) <= TOKEN_ATTRS and len(span) == 0
        assert (span.get("class") == "h") == flag
        if score is None:
            assert span.get("data-e") is None
        elif math.isfinite(score):
            assert math.isclose(float(span.get("data-e")), score, rel_tol=1e-3, abs_tol=1e-12)
        else:
            assert span.get("data-e") in ("NaN", "Infinity", "-Infinity")


ALLOWED_TAGS = {"section", "h2", "span", "dl", "div", "dt", "dd", "p", "details", "summary", "pre", "template", "button"}


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
        assert not [a for a in el.attrib if a.startswith("on") or a in ("src", "href", "style")], el.attrib
    shown = ["".join(el.itertext()) for el in root.iter() if el.tag == "pre"]
    assert shown == [displayed(prompt), displayed(generated), displayed(generated)]
    keys = ["".join(el.itertext()) for el in root.iter() if el.tag == "dt"]
    assert keys[-len(metadata):] == [displayed(k) for k in metadata] if metadata else True


def displayed(text: str) -> str:
    """What text blocks show: NUL as U+2400 and lone surrogates as U+FFFD, everything else as is."""
    return "".join("\u2400" if c == "\x00" else "\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
