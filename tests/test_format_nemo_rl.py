"""NeMo-RL dumps (`train_data_step<N>.jsonl`, `val_data_step<N>.jsonl`) built into real sites, with
and without the tokenizer, every step page read back and compared with its file: every sample,
reward, turn, token (decoded independently with `tokenizers`) and per-token channel value."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
from mkdocs.exceptions import Abort

from conftest import build_site, build_site_warnings
from test_real_shapes import has_class, pre_text
from token_pages import (check_token_texts, close, qwen_tokenizer_path, reward_text, sections, shown_tokens,
                         sites_with_and_without_tokenizer, step_pages, turn_text, turns, unpack)
from trajdocs.discover import find_experiments
from trajdocs.formats import ReadContext, detect_format, read_step
from trajdocs.text import fmt_number

demo = pytest.importorskip("trajdocs.demo")
try:
    demo.qwen_tokenizer()
except demo.DemoUnavailable as err:  # the test extra installs both packages
    pytest.skip(str(err), allow_module_level=True)

TOKENIZER = qwen_tokenizer_path()
OPTS = demo.DemoOptions(experiments=1, steps=5, trajectories=6, group_size=3, min_tokens=20, max_tokens=120,
                        kinds=("nemo-rl",))


def unwrap(value):  # type: ignore[no-untyped-def]
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def records(path: Path) -> list[dict]:
    return [{k: unwrap(v) for k, v in json.loads(line).items()}
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def multi_turn_file(folder: Path) -> Path:
    """A two-turn sample (prompt, response, feedback, response, feedback) and a one-turn sample
    with a NaN engine log-prob and a -Infinity trainer log-prob (top-k filtering), written as
    NeMo-RL writes them: ASCII-escaped, one-element lists, right padding."""
    codec = demo.Codec()
    prompt = codec.encode(demo.chat_prompt("Guess the number between 1 and 9 — ¿listo? 🎲"))
    first = codec.encode("I guess 5.") + [codec.eos]
    feedback1 = codec.encode("Higher. ✅ Try again:")
    second = codec.encode("Then 7 🦜.") + [codec.eos]
    feedback2 = codec.encode("Environment: correct")
    parts = [(prompt, 0), (first, 1), (feedback1, 0), (second, 1), (feedback2, 0)]
    ids = [t for p, _ in parts for t in p]
    mask = [m for p, m in parts for _ in p]
    rng = random.Random(5)
    gen = [round(-rng.uniform(0, 3), 6) if m else 0.0 for m in mask]
    prev = [0.0] + [round(g + rng.uniform(-0.05, 0.05), 6) if m else -1.5 for g, m in zip(gen[1:], mask[1:])]
    adv = [round(0.25 * (t % 5) - 0.5, 6) for t in range(len(ids))]
    short = prompt + codec.encode("7.") + [codec.eos] + codec.encode("Environment: incorrect")
    short_mask = [0] * len(prompt) + [1] * 3 + [0] * (len(short) - len(prompt) - 3)
    width = len(ids) + 3
    pad = codec.pad

    def line(i, content, reward, seq, m, g, p, a):  # type: ignore[no-untyped-def]
        extra = width - len(seq)
        return json.dumps({"content": [content], "rewards": [reward], "input_lengths": [len(seq)],
                           "token_ids": [seq + [pad] * extra], "token_loss_mask": [m + [0] * extra],
                           "sample_loss_mask": [1.0], "advantages": [a + [0.0] * extra],
                           "generation_logprobs": [g + [0.0] * extra], "prev_logprobs": [p + [0.0] * extra],
                           "idx": i}, default=str) + "\n"

    texts = [codec.decode(prompt, skip_special=False), codec.decode(first), codec.decode(feedback1),
             codec.decode(second), codec.decode(feedback2)]
    g2 = [-0.5 if m else 0.0 for m in short_mask]
    g2[len(prompt)] = float("nan")
    p2 = [0.0] + [-0.4 for _ in short_mask[1:]]
    p2[len(prompt) + 1] = float("-inf")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "train_data_step1.jsonl"
    path.write_text(line(0, texts, 1.0, ids, mask, gen, prev, adv)
                    + line(1, [texts[0], "7.", "Environment: incorrect"], 0.0, short, short_mask, g2, p2,
                           [-1.0] * len(short)), encoding="ascii")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("nemo-rl")
    demo.write_demo(str(root / "results"), OPTS)
    multi_turn_file(root / "results" / "hand-written" / "logs")
    return root


@pytest.fixture(scope="module")
def sites(project, tmp_path_factory):
    """The same runs built strictly with the tokenizer and without one."""
    return sites_with_and_without_tokenizer(project, tmp_path_factory)


def model_runs(mask: list, end: int) -> list[tuple[int, int]]:
    runs, start = [], None
    for t in range(end + 1):
        on = t < end and mask[t]
        if on and start is None:
            start = t
        elif not on and start is not None:
            runs.append((start, t))
            start = None
    return runs


def check_train(section, rec: dict, tk, where: str) -> None:  # type: ignore[no-untyped-def]
    assert f"reward {fmt_number(rec['rewards'])}" in reward_text(section), where
    ids, mask, end = rec["token_ids"], rec["token_loss_mask"], rec["input_lengths"]
    runs = model_runs(mask, end)
    content = rec["content"]
    prompts = len(content) - 2 * len(runs)
    shown = turns(section)
    assert [t.attrs["data-role"] for t in shown] == ["prompt"] * prompts + ["assistant", "environment"] * len(runs), where
    for j in range(prompts):
        assert turn_text(shown[j]) == content[j], where
    for k, (a, b) in enumerate(runs):
        model, feedback = shown[prompts + 2 * k], shown[prompts + 2 * k + 1]
        assert turn_text(feedback) == content[prompts + 2 * k + 1], where
        texts, container = shown_tokens(model)
        if tk is not None:
            check_token_texts(tk, ids[a:b], texts, f"{where} turn {k}")
            assert model.find(has_class("td-ids-note")) is None
        else:
            assert texts == [str(i) for i in ids[a:b]], where
            assert model.find(has_class("td-ids-note")) is not None, where
        gen, prev, adv = rec["generation_logprobs"], rec["prev_logprobs"], rec["advantages"]
        expected = {"surprisal": [-gen[t] for t in range(a, b)],
                    "mismatch": [abs(gen[t] - prev[t]) for t in range(a, b)],
                    "advantage": [adv[t] for t in range(a, b)]}
        for name, values in expected.items():
            got = unpack(container.attrs.get(f"data-{name}"), b - a)
            assert got is not None and len(got) == b - a, f"{where}: {name}"
            bad = [t for t, (s, e) in enumerate(zip(got, values)) if not close(s, e)]
            assert not bad, f"{where}: {name} at {bad[:3]}: {[got[t] for t in bad[:3]]} vs {[values[t] for t in bad[:3]]}"
    # the response text is visible as written in `content`
    pure = section.find(has_class("td-pure"))
    assert pure is not None and pre_text(pure.find(lambda n: n.tag == "pre")) == \
        "\n\n".join(content[prompts + 2 * k] for k in range(len(runs))), where


def check_val(section, rec: dict, where: str) -> None:  # type: ignore[no-untyped-def]
    assert f"reward {fmt_number(rec['rewards'])}" in reward_text(section), where
    shown = turns(section)
    assert [(t.attrs["data-role"], turn_text(t)) for t in shown] == \
        [(m["role"], m["content"]) for m in rec["content"]], where
    assert section.find(has_class("td-tokens")) is None or "td-plain" in section.find(has_class("td-tokens")).classes()


@pytest.mark.parametrize("with_tokenizer", [True, False])
def test_every_step_page_equals_its_file(project, sites, with_tokenizer):
    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(TOKENIZER) if with_tokenizer else None
    site = sites[with_tokenizer]
    experiments = find_experiments([str(project / "results")])
    assert sorted((e.folder.split("results/")[-1], e.view) for e in experiments) == [
        ("hand-written/logs", "train"), ("nemo-rl-grpo-math/logs/exp_001", "train"),
        ("nemo-rl-grpo-math/logs/exp_001", "val")]
    checked = 0
    for exp in experiments:
        steps = [s.step for s in exp.steps]
        if exp.name.startswith("nemo-rl") and exp.view == "train":
            assert steps == [1, 2, 3, 4, 5]
        elif exp.name.startswith("nemo-rl"):
            assert steps == [0, 4, 5]  # before training, every val_period steps, the last
        for step in exp.steps:
            recs = records(Path(step.path))
            shown = sections(step_pages(site, exp.slug, step.step))
            assert sorted(shown) == list(range(len(recs))), f"{step.path}: {len(shown)} shown of {len(recs)}"
            for i, rec in enumerate(recs):
                where = f"{step.path} line {i + 1}"
                if exp.view == "train":
                    check_train(shown[i], rec, tk, where)
                else:
                    check_val(shown[i], rec, where)
                checked += 1
    assert checked == 5 * 6 + 3 * 3 + 2


def test_padding_is_dropped_and_only_the_loss_mask_tokens_are_the_models(project):
    path = project / "results" / "nemo-rl-grpo-math" / "logs" / "exp_001" / "train_data_step2.jsonl"
    recs = records(path)
    widths = {len(r["token_ids"]) for r in recs}
    assert len(widths) == 1 and any(r["input_lengths"] < len(r["token_ids"]) for r in recs)  # the fixture pads
    data = read_step(str(path), ctx=ReadContext(tokenizer=TOKENIZER))
    assert not data.problems
    for traj, rec in zip(data.trajectories, recs):
        model = [t for t in range(rec["input_lengths"]) if rec["token_loss_mask"][t]]
        assert traj.response_length == len(model) == len(traj.tokens)
        assert "<|endoftext|>" not in "".join(traj.tokens.texts)  # the pad token
        assert "".join(traj.tokens.texts).endswith("<|im_end|>")


def test_written_as_nemo_rl_writes(project):
    path = project / "results" / "nemo-rl-grpo-math" / "logs" / "exp_001" / "train_data_step1.jsonl"
    raw = path.read_bytes()
    assert raw.isascii() and b"\\u" in raw  # ensure_ascii: the Chinese and emoji prompts escaped
    first = json.loads(raw.splitlines()[0])
    assert list(first) == ["content", "rewards", "input_lengths", "token_ids", "token_loss_mask", "sample_loss_mask",
                           "advantages", "generation_logprobs", "prev_logprobs", "idx"]
    assert all(isinstance(v, list) and len(v) == 1 for k, v in first.items() if k != "idx")
    assert first["idx"] == 0 and len(first["content"][0]) == 3
    assert detect_format(str(path)) == "nemo-rl"
    assert detect_format(str(path.with_name("val_data_step0.jsonl"))) == "nemo-rl"


def test_nan_and_infinite_log_probs_are_shown_as_such(project):
    data = read_step(str(project / "results" / "hand-written" / "logs" / "train_data_step1.jsonl"),
                     ctx=ReadContext(tokenizer=TOKENIZER))
    assert not data.problems
    multi, short = data.trajectories
    assert [t.role for t in multi.turns] == ["prompt", "assistant", "environment", "assistant", "environment"]
    assert math.isnan(short.token_values["surprisal"][0]) and math.isnan(short.token_values["mismatch"][0])
    assert short.token_values["mismatch"][1] == math.inf


def test_cli_build_and_check_with_the_tokenizer(project, tmp_path):
    runs = str(project / "results")
    check = subprocess.run([sys.executable, "-m", "trajdocs", "check", runs, "--tokenizer", TOKENIZER],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "format nemo-rl" in check.stdout and "0 problems" in check.stdout
    site = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "trajdocs", "build", runs, "-o", str(site), "--tokenizer", TOKENIZER,
                            "--strict"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    slug = next(e.slug for e in find_experiments([runs]) if e.view == "train" and "exp_001" in e.folder)
    html = (site / "runs" / slug / "step-3" / "index.html").read_text("utf-8")
    assert "<i>&lt;|im_end|&gt;</i>" in html and "Environment: " in html


def test_an_unusable_tokenizer_is_one_problem_and_ids_are_shown(project, tmp_path):
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json", encoding="utf-8")
    path = project / "results" / "nemo-rl-grpo-math" / "logs" / "exp_001" / "train_data_step1.jsonl"
    data = read_step(str(path), ctx=ReadContext(tokenizer=str(broken)))
    assert len(data.problems) == 1 and "cannot be read" in data.problems[0] and "numbers" in data.problems[0]
    assert all(t.tokens.ids for t in data.trajectories)


def test_skipped_trainer_log_probs_show_no_mismatch(tmp_path):
    line = {"content": [["p", "r", "f"]], "rewards": [1.0], "input_lengths": [4], "token_ids": [[1, 2, 3, 4]],
            "token_loss_mask": [[0, 1, 1, 0]], "sample_loss_mask": [1.0], "advantages": [[0.5] * 4],
            "generation_logprobs": [[0.0, -0.2, -0.3, 0.0]], "prev_logprobs": [[0.0] * 4], "idx": 0}
    path = tmp_path / "train_data_step1.jsonl"
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    data = read_step(str(path))
    assert "mismatch" not in data.trajectories[0].token_values
    assert any("prev_logprobs are 0 on every model token" in p for p in data.problems)
    assert data.trajectories[0].token_values["surprisal"] == [0.2, 0.3]


def test_bad_files_warn_naming_the_file_and_fail_strict(project, tmp_path):
    results = tmp_path / "results"
    folder = results / "run" / "logs"
    folder.mkdir(parents=True)
    source = project / "results" / "nemo-rl-grpo-math" / "logs" / "exp_001"
    good = (source / "train_data_step1.jsonl").read_bytes()
    (folder / "train_data_step1.jsonl").write_bytes(good)
    half = (source / "train_data_step2.jsonl").read_bytes()
    (folder / "train_data_step2.jsonl").write_bytes(half[:len(half) - 500])  # the last line half-written
    (folder / "val_data_step0.jsonl").write_bytes(b"")
    (folder / "train_data_step3.jsonl").write_bytes(b'{"content": [["p"]], "token_ids": "oops"}\n[1, 2]\n')
    site, messages = build_site_warnings(tmp_path, {"runs": "results", "tokenizer": TOKENIZER})
    lines = len(half.splitlines())
    assert any("train_data_step2.jsonl" in m and f"line {lines}" in m and "still be being written" in m
               for m in messages), messages
    assert any("val_data_step0.jsonl" in m and "empty" in m for m in messages), messages
    assert any("train_data_step3.jsonl" in m and "token_ids is a string" in m for m in messages), messages
    assert any("train_data_step3.jsonl" in m and "line 2" in m and "expected an object" in m for m in messages), messages
    slug = next(e.slug for e in find_experiments([str(results)]) if e.view == "train")
    shown = sections(step_pages(site, slug, 2))
    assert len(shown) == lines - 1  # every complete line of the half-written file
    assert len(sections(step_pages(site, slug, 1))) == len(good.splitlines())
    with pytest.raises(Abort):
        build_site(tmp_path, {"runs": "results", "tokenizer": TOKENIZER}, strict=True)
    check = subprocess.run([sys.executable, "-m", "trajdocs", "check", str(results), "--tokenizer", TOKENIZER],
                           capture_output=True, text=True)
    assert check.returncode == 1 and "train_data_step2.jsonl" in check.stdout


def test_a_folder_of_only_unreadable_dumps_fails_strict(tmp_path):
    folder = tmp_path / "results" / "logs"
    folder.mkdir(parents=True)
    (folder / "train_data_step1.jsonl").write_text("not json at all\n", encoding="utf-8")
    with pytest.raises(Abort):
        build_site(tmp_path, strict=True)
    check = subprocess.run([sys.executable, "-m", "trajdocs", "check", str(tmp_path / "results")],
                           capture_output=True, text=True)
    assert check.returncode == 1 and "train_data_step1.jsonl" in check.stdout
