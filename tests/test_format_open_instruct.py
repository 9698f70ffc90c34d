"""open-instruct rollout traces (`<run>_rollouts_<shard>.jsonl`, `--save_traces`) built into real
sites, with and without the tokenizer: the steps come from the records, whichever shards hold
them; every step page read back and compared with the records: every sample, reward, prompt,
group, token (decoded independently with `tokenizers`) and surprisal. And the shortcut that
finds the steps in a shard against its plain twin."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mkdocs.exceptions import Abort

from conftest import build_site, build_site_warnings
from test_real_shapes import has_class, parse_page, pre_text
from token_pages import (check_token_texts, close, qwen_tokenizer_path, reward_text, sections, shown_tokens,
                         sites_with_and_without_tokenizer, step_pages, unpack)
from trajdocs.discover import find_experiments
from trajdocs.formats import ReadContext, detect_format, open_instruct, read_step
from trajdocs.text import fmt_number

demo = pytest.importorskip("trajdocs.demo")
try:
    demo.qwen_tokenizer()
except demo.DemoUnavailable as err:  # the test extra installs both packages
    pytest.skip(str(err), allow_module_level=True)
from trajdocs.demo import open_instruct as writer  # noqa: E402

TOKENIZER = qwen_tokenizer_path()
OPTS = demo.DemoOptions(steps=5, trajectories=6, group_size=3, min_tokens=20, max_tokens=100, special_every=2)
SPLIT_RUN = "grpo_restarted__1__1764640000"


def shard_records(folder: Path, run: str) -> dict[int, list[dict]]:
    """{step: its records in shard-name order, then file order}."""
    steps: dict[int, list[dict]] = {}
    for shard in sorted(folder.glob(f"{run}_rollouts_*.jsonl")):
        for line in shard.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                steps.setdefault(record["step"], []).append(record)
    return steps


def split_run(folder: Path) -> None:
    """A run whose step 7 lies in two shards, its lines in the second shard interleaved with step
    8's (a resumed run appending to a shard; the two writer threads)."""
    codec = demo.Codec()
    rng = random.Random(7)
    seven = writer.step_records(codec, rng, OPTS, 0, 7)
    eight = writer.step_records(codec, rng, OPTS, 0, 8)
    first = "".join(json.dumps(r) + "\n" for r in seven[:2])
    rest = [seven[2], eight[0], eight[1], seven[3], seven[4], eight[2], seven[5], *eight[3:]]
    (folder / f"{SPLIT_RUN}_rollouts_000000.jsonl").write_text(first, encoding="utf-8")
    (folder / f"{SPLIT_RUN}_rollouts_000001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rest),
                                                               encoding="utf-8")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("open-instruct")
    written = writer.write_run(str(root / "results"), "oi-run", OPTS, demo.Codec(), random.Random(1), shard_size=10)
    assert [Path(p).name[-12:] for p in written] == ["000000.jsonl", "000001.jsonl", "000002.jsonl"]
    split_run(root / "results" / "oi-run" / "rollouts")
    return root


@pytest.fixture(scope="module")
def sites(project, tmp_path_factory):
    return sites_with_and_without_tokenizer(project, tmp_path_factory)


def prompts_shown(pages: list[Path]) -> list[str]:
    out = []
    for page in pages:
        for details in parse_page(page).find_all(lambda n: n.tag == "details" and "td-prompt" in n.classes()):
            out.append(pre_text(details.find(lambda n: n.tag == "pre")))
    return out


def groups_shown(pages: list[Path]) -> list[list[int]]:
    out = []
    for page in pages:
        root = parse_page(page)
        grouped = set()
        for group in root.find_all(has_class("td-group")):
            members = [int(s.attrs["data-index"]) for s in group.find_all(has_class("td-traj"))]
            grouped.update(members)
            out.append(members)
        out += [[int(s.attrs["data-index"])] for s in root.find_all(has_class("td-traj"))
                if int(s.attrs["data-index"]) not in grouped]
    return out


