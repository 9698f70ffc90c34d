"""The MkDocs-free core: discovery, readers, statistics, demo data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import tok, trajectory, write_step
from trajdocs.demo import DemoOptions, write_demo
from trajdocs.discover import find_experiments, slugify
from trajdocs.formats import read_step
from trajdocs.stats import summarize_step, trajectory_stats


def test_discovery_finds_lightrft_and_verl_layouts(tmp_path):
    write_step(tmp_path, "exp1", 10, "[]")
    write_step(tmp_path, "exp1", 9, "[]")
    verl = tmp_path / "exp2" / "rollout_data"
    verl.mkdir(parents=True)
    for n in (0, 2, 11):
        (verl / f"{n}.jsonl").write_text("")
    (verl / "notes.json").write_text("{}")
    found = {e.name: [s.step for s in e.steps] for e in find_experiments([str(tmp_path)])}
    assert found == {"exp1": [9, 10], "exp2/rollout_data": [0, 2, 11]}


def test_slugs_are_url_safe_and_unique(tmp_path):
    for name in ("a b", "a?b"):
        write_step(tmp_path, name, 1, "[]")
    slugs = sorted(e.slug for e in find_experiments([str(tmp_path)]))
    assert slugs == ["a-b", "a-b-2"]
    assert slugify("../<script>/x") == "script/x"
    assert slugify("实验 一/run") == "实验-一/run"  # letters of any script stay in URLs


def test_generated_tokens_only_is_read_as_the_saver_pairs_it(tmp_path):
    record = trajectory(1, 0, [tok("a", True, 1.0), tok("b")])
    del record["pure_generated_tokens"]
    path = write_step(tmp_path, "e", 1, [record])
    (traj,) = read_step(str(path)).trajectories
    assert traj.tokens.texts == ["a", "b", ""] and traj.prompt_tail == "\n" and traj.tokens.end
    assert traj.tokens.flags == [True, False, False] and traj.tokens.scores == [1.0, None, None]


def test_older_saver_markers(tmp_path):
    record = {"global_step": 1, "generated_text": "\nSo <HIGH_ENTROPY>wait</HIGH_ENTROPY>, x",
              "pure_generated_text": "So <HIGH_ENTROPY>wait</HIGH_ENTROPY>, x<HIGH_ENTROPY> y</HIGH_ENTROPY>",
              "info": {"reward": 1.0, "response_length": 7}}
    data = read_step(str(write_step(tmp_path, "e", 1, [record])))
    (traj,) = data.trajectories
    assert traj.tokens.texts == ["So ", "wait", ", x", " y"]
    assert traj.tokens.flags == [False, True, False, True]
    assert traj.pure_generated_text == "So wait, x y" and "HIGH_ENTROPY" not in traj.generated_text
    st = trajectory_stats(traj)
    assert (st.total, st.high) == (7, 2)


def test_verl_lines_and_a_half_written_last_line(tmp_path):
    lines = [json.dumps({"input": "q", "output": "a", "gts": "1", "score": 1.0, "step": 3, "acc": True}),
             json.dumps({"input": "q", "output": "b", "score": 0.0, "step": 3}), '{"input": "q", "outp']
    path = tmp_path / "3.jsonl"
    path.write_text("\n".join(lines))
    data = read_step(str(path))
    assert [t.reward for t in data.trajectories] == [1.0, 0.0]
    assert data.trajectories[0].metadata["acc"] is True
    assert len(data.problems) == 1 and data.problems[0].startswith("line 3: invalid JSON")
    assert summarize_step(3, data).mean_reward == 0.5


def test_wrong_shapes_warn_but_keep_what_is_usable(tmp_path):
    cases = {
        "object": ({"hello": 1}, 0, "top level is an object"),
        "empty": ([], 0, "empty list"),
        "strings": ([{"pure_generated_tokens": ["a", "b"], "info": {"reward": 1}}], 1, "2 of 2 entries"),
        "mixed": ([1, trajectory(1, 0, [tok("x")])], 1, "trajectory 0: is a number"),
        "typed": ([{"pure_generated_text": 5, "info": []}], 1, "info is a list"),
    }
    for name, (doc, kept, message) in cases.items():
        data = read_step(str(write_step(tmp_path, name, 1, json.dumps(doc))))
        assert data.unreadable is None, name
        assert len(data.trajectories) == kept, name
        assert any(message in p for p in data.problems), (name, data.problems)


def test_unreadable_files_say_where(tmp_path):
    empty = write_step(tmp_path, "a", 1, "")
    assert "empty file" in read_step(str(empty)).unreadable
    cut = write_step(tmp_path, "b", 1, '[{"a": 1}, {"b"')
    assert "unexpected end of file at line 1 column 16" in read_step(str(cut)).unreadable
    bad = write_step(tmp_path, "c", 1, '[{"a": 1,, }]')
    assert read_step(str(bad)).unreadable.startswith("invalid JSON at line 1 column 10")


def test_demo_writes_lightrft_shaped_runs(tmp_path):
    pytest.importorskip("tokenizers")
    opts = DemoOptions(experiments=2, steps=3, trajectories=8, min_tokens=200, max_tokens=600)
    files = write_demo(str(tmp_path), opts)
    assert len(files) == 6
    assert Path(files[0]).parent.name == "trajectories" and len(Path(files[0]).relative_to(tmp_path).parts) == 4
    records = json.loads(Path(files[0]).read_text(encoding="utf-8"))
    assert len(records) == 8
    for r in records:
        gen, pure = r["generated_tokens"], r.get("pure_generated_tokens", [])
        assert len(gen) == r["response_token_count"] + 1 and gen[1:] == pure
        assert 200 - 30 <= len(pure) <= 600 + 40
        assert all(("entropy_score" in t) == t["high_entropy"] for t in gen)  # scores only on flagged tokens
        assert sum(t["high_entropy"] for t in gen) == max(1, int(len(gen) * 0.2))
        assert r["full_sequence"].endswith(r["pure_generated_text"] + "<|im_end|>")
        assert math.isfinite(r["advantages"]) and r["sample_in_exp"] == 0 and r["label"] is None
    assert [r["experience_index"] for r in records] == list(range(8))
    assert write_demo(str(tmp_path / "again"), opts)[0].endswith(files[0][len(str(tmp_path)):])
    assert Path(files[0]).read_bytes() == Path(str(tmp_path / "again") + files[0][len(str(tmp_path)):]).read_bytes()


def test_repeated_tokens_are_skipped_only_when_the_cut_is_exact(tmp_path):
    from trajdocs.formats.lightrft import _cuts, loads, loads_lightrft

    records = [trajectory(1, i, [tok("a]", True, 1.0), tok("\n  ],\n  \"x\""), tok("}")]) for i in range(3)]
    written = json.dumps(records, indent=2, ensure_ascii=False).encode()  # as LightRFT's saver writes
    assert len(_cuts(written)) == 3  # every trajectory's, not only the first
    assert loads_lightrft(written) == loads(written) == records
    varied = [trajectory(1, i, [tok(f"t{j}", j % 2 == 0, 0.5) for j in range(n)]) for i, n in enumerate([0, 1, 2, 7, 0, 3])]
    for indent in (2, 4, None):
        written = json.dumps(varied, indent=indent, ensure_ascii=False).encode()
        assert loads_lightrft(written) == loads(written) == varied
    reordered = json.dumps([{"pure_generated_tokens": [{"text": "b"}], "generated_tokens": [{"text": "a"}, {"text": "b"}]}],
                           indent=2).encode()
    assert _cuts(reordered) == [] and loads_lightrft(reordered) == loads(reordered)
    # the reader still knows the prompt's last token and shows the same tokens
    path = write_step(tmp_path, "e", 1, records)
    (traj, *_) = read_step(str(path)).trajectories
    assert traj.prompt_tail == "\n" and traj.tokens.texts == ["a]", "\n  ],\n  \"x\"", "}", ""]


def test_cache_json_keeps_lone_surrogates():
    from trajdocs.cache import json_bytes
    from trajdocs.model import StepSummary
    from trajdocs.formats import loads

    assert loads(json_bytes({"prompt": "a\ud800b"})) == {"prompt": "a\ud800b"}
    summary = StepSummary(step=3, problems=["bad \udcff name"])
    assert StepSummary(**loads(json_bytes(summary))) == summary
