"""AReaL trajectory dumps (`rollout.dump_to_file`): runs written as AReaL writes them, built into
real sites and read back page by page against the files."""

from __future__ import annotations

import json
import math

import pytest
from mkdocs.exceptions import Abort

from conftest import build_site, build_site_warnings
from dump_checks import compare_site, qwen_tokenizer_json, run_cli, step_pages
from test_real_shapes import demo, parse_page, shown_trajectories
from trajdocs.discover import find_experiments
from trajdocs.formats import detect_format, match_step_path
from trajdocs.text import fmt_number

TRIAL = "logs/areal/gsm8k/trial0"
OPTS = demo.DemoOptions(experiments=1, steps=5, trajectories=8, group_size=4, min_tokens=20, max_tokens=80,
                        kinds=("areal",), names=("gsm8k",))


def expected(record: dict):  # type: ignore[no-untyped-def]
    meta = {key: fmt_number(record[key]) for key in ("task_id", "sample_idx", "head_version", "tail_version")}
    return record["prompt"], record["completion"], record["reward"], meta


def odd_task(folder, task_id: int, version: int) -> dict:  # type: ignore[no-untyped-def]
    """A task file written by hand: ASCII escapes of a non-BMP character, a NaN reward (json.dumps
    writes NaN), markup in the text, a missing sample (an empty completion AReaL skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {"task_id": task_id, "seqlen": 9, "prompt_len": 5, "head_version": -1, "tail_version": version,
            "prompt": "<|im_start|>user\n2+2? <b>bold</b> 🦜<|im_end|>\n<|im_start|>assistant\n"}
    rows = [dict(base, sample_idx=0, reward=1.0, completion="4 ✅ <script>x</script><|im_end|>"),
            dict(base, sample_idx=2, reward=math.nan, completion="five<|im_end|>")]
    (folder / f"{task_id}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")
    return rows[0]


@pytest.fixture(scope="module")
def areal_site(tmp_path_factory):
    project = tmp_path_factory.mktemp("areal")
    demo.write_demo(str(project / "results"), OPTS)
    odd_task(project / "results" / "gsm8k" / TRIAL / "rollout" / "2", 900, 2)
    site, messages = build_site_warnings(project)
    return project, site, messages


def test_the_writer_follows_areal(areal_site):
    project, _, _ = areal_site
    rollout = project / "results" / "gsm8k" / TRIAL / "rollout"
    assert sorted(int(p.name) for p in rollout.iterdir()) == list(range(OPTS.steps))  # versions from 0
    evals = project / "results" / "gsm8k" / TRIAL / "eval-rollout"
    assert sorted(int(p.name) for p in evals.iterdir()) == [4, 5]  # after the updates of steps 3 and 4
    text = (rollout / "0" / "0.jsonl").read_text(encoding="utf-8")
    assert text.isascii() and "\\u" in text  # json.dumps escapes non-ASCII
    lines = [json.loads(line) for line in text.splitlines()]
    assert list(lines[0]) == ["task_id", "sample_idx", "seqlen", "prompt_len", "head_version", "tail_version",
                              "reward", "prompt", "completion"]
    assert all(r["head_version"] == -1 and r["tail_version"] == 0 for r in lines)
    assert all(r["completion"].endswith("<|im_end|>") and r["prompt"].startswith("<|im_start|>") for r in lines)
    assert all(r["seqlen"] > r["prompt_len"] for r in lines)


def test_well_formed_dumps_build_without_warnings(areal_site):
    _, _, messages = areal_site
    assert messages == []


def test_every_page_equals_its_files(areal_site):
    project, site, _ = areal_site
    steps, failures = compare_site(project / "results", site, expected)
    assert steps == OPTS.steps + 2
    assert failures == []


def test_task_files_of_one_version_are_one_page_grouped_by_task(areal_site):
    project, site, _ = areal_site
    exps = {e.view: e for e in find_experiments([str(project / "results")])}
    assert set(exps) == {"rollout", "eval-rollout"}
    version2 = next(s for s in exps["rollout"].steps if s.step == 2)
    assert len(version2.parts) == 3  # two demo tasks and the hand-written one
    page = step_pages(site, exps["rollout"].slug, 2)[0]
    root = parse_page(page)
    heading = root.find(lambda n: n.tag == "h1")
    assert heading.text().startswith("Version 2")
    tasks: dict[int, set[str]] = {}
    for item in shown_trajectories([page]):
        assert item.group is not None
        tasks.setdefault(id(item.group), set()).add(item.section.find(lambda n: n.tag == "dd").text())
    assert len(tasks) == 3 and all(len(t) == 1 for t in tasks.values())  # one group a task_id
    html = page.read_text(encoding="utf-8")
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x</script>" not in html
    assert "🦜" in html and "✅" in html


def test_paths_claim_only_areal_trees():
    assert match_step_path("logs/u/exp/t/rollout/5/42.jsonl").fmt == "areal"
    assert match_step_path("exp/t/eval-rollout/0/3.jsonl").view == "eval-rollout"
    for rel in ("run/rollout_data/5.jsonl", "run/rollout/5.jsonl", "run/7/3.jsonl", "run/rollouts/5/3.jsonl",
                "run/rollout/v5/3.jsonl"):
        assert match_step_path(rel) is None or match_step_path(rel).fmt != "areal", rel
    assert match_step_path("run/rollout_data/5.jsonl").fmt == "verl"
    assert detect_format("x/trial/rollout/1/2.jsonl") == "areal"
    assert detect_format("notes/samples.jsonl") == "verl"  # a bare .jsonl stays verl's, as before


def test_bad_task_files_warn_and_the_rest_builds(tmp_path, warnings_logged):
    demo.write_demo(str(tmp_path / "results"), demo.DemoOptions(experiments=1, steps=3, trajectories=4, group_size=2,
                    min_tokens=20, max_tokens=40, kinds=("areal",), names=("gsm8k",)))
    rollout = tmp_path / "results" / "gsm8k" / TRIAL / "rollout"
    half = rollout / "1" / "77.jsonl"
    half.write_text('{"task_id": 77, "sample_idx": 0, "reward": 1.0, "prompt": "p", "completion": "c"}\n'
                    '{"task_id": 77, "sample_idx": 1, "rew', encoding="ascii")
    (rollout / "2" / "78.jsonl").write_bytes(b"\x00\x01 not json\n")
    (rollout / "2" / "79.jsonl").write_text("", encoding="ascii")
    site = build_site(tmp_path)
    text = "\n".join(warnings_logged)
    assert "77.jsonl: line 2: invalid JSON" in text and "may still be being written" in text
    assert "78.jsonl" in text and "79.jsonl" in text and "empty file" in text
    exp = next(e for e in find_experiments([str(tmp_path / "results")]) if e.view == "rollout")
    page = step_pages(site, exp.slug, 1)[0].read_text(encoding="utf-8")
    assert 'data-index="2"' in page  # the demo task's two samples, then the readable line of 77.jsonl
    assert step_pages(site, exp.slug, 2)[0].exists()
    with pytest.raises(Abort):
        build_site(tmp_path, strict=True)
    result = run_cli("check", str(tmp_path / "results"))
    assert result.returncode == 1 and "78.jsonl" in result.stdout


def test_the_cli_builds_with_a_tokenizer_and_check_lists_the_format(tmp_path):
    demo.write_demo(str(tmp_path / "results"), demo.DemoOptions(experiments=1, steps=2, trajectories=4, group_size=2,
                    min_tokens=20, max_tokens=40, kinds=("areal",), names=("gsm8k",)))
    result = run_cli("build", str(tmp_path / "results"), "-o", str(tmp_path / "site"), "--tokenizer",
                     qwen_tokenizer_json(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    steps, failures = compare_site(tmp_path / "results", tmp_path / "site", expected)
    assert steps == 3 and failures == []
    check = run_cli("check", str(tmp_path / "results"))
    assert check.returncode == 0 and "format areal" in check.stdout
    assert "[rollout]: 2 versions (0–1), format areal" in check.stdout, check.stdout  # weight versions, as pages say


def test_a_folder_of_only_unreadable_task_files_fails_strict(tmp_path):
    folder = tmp_path / "results" / "run" / "rollout" / "0"
    folder.mkdir(parents=True)
    (folder / "0.jsonl").write_text("not json\n", encoding="ascii")
    result = run_cli("build", str(tmp_path / "results"), "-o", str(tmp_path / "site"), "--strict", cwd=tmp_path)
    assert result.returncode != 0 and "0.jsonl" in result.stdout + result.stderr
    assert run_cli("check", str(tmp_path / "results")).returncode == 1