@pytest.mark.parametrize("with_tokenizer", [True, False])
def test_every_step_page_equals_the_records_of_its_step(project, sites, with_tokenizer):
    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(TOKENIZER) if with_tokenizer else None
    site = sites[with_tokenizer]
    folder = project / "results" / "oi-run" / "rollouts"
    experiments = {e.name: e for e in find_experiments([str(project / "results")])}
    assert sorted(experiments) == [f"oi-run/rollouts [{writer.RUN_NAME}]", f"oi-run/rollouts [{SPLIT_RUN}]"]
    checked = 0
    for name, exp in experiments.items():
        run = SPLIT_RUN if SPLIT_RUN in name else writer.RUN_NAME
        expected = shard_records(folder, run)
        assert [s.step for s in exp.steps] == sorted(expected)
        for step in exp.steps:
            recs = expected[step.step]
            pages = step_pages(site, exp.slug, step.step)
            shown = sections(pages)
            assert sorted(shown) == list(range(len(recs))), f"{name} step {step.step}"
            prompts = prompts_shown(pages)
            for i, rec in enumerate(recs):
                where = f"{name} step {step.step} sample {i}"
                section = shown[i]
                assert f"reward {fmt_number(rec['reward'])}" in reward_text(section), where
                assert math.isclose(float(section.attrs["data-adv"]), rec["advantage"]), where
                texts, container = shown_tokens(section)
                if tk is not None:
                    check_token_texts(tk, rec["response_tokens"], texts, where)
                    prompt = tk.decode(rec["prompt_tokens"], skip_special_tokens=False)
                    assert section.find(has_class("td-ids-note")) is None
                else:
                    assert texts == [str(t) for t in rec["response_tokens"]], where
                    prompt = " ".join(map(str, rec["prompt_tokens"]))
                    assert section.find(has_class("td-ids-note")) is not None, where
                assert prompt in prompts, where
                got = unpack(container.attrs.get("data-surprisal"), len(texts))
                assert got is not None and all(close(g, -lp) for g, lp in zip(got, rec["logprobs"])), where
                meta = {dt.text(): dt for dt in section.find_all(lambda n: n.tag == "dt")}
                for key in ("step", "sample_idx", "prompt_idx", "finish_reason", "dataset", "ground_truth"):
                    assert key in meta, f"{where}: {key}"
                # the run's metadata file, where the run has one
                assert ("run.model_name" in meta) == (run == writer.RUN_NAME), where
                checked += 1
            groups = groups_shown(pages)
            for members in groups:
                assert len({recs[i]["prompt_idx"] for i in members}) == 1, f"{name} step {step.step}: {groups}"
            assert len(groups) == len({r["prompt_idx"] for r in recs})
    assert checked == 5 * 6 + 2 * 6


def test_written_as_open_instruct_writes(project):
    folder = project / "results" / "oi-run" / "rollouts"
    shard = folder / f"{writer.RUN_NAME}_rollouts_000000.jsonl"
    raw = shard.read_bytes()
    assert raw.isascii()
    records = [json.loads(line) for line in raw.splitlines()]
    assert list(records[0]) == ["step", "sample_idx", "prompt_idx", "prompt_tokens", "response_tokens", "reward",
                                "advantage", "finish_reason", "dataset", "ground_truth", "request_info", "logprobs"]
    assert {r["step"] for r in records} == {1, 2}  # 10 samples a shard: step 2 starts at sample 6
    assert isinstance(records[0]["ground_truth"], str)
    assert b"NaN" in raw  # the empty response's log-prob (step 2)
    meta = folder / f"{writer.RUN_NAME}_metadata.jsonl"
    assert list(json.loads(meta.read_text())) == ["run_name", "git_commit", "model_name", "timestamp"]
    assert detect_format(str(shard)) == "open-instruct"


