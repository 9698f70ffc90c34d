"""SkyRL evaluation dumps (`trainer.dump_eval_results`): runs written as SkyRL writes them, built
into real sites and read back page by page against the files."""

from __future__ import annotations

import json

import pytest
from mkdocs.exceptions import Abort

from conftest import build_site, build_site_warnings
from dump_checks import compare_site, qwen_tokenizer_json, run_cli, step_pages
from test_real_shapes import demo
from trajdocs.discover import find_experiments, no_steps_warning
from trajdocs.formats import detect_format, match_step_path
from trajdocs.text import fmt_number

OPTS = demo.DemoOptions(experiments=1, steps=8, trajectories=8, group_size=2, min_tokens=20, max_tokens=80,
                        kinds=("skyrl",), names=("gsm8k",))


def expected(record: dict):  # type: ignore[no-untyped-def]
    score = record["score"]
    reward = sum(score) if isinstance(score, list) else score
    meta = {"stop_reason": record["stop_reason"] or "null", "env_class": record["env_class"],
            "data_source": record["data_source"]}
    return record["input_prompt"], record["output_response"], reward, meta


@pytest.fixture(scope="module")
def skyrl_site(tmp_path_factory):
    project = tmp_path_factory.mktemp("skyrl")
    demo.write_demo(str(project / "results"), OPTS)
    odd = project / "results" / "gsm8k" / "dumped_evals" / "global_step_4_evals" / "toolbench_multi.jsonl"
    rows = [{"input_prompt": "<|im_start|>user\n<i>call</i> 🦜<|im_end|>\n<|im_start|>assistant\n",
             "output_response": "ok <tool_call>{}</tool_call><|im_end|>", "score": [0.0, 0.0, 0.5, 1.0],
             "stop_reason": "stop", "env_class": "tool", "env_extras": {"data_source": "toolbench/multi"},
             "data_source": "toolbench/multi"},
            {"input_prompt": "<|im_start|>user\nq<|im_end|>\n", "output_response": "", "score": 0.0,
             "stop_reason": None, "env_class": "tool", "env_extras": {}, "data_source": "toolbench/multi"}]
    odd.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    site, messages = build_site_warnings(project)
    return project, site, messages


def test_the_writer_follows_skyrl(skyrl_site):
    project, _, _ = skyrl_site
    evals = project / "results" / "gsm8k" / "dumped_evals"
    assert sorted(p.name for p in evals.iterdir()) == ["global_step_0_evals", "global_step_4_evals",
                                                       "global_step_8_evals"]
    names = sorted(p.name for p in (evals / "global_step_0_evals").iterdir())
    assert names == ["aggregated_results.jsonl", "math500.jsonl", "openai_gsm8k.jsonl"]
    line = json.loads((evals / "global_step_0_evals" / "openai_gsm8k.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert list(line) == ["input_prompt", "output_response", "score", "stop_reason", "env_class", "env_extras",
                          "data_source"]
    assert line["output_response"].endswith("<|im_end|>") and line["input_prompt"].startswith("<|im_start|>")


def test_well_formed_dumps_build_without_warnings(skyrl_site):
    assert skyrl_site[2] == []


def test_every_page_equals_its_files(skyrl_site):
    project, site, _ = skyrl_site
    steps, failures = compare_site(project / "results", site, expected)
    assert steps == 3
    assert failures == []


def test_data_source_files_are_one_step_and_aggregates_are_no_samples(skyrl_site):
    project, site, _ = skyrl_site
    [exp] = find_experiments([str(project / "results")])
    assert exp.view == "eval" and [s.step for s in exp.steps] == [0, 4, 8]
    step4 = exp.steps[1]
    assert [p[0].rsplit("/", 1)[-1] for p in step4.parts] == ["math500.jsonl", "openai_gsm8k.jsonl",
                                                            "toolbench_multi.jsonl"]
    html = step_pages(site, exp.slug, 4)[0].read_text(encoding="utf-8")
    assert "&lt;i&gt;call&lt;/i&gt;" in html and "<i>call</i>" not in html and "🦜" in html
    assert f"reward {fmt_number(1.5)}" in html  # token-level rewards: their sum


def test_paths():
    found = match_step_path("exp/dumped_evals/global_step_10_evals/openai_gsm8k.jsonl")
    assert (found.fmt, found.folder, found.step, found.part, found.view) == ("skyrl", "exp", 10, "openai_gsm8k", "eval")
    assert match_step_path("exp/dumped_evals/global_step_10_evals/aggregated_results.jsonl") is None
    assert match_step_path("exp/dumped_evals/eval_only/openai_gsm8k.jsonl") is None
    assert detect_format("e/dumped_evals/global_step_1_evals/math.jsonl") == "skyrl"


def test_training_batch_pickles_are_named_not_read(tmp_path):
    folder = tmp_path / "results" / "run" / "dumped_data"
    folder.mkdir(parents=True)
    (folder / "global_step_3_training_input.pkl").write_bytes(b"\x80\x04\x95 pickle")
    message = no_steps_warning(str(tmp_path / "results"))
    assert "global_step_3_training_input.pkl" in message and "pickled torch tensors" in message
    result = run_cli("check", str(tmp_path / "results"))
    assert result.returncode == 1 and "training_input.pkl" in result.stdout + result.stderr


def test_bad_files_warn_and_the_rest_builds(tmp_path, warnings_logged):
    demo.write_demo(str(tmp_path / "results"), demo.DemoOptions(experiments=1, steps=4, trajectories=4, group_size=2,
                    min_tokens=20, max_tokens=40, kinds=("skyrl",), names=("gsm8k",)))
    evals = tmp_path / "results" / "gsm8k" / "dumped_evals"
    with open(evals / "global_step_0_evals" / "math500.jsonl", "a", encoding="utf-8") as f:
        f.write('{"input_prompt": "p", "output_resp')
    (evals / "global_step_4_evals" / "openai_gsm8k.jsonl").write_text("[1, 2]\n", encoding="utf-8")
    (evals / "global_step_4_evals" / "math500.jsonl").write_text("", encoding="utf-8")
    site = build_site(tmp_path)
    text = "\n".join(warnings_logged)
    assert "math500.jsonl: line" in text and "may still be being written" in text
    assert "openai_gsm8k.jsonl: line 1: is a list, expected an object" in text and "empty file" in text
    [exp] = find_experiments([str(tmp_path / "results")])
    assert 'data-index="3"' in step_pages(site, exp.slug, 0)[0].read_text(encoding="utf-8")
    with pytest.raises(Abort):
        build_site(tmp_path, strict=True)
    assert run_cli("check", str(tmp_path / "results")).returncode == 1


def test_the_cli_builds_with_a_tokenizer_and_check_lists_the_format(tmp_path):
    demo.write_demo(str(tmp_path / "results"), demo.DemoOptions(experiments=1, steps=2, trajectories=4, group_size=2,
                    min_tokens=20, max_tokens=40, kinds=("skyrl",), names=("gsm8k",)))
    result = run_cli("build", str(tmp_path / "results"), "-o", str(tmp_path / "site"), "--tokenizer",
                     qwen_tokenizer_json(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    steps, failures = compare_site(tmp_path / "results", tmp_path / "site", expected)
    assert steps == 2 and failures == []
    check = run_cli("check", str(tmp_path / "results"))
    assert check.returncode == 0 and "format skyrl" in check.stdout
