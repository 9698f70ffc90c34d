"""What LightRFT's saver and verl's dumper really write (issue 13), each shape read and shown as
written: the parse shortcut against the plain parse, badges only from per-trajectory fields or a
rule, scores on the tokens they belong to, prompts of marker files, single values, runs of one
special token, and controls only for data the file has."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import build_site, read, saver_tokens, tok, tokens_in, trajectory, write_step
from trajdocs.formats import lightrft
from trajdocs.formats import loads, read_step

QWEN_PROMPT = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


def same(a, b) -> bool:
    """Equal as JSON values, NaN equal to NaN."""
    return json.dumps(a) == json.dumps(b)


def saver_record(step: int, index: int, tokens: list[dict], question: str = "What is 2+2?", **extra) -> dict:
    """A trajectory on LightRFT's real call path (unbatched samples): scalar advantages, return,
    log-prob and value, list-valued reward_metrics (the whole micro-batch), no label or reference,
    sample_in_exp 0; pure_generated_tokens only when generated_tokens has more than one entry."""
    text = "".join(t["text"] for t in tokens)
    gen = saver_tokens(tokens)
    record = {
        "global_step": step, "experience_index": index, "sample_in_exp": 0,
        "full_sequence": QWEN_PROMPT.format(q=question) + text + "<|im_end|>",
        "generated_text": "\n" + text, "pure_generated_text": text,
        "label": None, "reference": None, "repeat_score": 0.0, "reflection_pattern_score": 0,
        "reflection_pattern_details": {}, "policy_entropy": 0.0, "response_token_count": len(tokens),
        "generated_tokens": gen,
        **({"pure_generated_tokens": gen[1:]} if len(gen) > 1 else {}),  # right after it, as the saver adds them
        "advantages": -0.25, "return": -0.25, "action_log_probs": -1.5, "values": 0.0,
        "info": {"reward": 0.1, "response_length": float(len(tokens) + 1), "total_length": 40.0,
                 "reward_metrics": {"accuracy_reward": [0.0, 1.0, 0.0, 1.0], "format_reward": [1.0, 1.0, 0.0, 1.0]}},
        "has_images": False,
    }
    record.update(extra)
    return record


def dump(records, indent=2, ensure_ascii=False) -> bytes:
    return json.dumps(records, indent=indent, ensure_ascii=ensure_ascii).encode()


# --- 1. the parse shortcut never changes what is read ------------------------------------------

def test_immediate_eos_before_a_full_trajectory_keeps_every_trajectory(tmp_path):
    # the data-loss shape: a trajectory with generated_tokens only (immediate EOS, or one token),
    # then trajectories with both arrays; 8 in the file, 8 on the page, each with its own tokens
    records = []
    for i in range(8):
        tokens = [] if i in (1, 4) else [tok(f" w{i}-{j}", j == 0, 1.0 + j) for j in range(3 + i)]
        records.append(saver_record(1, i, tokens, question=f"Question {i}?"))
    path = write_step(tmp_path / "results", "exp", 1, records)
    step = read_step(str(path))
    assert len(step.trajectories) == 8 and step.problems == []
    for traj, record in zip(step.trajectories, records):
        assert traj.tokens.texts[:-1] == [t["text"] for t in record["generated_tokens"][1:]]
        assert traj.metadata["experience_index"] == record["experience_index"]
    site = build_site(tmp_path, strict=True)
    html = read(site / "runs" / "exp" / "step-1" / "index.html")
    assert html.count('<section class="td-traj"') == 8
    assert [[t["text"] for t in c] for c in tokens_in(html)] == \
        [[t["text"] for t in r["generated_tokens"][1:]] for r in records]
    data = dump(records)
    assert same(lightrft.loads_lightrft(data), loads(data))


TEXT = st.text(max_size=4) | st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6) | st.sampled_from(
    ["\ufffd", " \ufffd", "", "\n", '"pure_generated_tokens": [', '\n    ],\n    "pure_generated_tokens": [\n',
     "\n      }", "<|im_end|>", "]", "},"])
PLAIN_NUMBER = st.floats(0.001, 12) | st.sampled_from([2.5, 0.1, 0.0, 1])
ODD_NUMBER = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**20, 10**20)
              | st.sampled_from([1e-05, math.nan])).map(lambda v: v)  # orjson writes 1e-05 as 0.00001, NaN as null
NUMBER = st.one_of(PLAIN_NUMBER, PLAIN_NUMBER, PLAIN_NUMBER, PLAIN_NUMBER, PLAIN_NUMBER, ODD_NUMBER)
TOKEN = st.builds(lambda text, flag, score: {"text": text, "high_entropy": flag, **({} if score is None else {"entropy_score": score})},
                  TEXT, st.booleans(), st.none() | NUMBER)


@st.composite
def records(draw):
    out = []
    for i in range(draw(st.integers(0, 5))):
        gen = draw(st.lists(TOKEN, max_size=6))
        record = {"global_step": 1, "full_sequence": draw(TEXT)}
        shape = draw(st.sampled_from(["saver", "saver", "gen only", "pure only", "differ", "reordered", "empty"]))
        if shape in ("saver", "reordered", "gen only", "differ"):
            record["generated_tokens"] = gen
        if shape in ("saver", "reordered") and len(gen) > 1:
            record["pure_generated_tokens"] = gen[1:]
        elif shape == "differ":
            record["pure_generated_tokens"] = draw(st.lists(TOKEN, max_size=6))
        elif shape == "pure only":
            record["pure_generated_tokens"] = gen
        elif shape == "empty":
            record["generated_tokens"], record["pure_generated_tokens"] = [], []
        if shape == "reordered":
            record = dict(reversed(list(record.items())))
        record["advantages"] = draw(NUMBER | st.lists(NUMBER, max_size=3))
        record["info"] = {"reward": draw(NUMBER), "note": draw(TEXT)}
        out.append(record)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records(), st.sampled_from([2, 2, 2, 4, 1, None]), st.booleans())
def test_fast_parse_equals_plain_parse(items, indent, ensure_ascii):
    data = dump(items, indent=indent, ensure_ascii=ensure_ascii)
    assert same(lightrft.loads_lightrft(data), loads(data))


PLAIN_TOKEN = st.builds(lambda text, flag, score: {"text": text, "high_entropy": flag, **({} if score is None else {"entropy_score": score})},
                        st.text(max_size=5), st.booleans(), st.none() | PLAIN_NUMBER)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(PLAIN_TOKEN, min_size=1, max_size=8), min_size=1, max_size=6), st.data())
def test_fast_parse_takes_its_shortcut_on_the_savers_shape(monkeypatch, arrays, data):
    # what the saver writes (pure right after generated_tokens when it has more than one entry):
    # the shortcut is taken (a shorter text parsed, once) and the result is the plain parse's
    items = []
    for gen in arrays:
        record = {"global_step": 1, "generated_tokens": gen}
        if len(gen) > 1:
            record["pure_generated_tokens"] = gen[1:]
        record["advantages"] = data.draw(PLAIN_NUMBER | ODD_NUMBER)
        items.append(record)
    written = dump(items)
    expected = loads(written)
    parsed: list[int] = []
    monkeypatch.setattr(lightrft, "loads", lambda text: (parsed.append(len(text)), loads(text))[1])
    assert same(lightrft.loads_lightrft(written), expected)
    if any(len(gen) > 1 for gen in arrays):
        assert len(lightrft._cuts(written)) == sum(len(gen) > 1 for gen in arrays)
        assert len(written) not in parsed  # never fell back to the plain parse


@pytest.mark.parametrize("damage", ["truncated", "extra comma", "pure differs", "nan in tokens", "1e-05 score"])
def test_fast_parse_falls_back_or_fails_like_the_plain_parse(damage):
    records = [saver_record(1, i, [tok(f" t{j}", j == 1, 0.5 + j) for j in range(4)]) for i in range(3)]
    if damage == "pure differs":
        records[1]["pure_generated_tokens"][2] = tok("other")
    if damage == "nan in tokens":
        records[2]["generated_tokens"][1]["entropy_score"] = math.nan
        records[2]["pure_generated_tokens"][0]["entropy_score"] = math.nan
    if damage == "1e-05 score":
        records[0]["generated_tokens"][2]["entropy_score"] = 1e-05
        records[0]["pure_generated_tokens"][1]["entropy_score"] = 1e-05
    data = dump(records)
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    if damage == "extra comma":
        data = data.replace(b'"high_entropy": false\n      }\n    ]', b'"high_entropy": false\n      },\n    ]', 1)
    try:
        expected = loads(data)
    except ValueError as err:
        with pytest.raises(type(err)):
            lightrft.loads_lightrft(data)
        return
    assert same(lightrft.loads_lightrft(data), expected)


# --- 2. badges never guessed ------------------------------------------------------------------

def test_no_badge_from_reward_or_micro_batch_lists(tmp_path):
    # reward 0.1 = a wrong, well-formatted answer; accuracy_reward lists the whole micro-batch
    records = [saver_record(1, i, [tok(" 4", True, 1.0)]) for i in range(4)]
    write_step(tmp_path / "results", "exp", 1, records)
    site = build_site(tmp_path, strict=True)
    html = read(site / "runs" / "exp" / "step-1" / "index.html")
    assert "data-correct" not in html and "td-badge" not in html
    assert "<th>Correct</th>" not in html and 'value="correct"' not in html
    # shown as what it is (the note is drawn by CSS: the value's text stays the value)
    assert "reward_<wbr>metrics.<wbr>accuracy_<wbr>reward</dt><dd class=\"td-batch\" title=\"LightRFT's saver writes" in html
    assert '<span class="td-list">list of 4: 0, 1, 0, 1</span>' in html
    assert "Mean accuracy" not in read(site / "runs" / "exp" / "index.html")


def test_badges_from_a_scalar_accuracy_field_or_the_rule(tmp_path):
    verl = tmp_path / "results" / "verl" / "rollout"
    verl.mkdir(parents=True)
    lines = [{"input": "user\nQ\nassistant\n", "output": f"a{i}", "score": 0.1, "step": 1, "acc": i % 2 == 0}
             for i in range(4)]
    (verl / "1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    write_step(tmp_path / "results", "lrft", 1, [saver_record(1, i, [tok(" 4", True, 1.0)],
                                                              info={"reward": 0.1, "reward_metrics": {"accuracy_reward": float(i % 2)}})
                                                 for i in range(4)])
    site = build_site(tmp_path, strict=True)
    html = read(site / "runs" / "verl" / "rollout" / "step-1" / "index.html")
    assert re.findall(r'data-correct="(\d)"', html) == ["1", "0", "1", "0"] and 'value="correct"' in html
    html = read(site / "runs" / "lrft" / "step-1" / "index.html")
    assert re.findall(r'data-correct="(\d)"', html) == ["0", "1", "0", "1"]
    # a rule in mkdocs.yml: the field and its threshold decide
    (tmp_path / "site").rename(tmp_path / "site-before")
    site = build_site(tmp_path, plugin={"runs": "results", "correct": {"field": "score", "min": 0.5}})
    html = read(site / "runs" / "verl" / "rollout" / "step-1" / "index.html")
    assert re.findall(r'data-correct="(\d)"', html) == ["0", "0", "0", "0"]
    html = read(site / "runs" / "lrft" / "step-1" / "index.html")
    assert "data-correct" not in html and "correct rule: score is missing in 4 trajectories" in html
    from trajdocs.cli import main  # trajdocs check reports the same, with the same rule
    assert main(["check", str(tmp_path / "results"), "--correct", "score", "--correct-min", "0.5"]) == 1
    assert main(["check", str(tmp_path / "results" / "verl"), "--correct", "score"]) == 0


# --- 3. scores on the tokens they belong to -----------------------------------------------------

def test_first_response_token_keeps_its_flag_and_score(tmp_path):
    # the saver stores response token j's flag and score on generated_tokens[j] (text of the
    # token before); the last entry's on the end of sequence
    gen = [{"text": "\n", "high_entropy": True, "entropy_score": 3.5},  # the first response token's
           {"text": "The", "high_entropy": False},
           {"text": " answer", "high_entropy": True, "entropy_score": 2.25},
           {"text": " is", "high_entropy": False},
           {"text": " 4", "high_entropy": True, "entropy_score": 1.75}]  # the end of sequence's
    record = saver_record(1, 0, [])
    record.update(generated_tokens=gen, pure_generated_tokens=gen[1:], pure_generated_text="The answer is 4",
                  generated_text="\nThe answer is 4", full_sequence=QWEN_PROMPT.format(q="2+2?") + "The answer is 4<|im_end|>")
    write_step(tmp_path / "results", "exp", 1, [record])
    site = build_site(tmp_path, strict=True)
    html = read(site / "runs" / "exp" / "step-1" / "index.html")
    (tokens,) = tokens_in(html, with_end=True)
    assert [(t["text"], t["class"], t["score"]) for t in tokens] == [
        ("The", "h", "3.5"), (" answer", None, None), (" is", "h", "2.25"), (" 4", None, None),
        ("", "td-end h", "1.75")]
    assert "td-shift-note" in html and "one token early" in html
    assert "<dt>Total tokens</dt><dd>5</dd>" in html and "<dt>High-entropy tokens</dt><dd>3</dd>" in html


def test_one_token_and_immediate_eos_responses(tmp_path):
    one = saver_record(1, 0, [tok("4", True, 0.5)])
    eos = saver_record(1, 1, [])
    eos["generated_tokens"] = [{"text": "\n", "high_entropy": True, "entropy_score": 0.25}]
    assert "pure_generated_tokens" not in eos
    path = write_step(tmp_path / "results", "exp", 1, [one, eos])
    first, second = read_step(str(path)).trajectories
    assert (first.tokens.texts, first.tokens.flags, first.tokens.scores) == (["4", ""], [True, False], [0.5, None])
    assert (second.tokens.texts, second.tokens.flags, second.tokens.scores) == ([""], [True], [0.25])
    assert second.prompt_tail == "\n" and second.tokens.end
    assert first.prompt == second.prompt == QWEN_PROMPT.format(q="What is 2+2?")  # grouped by prompt


# --- 4. marker files keep their prompt ----------------------------------------------------------

def test_marker_file_prompt_found_despite_split_characters(tmp_path):
    # per-token decodes: "é" split over two byte-level tokens, "你" over three (with a space)
    response = "Le caf\ufffd\ufffd co\u00fbte 4 \ufffd\ufffd\ufffd<HIGH_ENTROPY> euros</HIGH_ENTROPY>."
    whole = "Le café coûte 4 你 euros."
    records = []
    for i in range(3):
        prompt = QWEN_PROMPT.format(q="Combien coûte le café ?")
        records.append({"global_step": 1, "experience_index": i, "full_sequence": prompt + whole + "<|im_end|>",
                        "generated_text": "\n" + response, "pure_generated_text": response,
                        "info": {"reward": float(i)}})
    path = write_step(tmp_path / "results", "exp", 1, records)
    trajs = read_step(str(path)).trajectories
    assert [t.prompt for t in trajs] == [QWEN_PROMPT.format(q="Combien coûte le café ?")] * 3
    site = build_site(tmp_path, strict=True)
    html = read(site / "runs" / "exp" / "step-1" / "index.html")
    assert "Prompt group · 3 responses to one prompt" in html and "Full sequence" not in html


def test_prompt_never_guessed_where_the_response_fits_twice():
    assert lightrft.prompt_of("xyzAb<|im_end|>", "\ufffd\ufffdb") is None  # "zA" or "A": no way to tell
    assert lightrft.prompt_of("user\nQ<|im_start|>assistant\nAb<|im_end|>", "\ufffd\ufffdb") == \
        "user\nQ<|im_start|>assistant\n"  # the template's assistant header decides
    assert lightrft.prompt_of("Q: 你好?\nA: 好<|im_end|>", "\ufffd\ufffd") is None  # " 好" fits as well as "好"
    assert lightrft.prompt_of("Q: 你好?\nA: X好<|im_end|>", "X\ufffd\ufffd") == "Q: 你好?\nA: "
    assert lightrft.prompt_of("Q: x\nA: y", "\ufffdz") is None
    # the response must end the sequence (but for special tokens): "end" is not the one in <|im_end|>
    assert lightrft.prompt_of("Q: the end?<|im_start|>assistant\nend<|im_end|>", "end") == \
        "Q: the end?<|im_start|>assistant\n"
    assert lightrft.prompt_of("Q: e<|im_end|>", "d") is None  # only inside the end marker
    # an immediate end of sequence: the prompt ends with the assistant header
    assert lightrft.prompt_of("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<|im_end|>", "") == \
        "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"


# --- 5. single values where per-token lists were expected ---------------------------------------

def test_scalar_advantages_read_as_single_values(tmp_path):
    write_step(tmp_path / "results", "exp", 1, [saver_record(1, 0, [tok("a", True, 1.0), tok("b")])])
    site = build_site(tmp_path, strict=True)
    html = read(site / "runs" / "exp" / "step-1" / "index.html")
    for key, value in (("advantages", "-0.25"), ("return", "-0.25"), ("action_log_probs", "-1.5"), ("values", "0")):
        assert f'<dt>{key.replace("_", "_<wbr>")}</dt><dd class="td-single" title="one value for the trajectory, not a list per token">{value}</dd>' in html
    assert "data-logprob" not in html and "data-advantage" not in html  # nothing per token to hover


# --- 6. runs of one special token ---------------------------------------------------------------

def test_image_pad_runs_collapse_into_one_element(tmp_path):
    prompt = ("<|im_start|>user\n<|vision_start|>" + "<|image_pad|>" * 324 + "<|vision_end|>What is shown?"
              "<|im_end|>\n<|im_start|>assistant\n")
    record = saver_record(1, 0, [tok("A", True, 1.0), tok(" cat")], has_images=True, num_images=1)
    record["full_sequence"] = prompt + "A cat<|im_end|>"
    write_step(tmp_path / "results", "exp", 1, [record])
    site = build_site(tmp_path, strict=True)
    html = read(site / "runs" / "exp" / "step-1" / "index.html")
    assert html.count("&lt;|image_pad|&gt;") == 2  # the element's text and its title, not 324 times
    assert re.search(r'<span class="td-run" data-n="324"[^>]*>&lt;\|image_pad\|&gt;</span>&lt;\|vision_end\|&gt;', html)
    assert "&lt;|vision_start|&gt;<span" in html  # single special tokens stay as they are


# --- 7. controls and columns only for data the file has -----------------------------------------

def test_verl_pages_show_no_entropy_controls_or_columns(tmp_path):
    folder = tmp_path / "results" / "verl" / "rollout"
    folder.mkdir(parents=True)
    lines = [{"input": "user\nQ\nassistant\n", "output": f"answer {i}", "gts": "4", "score": float(i % 2), "step": 1}
             for i in range(4)]
    (folder / "1.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    site = build_site(tmp_path, strict=True)
    html = read(site / "runs" / "verl" / "rollout" / "step-1" / "index.html")
    for absent in ("data-td-setting=\"mode\"", "data-td-setting=\"ratio\"", "td-legend", "td-colorbar",
                   "High-entropy", "high-entropy ratio", "mean entropy", "Total tokens", "data-td-toggle=\"scores\"",
                   "data-td-setting=\"filter\"", "<th>Correct</th>", "<th>Advantage</th>", 'value="ratio-desc"',
                   "<th>Length</th>", 'value="len-desc"', "<td>—</td>"):
        assert absent not in html, absent
    summary = re.search(r'<p class="td-step-summary">(.*?)</p>', html).group(1)
    assert "—" not in summary
    table = read(site / "runs" / "verl" / "rollout" / "index.html")
    assert "<th>Mean entropy</th>" not in table and "<th>High-entropy ratio</th>" not in table
    assert "<th>Mean response length</th>" not in table and "high-entropy ratio" not in table and "—" not in table


@pytest.mark.parametrize("option", [{"field": ""}, {"field": "acc", "min": "1"}, {"fields": "acc"}, {"min": 1}])
def test_a_wrong_correct_option_is_refused(tmp_path, option, caplog):
    from mkdocs.exceptions import Abort

    write_step(tmp_path / "results", "exp", 1, [saver_record(1, 0, [tok("a", True, 1.0)])])
    with pytest.raises(Abort):
        build_site(tmp_path, plugin={"runs": "results", "correct": option})
    assert "'correct' must be {field:" in caplog.text


def test_prompt_of_a_response_cut_at_the_length_limit(tmp_path):
    """No end of sequence: the saver leaves the response's last token out of generated_text, so
    its text follows the response in full_sequence. The prompt is still found and grouped, and the
    step page does not call that last element the end of sequence."""
    prompt = QWEN_PROMPT.format(q="Think long?")
    assert lightrft.prompt_of(prompt + "Let me think longer", "Let me think") == prompt
    assert lightrft.prompt_of("Q: Let me think more", "Let me think") is None  # no assistant header: not sure
    records = []
    for i in range(2):
        record = saver_record(1, i, [tok("Let", True, 2.0), tok(" me"), tok(" think")], question="Think long?")
        record["full_sequence"] = prompt + "Let me think longer"  # " longer": the cut response's last token
        records.append(record)
    write_step(tmp_path / "results", "exp", 1, records)
    assert [t.prompt for t in read_step(str(tmp_path / "results/exp/trajectories/trajectories_step_1.json")).trajectories] == [prompt] * 2
    site = build_site(tmp_path, strict=True)
    html = read(site / "runs" / "exp" / "step-1" / "index.html")
    assert "Prompt group · 2 responses to one prompt" in html and "Full sequence" not in html
    assert "cut at the length limit" in html