def test_the_metadata_file_is_no_step_file(project):
    check = subprocess.run([sys.executable, "-m", "trajdocs", "check", str(project / "results"), "--tokenizer", TOKENIZER],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "metadata" not in check.stdout and "0 problems" in check.stdout
    assert check.stdout.count("format open-instruct") == 2


def test_cli_build_with_the_tokenizer(project, tmp_path):
    site = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "trajdocs", "build", str(project / "results"), "-o", str(site),
                            "--tokenizer", TOKENIZER, "--strict"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    slug = next(e.slug for e in find_experiments([str(project / "results")]) if writer.RUN_NAME in e.name)
    html = (site / "runs" / slug / "step-3" / "index.html").read_text("utf-8")
    assert "<i>&lt;|im_end|&gt;</i>" in html and "reward 10" in html


def test_a_half_written_last_line_warns_naming_the_shard_and_fails_strict(project, tmp_path):
    folder = tmp_path / "results" / "run"
    folder.mkdir(parents=True)
    source = project / "results" / "oi-run" / "rollouts"
    shards = sorted(source.glob(f"{writer.RUN_NAME}_rollouts_*.jsonl"))
    for shard in shards[:2]:
        (folder / shard.name).write_bytes(shard.read_bytes())
    half = shards[1].read_bytes()
    (folder / shards[1].name).write_bytes(half[:-300])  # step 4's last record half-written
    lines = half.count(b"\n")
    site, messages = build_site_warnings(tmp_path, {"runs": "results", "tokenizer": TOKENIZER})
    assert any(shards[1].name in m and f"line {lines}:" in m and "still be being written" in m
               for m in messages), messages
    slug = find_experiments([str(tmp_path / "results")])[0].slug
    assert len(sections(step_pages(site, slug, 4))) == OPTS.trajectories - 1
    assert len(sections(step_pages(site, slug, 3))) == OPTS.trajectories
    with pytest.raises(Abort):
        build_site(tmp_path, {"runs": "results", "tokenizer": TOKENIZER}, strict=True)
    check = subprocess.run([sys.executable, "-m", "trajdocs", "check", str(tmp_path / "results")],
                           capture_output=True, text=True)
    assert check.returncode == 1 and shards[1].name in check.stdout


def test_bad_lines_and_a_shard_without_steps(tmp_path):
    folder = tmp_path / "results" / "run"
    folder.mkdir(parents=True)
    good = {"step": 1, "sample_idx": 0, "prompt_idx": 0, "prompt_tokens": [1, 2], "response_tokens": [3, 4],
            "reward": 1.0, "advantage": 0.0, "finish_reason": "stop", "dataset": "d", "ground_truth": "x",
            "request_info": None, "logprobs": [-0.5, -0.25]}
    bad = dict(good, response_tokens="oops", logprobs=[-1.0])
    (folder / "r_rollouts_000000.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n[1]\n",
                                                    encoding="utf-8")
    (folder / "r_rollouts_000001.jsonl").write_text("garbage\n", encoding="utf-8")
    _, messages = build_site_warnings(tmp_path)
    assert any("r_rollouts_000000.jsonl" in m and "line 2: response_tokens is a string" in m for m in messages), messages
    assert any("r_rollouts_000000.jsonl" in m and "line 3: is a list" in m for m in messages), messages
    assert any("r_rollouts_000001.jsonl" in m and "no record in the file says its step" in m for m in messages), messages
    with pytest.raises(Abort):
        build_site(tmp_path, strict=True)


def test_unknown_ids_and_surprisal_of_a_nan_log_prob(tmp_path):
    record = {"step": 2, "sample_idx": 0, "prompt_idx": 0, "prompt_tokens": [151644], "response_tokens": [151645],
              "reward": 0.0, "advantage": 0.0, "finish_reason": "stop", "dataset": "d", "ground_truth": "",
              "request_info": None, "logprobs": [float("nan")]}
    other = dict(record, sample_idx=1, response_tokens=[9_999_999, 151645], logprobs=None)
    path = tmp_path / "r_rollouts_000000.jsonl"
    path.write_text(json.dumps(record) + "\n" + json.dumps(other) + "\n", encoding="utf-8")
    data = read_step(str(path), ctx=ReadContext(tokenizer=TOKENIZER))
    first, second = data.trajectories
    assert first.tokens.texts == ["<|im_end|>"] and math.isnan(first.token_values["surprisal"][0])
    assert second.tokens.texts == ["<id 9999999>", "<|im_end|>"] and "surprisal" not in second.token_values
    assert len(data.problems) == 1 and "9999999" in data.problems[0] and "vocabulary" in data.problems[0]


# --- the steps of a shard: the shortcut against its plain twin ---------------------------------

def test_steps_in_takes_its_shortcut_on_real_shards(project, monkeypatch):
    folder = project / "results" / "oi-run" / "rollouts"
    shards = sorted(folder.glob("*_rollouts_*.jsonl"))
    plain = [open_instruct.steps_in_plain(s.read_bytes()) for s in shards]

    def parsed(line):  # type: ignore[no-untyped-def]
        raise AssertionError("the shortcut parsed a line")
    monkeypatch.setattr(open_instruct, "_line_step", parsed)
    assert [open_instruct.steps_in(s.read_bytes()) for s in shards] == plain
    assert plain[0] == {1: [(0, plain[0][1][0][1])], 2: [(plain[0][1][0][1], len(shards[0].read_bytes()))]}


def record_line(step, extra):  # type: ignore[no-untyped-def]
    return json.dumps({"step": step, "sample_idx": 0, **extra})


lines = st.one_of(
    st.builds(record_line, st.integers(-3, 10 ** 20), st.dictionaries(
        st.sampled_from(["finish_reason", "dataset", "step", "x"]),
        st.one_of(st.sampled_from(["step", '"step": 4', "{\"step\": 5,"]), st.integers(), st.none()), max_size=3)),
    st.builds(lambda s, cut: record_line(s, {"ground_truth": "a" * 20})[:cut], st.integers(0, 99), st.integers(1, 40)),
    st.builds(lambda a, b: f'{{"step": {a}, "sample_idx": 0, "step": {b}}}', st.integers(0, 9), st.integers(0, 9)),
    st.sampled_from(['{"step": ' + "9" * 301 + ', "x": 1}', '{"step": 05, "x": 1}', '{"step": true, "x": 1}',
                     '{"step": 3.0}', '{"step": -0}',
                     '{"x": 1, "step": 9}', '[1, 2]', "", "   ", "garbage", '{"step": "7"}', '{"step": 2}\r']),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines, max_size=12), st.booleans())
