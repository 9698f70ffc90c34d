"""Every real input and bad input, on real builds: formats, faults, hostile text, huge values."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import struct
import subprocess
import sys
import zlib

import pytest
from mkdocs.exceptions import Abort

from conftest import build_site, read, steps_table, simple_run, tok, tokens_in, trajectory, write_step


def png(width: int = 3, height: int = 2) -> bytes:
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_older_saver_markers_highlight_without_showing_markers(tmp_path):
    text = "First <HIGH_ENTROPY>Wait</HIGH_ENTROPY>, then <HIGH_ENTROPY> <b></HIGH_ENTROPY> end"
    record = {"global_step": 4, "generated_text": "\n" + text, "pure_generated_text": text,
              "info": {"reward": 1.0, "response_length": 9}}
    write_step(tmp_path / "results", "old", 4, [record])
    html = read(build_site(tmp_path, strict=True) / "runs" / "old" / "step-4" / "index.html")
    (tokens,) = tokens_in(html)
    assert [t["text"] for t in tokens] == ["First ", "Wait", ", then ", " <b>", " end"]
    assert [t["class"] for t in tokens] == [None, "h", None, "h", None]
    assert "HIGH_ENTROPY" not in html
    assert "<dt>High-entropy tokens</dt><dd>2</dd>" in html and "<dd>22.2%</dd>" in html


def test_verl_rollouts_are_experiments_with_prompt_groups(tmp_path):
    folder = tmp_path / "results" / "my-exp" / "rollout_data"
    folder.mkdir(parents=True)
    for step in (1, 2, 10):
        lines = [{"input": f"user\nQ{g}?\nassistant\n", "output": f"answer {i} <think>", "gts": "72",
                  "score": float((i + g) % 2), "step": step, "acc": bool((i + g) % 2), "pred": "7"}
                 for g in range(2) for i in range(4)]
        (folder / f"{step}.jsonl").write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    site = build_site(tmp_path, strict=True)
    overview = read(site / "runs" / "index.html")
    assert '><span class="td-seg">my-exp</span>/<wbr><span class="td-seg">rollout_data</span></a>' in overview  # breaks at "/" only
    assert "Accuracy" in overview and "reward_metrics" not in overview  # verl's accuracy comes from acc
    rows = list(csv.DictReader(io.StringIO(read(site / "runs" / "my-exp" / "rollout_data" / "steps.csv"))))
    assert [(r["tokens"], r["high_entropy_tokens"]) for r in rows] == [("", "")] * 3  # no tokens: not 0
    data = json.loads(read(site / "runs" / "my-exp" / "rollout_data" / "steps.json"))
    assert [(d["tokens"], d["high_entropy_tokens"]) for d in data] == [(None, None)] * 3
    table = steps_table(read(site / "runs" / "my-exp" / "rollout_data" / "index.html"))
    assert re.findall(r'<a href="step-(\d+)/">', table) == ["1", "2", "10"]
    html = read(site / "runs" / "my-exp" / "rollout_data" / "step-2" / "index.html")
    assert html.count('class="td-group"') == 2
    assert html.count("Prompt group · 4 responses to one prompt · reward mean 0.5 ± 0.5 (min 0, max 1)") == 2
    assert html.count('<summary>Prompt</summary>') == 2  # once per group, not per response
    assert "answer 3 &lt;think&gt;" in html and "<dt>pred</dt><dd><span class=\"td-str\">7</span></dd>" in html


def test_images_are_copied_and_inline_images_shown(tmp_path, warnings_logged):
    run = tmp_path / "results" / "vl" / "trajectories"
    (run / "images").mkdir(parents=True)
    (run / "images" / "step1_exp0_sample0_img0.png").write_bytes(png())
    (tmp_path / "secret.png").write_bytes(png())
    inline = base64.b64encode(png(2, 2)).decode()
    records = [trajectory(1, 0, [tok("cat", True, 1.0)], has_images=True, num_images=1,
                          image_paths=["images/step1_exp0_sample0_img0.png", "../../../secret.png"],
                          images_base64=[inline, '" onerror="alert(1)'])]
    write_step(tmp_path / "results", "vl", 1, records)
    site = build_site(tmp_path)
    html = read(site / "runs" / "vl" / "step-1" / "index.html")
    src = re.search(r'<img class="td-thumb" src="([^"]+)"', html)[1]
    assert src == "../files/images/step1_exp0_sample0_img0.png"
    assert (site / "runs" / "vl" / "step-1" / src).resolve().read_bytes() == png()
    assert f'src="data:image/png;base64,{inline}"' in html
    assert "onerror" not in html and "secret" not in "".join(p.name for p in site.rglob("*"))
    assert any("leaves the run folder" in m for m in warnings_logged)
    assert any("images_base64[1] is not base64" in m for m in warnings_logged)


def test_wrong_shapes_warn_name_the_file_and_keep_the_rest(tmp_path, warnings_logged):
    runs = tmp_path / "results"
    simple_run(runs, "exp", (1,))
    cases = {
        2: {"not": "a list"},
        3: [],
        4: [{"pure_generated_tokens": ["plain", " strings"], "info": {"reward": "high"}}],
        5: [trajectory(5, 0, [tok("ok", True, 1.0)]), 7, {"global_step": "five"}],
    }
    paths = {step: write_step(runs, "exp", step, json.dumps(doc)) for step, doc in cases.items()}
    site = build_site(tmp_path)
    expected = {2: "top level is an object", 3: "empty list", 4: "2 of 2 entries are not token objects",
                5: "trajectory 1: is a number"}
    for step, message in expected.items():
        assert any(str(paths[step]) in m and message in m for m in warnings_logged), (step, warnings_logged)
    assert any("info.reward is a string, expected a number" in m for m in warnings_logged)
    assert any("global_step is a string" in m for m in warnings_logged)
    step4 = read(site / "runs" / "exp" / "step-4" / "index.html")
    assert [t["text"] for t in tokens_in(step4)[0]] == ["plain", " strings"]
    assert len(tokens_in(read(site / "runs" / "exp" / "step-5" / "index.html"))) == 1
    assert "problems" in read(site / "runs" / "exp" / "index.html")
    with pytest.raises(Abort):
        build_site(tmp_path, strict=True)


def test_exact_text_for_characters_html_cannot_carry(tmp_path):
    texts = ["a\x00b", "\ud800", "ok", "\udfff\x00", "\r", "\u2028", "\u202eRTL", "x\u0301"]
    records = [trajectory(1, 0, [tok(t, True, 1.0) for t in texts])]
    write_step(tmp_path / "results", "exp", 1, json.dumps(records))  # ensure_ascii: surrogates as \ud800
    html = read(build_site(tmp_path, strict=True) / "runs" / "exp" / "step-1" / "index.html")
    assert "\x00" not in html
    spans = re.findall(r'<i class="h" data-e="1"(?: data-raw="([^"]*)")?>([^<]*)</i>', html)
    decoded = [json.loads('"' + raw.replace("&quot;", '"') + '"') if raw else text.replace("&#13;", "\r")
               for raw, text in spans]
    assert decoded == texts


def test_hostile_names_keys_and_values_build(tmp_path):
    name = '<img src=x onerror=alert(1)>"\'&'
    record = trajectory(1, 0, [tok("<script>alert(1)</script>", True, 9.0)], label="<b>label</b>",
                        **{"<i>key</i>": "<u>value</u>"})
    write_step(tmp_path / "results", name, 1, [record])
    site = build_site(tmp_path, strict=True)
    for page in site.rglob("*.html"):
        html = read(page)
        assert "<img src=x" not in html and "<script>alert" not in html and "<i>key" not in html, page
    assert "&lt;img src=x onerror=alert(1)&gt;" in read(site / "runs" / "index.html")


def test_huge_values_stay_usable(tmp_path):
    runs = tmp_path / "results"
    nested: dict = {"leaf": 1.0}
    for depth in range(40):
        nested = {f"level{depth}": nested}
    long = [tok(f"t{i} ", i % 50 == 0, float(i % 7)) for i in range(100_000)]
    write_step(runs, "big", 1, [trajectory(1, 0, long, info={"reward": 1.0, "trace": list(range(2000)),
                                                               "reward_metrics": nested})])
    many = [trajectory(2, i, [tok("x", True, 1.0)], reward=float(i % 2)) for i in range(512)]
    write_step(runs, "big", 2, many)
    site = build_site(tmp_path, strict=True, plugin={"runs": "results", "trajectories_per_page": 50})
    html = read(site / "runs" / "big" / "step-1" / "index.html")
    assert "list of 2000; mean 999.5, min 0, max 1999" in html
    assert "reward_<wbr>metrics.<wbr>level39.<wbr>level38.<wbr>level37.<wbr>level36" in html and "level0" in html  # deep rest as text
    assert html.count("<i") >= 100_000
    assert 'Show the remaining 97,001 tokens' in html  # the end-of-sequence token is the last
    pages = sorted((site / "runs" / "big").glob("step-2*/index.html"))
    assert len(pages) == 11
    counts = [read(p).count('<section class="td-traj"') for p in pages]
    assert sum(counts) == 512 and max(counts) == 50
    assert 'aria-current="page">1<' in read(site / "runs" / "big" / "step-2" / "index.html")
    assert re.search(r'<a class="td-next" href="../step-2/"', html)


def test_integers_beyond_any_float_are_shown_as_written(tmp_path, warnings_logged):
    huge = "9" * 400  # no float holds it; Python cannot print an int past 4300 digits either
    longest = "7" * 5000
    records = [trajectory(1, 0, [tok("a", True, 1.0)], reward=1.0), trajectory(1, 1, [tok("b")], reward=0.0)]
    text = json.dumps(records)
    text = text.replace('"reward": 1.0', f'"reward": {huge}, "ids": [{huge}, 1], "long_id": {longest}', 1)
    path = tmp_path / "results" / "exp" / "trajectories_step_1.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    site = build_site(tmp_path)
    html = read(site / "runs" / "exp" / "step-1" / "index.html")
    assert [[t["text"] for t in c] for c in tokens_in(html)] == [["a"], ["b"]]  # the file stays readable
    assert huge in html and longest in html
    assert [m for m in warnings_logged if "trajectory 0: info.reward is" in m]  # not a number to use
    assert not [m for m in warnings_logged if "unreadable" in m]


def test_deeply_nested_file_is_unreadable_not_a_crash(tmp_path, warnings_logged):
    simple_run(tmp_path / "results", "exp", (1,))
    path = write_step(tmp_path / "results", "exp", 2, "[" * 100_000 + "]" * 100_000)
    site = build_site(tmp_path)
    assert any(str(path) in m and "unreadable" in m for m in warnings_logged)
    assert (site / "runs" / "exp" / "step-1" / "index.html").exists()


def test_check_command_lists_runs_and_problems(tmp_path):
    simple_run(tmp_path / "results", "exp", (1, 2))
    ok = subprocess.run([sys.executable, "-m", "trajdocs", "check", str(tmp_path / "results")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "exp: 2 steps (1–2), format lightrft" in ok.stdout and "0 problems" in ok.stdout
    bad = write_step(tmp_path / "results", "exp", 3, '[{"global_step": 3,')
    failed = subprocess.run([sys.executable, "-m", "trajdocs", "check", str(tmp_path / "results")],
                            capture_output=True, text=True)
    assert failed.returncode == 1
    assert f"{bad}: unreadable: invalid JSON: unexpected end of file at line 1" in failed.stdout
    assert "1 problem" in failed.stdout


def test_prompt_group_header_counts_nan_rewards_left_out(tmp_path):
    records = [trajectory(1, 0, [tok("a")], reward=0.9), trajectory(1, 0, [tok("b")], reward=float("nan"))]
    write_step(tmp_path / "results", "exp", 1, json.dumps(records))  # NaN as Python writes it
    html = read(build_site(tmp_path) / "runs" / "exp" / "step-1" / "index.html")
    assert "Prompt group · 2 responses to one prompt · reward mean 0.9 ± 0 (min 0.9, max 0.9) · 1 NaN not counted" in html


def test_singular_counts_read_as_english(tmp_path):
    records = [trajectory(1, 0, [], end={"high_entropy": True, "entropy_score": 1.5}),  # an immediate end of sequence
               trajectory(1, 1, [tok("b")], reward=0.0)]
    records[0].pop("pure_generated_tokens", None)
    records[0]["info"]["reward"] = float("nan")
    write_step(tmp_path / "results", "exp", 1, json.dumps(records))
    site = build_site(tmp_path, plugin={"runs": "results", "correct": {"field": "info.reward", "min": 0.5}})
    html = read(site / "runs" / "exp" / "step-1" / "index.html")
    assert "Response · 1 token</div>" in html and "Response · 2 tokens</div>" in html
    assert "Average over 1 token that carries a score." in html
    assert "correct rule: info.reward is not a finite number in 1 trajectory (0): no badge" in html