def test_steps_in_equals_its_plain_twin(items, final_newline):
    data = "\n".join(items).encode("utf-8") + (b"\n" if final_newline and items else b"")
    assert open_instruct.steps_in(data) == open_instruct.steps_in_plain(data)


def test_a_runs_folder_mixing_formats(tmp_path):
    """verl, NeMo-RL and open-instruct runs side by side (and open-instruct shards beside NeMo-RL
    dumps in one folder): each file read by its own format, one strict build."""
    opts = demo.DemoOptions(experiments=3, steps=2, trajectories=4, group_size=2, min_tokens=10, max_tokens=40,
                            kinds=("verl", "nemo-rl", "open-instruct"))
    demo.write_demo(str(tmp_path / "results"), opts)
    shared = tmp_path / "results" / "nemo-rl-grpo-math" / "logs" / "exp_001"
    writer.write_run(str(shared), "", demo.DemoOptions(steps=2, trajectories=4, group_size=2, min_tokens=10,
                                                       max_tokens=40), demo.Codec(), random.Random(2))
    for shard in (shared / "rollouts").iterdir():
        shard.rename(shared / shard.name)
    formats: dict[str, set] = {}
    for exp in find_experiments([str(tmp_path / "results")]):
        for s in exp.steps:
            formats.setdefault(exp.folder.split("results/")[-1], set()).add(s.fmt)
    verl = {k: v for k, v in formats.items() if k.startswith("verl-dapo-math")}
    assert verl and all(v == {"verl"} for v in verl.values()), formats
    assert {k: v for k, v in formats.items() if k not in verl} == {
        "nemo-rl-grpo-math/logs/exp_001": {"nemo-rl", "open-instruct"},
        "open-instruct-grpo/rollouts": {"open-instruct"}}, formats
    site = build_site(tmp_path, {"runs": "results", "tokenizer": TOKENIZER}, strict=True)
    slug = next(e.slug for e in find_experiments([str(tmp_path / "results")]) if writer.RUN_NAME in e.name)
    assert len(sections(step_pages(site, slug, 2))) == 4


def test_a_changed_run_metadata_file_is_shown_on_the_next_build(project, tmp_path, caplog):
    # the metadata file is no step file, but its fields are on every page: it counts in the cache key
    folder = tmp_path / "results" / "run"
    folder.mkdir(parents=True)
    source = project / "results" / "oi-run" / "rollouts"
    shard = sorted(source.glob(f"{writer.RUN_NAME}_rollouts_*.jsonl"))[0]
    (folder / shard.name).write_bytes(shard.read_bytes())
    meta = folder / f"{writer.RUN_NAME}_metadata.jsonl"
    meta.write_text(json.dumps({"run_name": writer.RUN_NAME, "git_commit": "aaaaaaa"}) + "\n", encoding="utf-8")
    plugin = {"runs": "results", "workers": 1}
    site = build_site(tmp_path, plugin=plugin, strict=True)
    page = site / "runs" / "run" / "step-1" / "index.html"
    assert "aaaaaaa" in page.read_text("utf-8")
    meta.write_text(json.dumps({"run_name": writer.RUN_NAME, "git_commit": "bbbbbbb"}) + "\n", encoding="utf-8")
    with caplog.at_level("INFO", logger="mkdocs.plugins.trajdocs"):
        build_site(tmp_path, plugin=plugin, strict=True)
    html = page.read_text("utf-8")
    assert "bbbbbbb" in html and "aaaaaaa" not in html
    assert "0 from cache" in caplog.text
