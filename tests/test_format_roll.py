"""ROLL: the logging board (`save_logging_board_dir`) and the rollout dump (`rollout_dump_dir`),
written as ROLL writes them, built into real sites and read back page by page against the files:
every sample, reward and text; for the board every token's text and every channel's values."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from mkdocs.exceptions import Abort

from conftest import build_site, build_site_warnings
from dump_checks import qwen_tokenizer_json, run_cli, shown_response, shown_reward, step_records
from test_real_shapes import demo, pre_text, shown_metadata, shown_prompt, shown_tokens, \
    shown_trajectories, step_pages
from trajdocs.discover import find_experiments
from trajdocs.formats import FORMATS, detect_format, match_step_path
from trajdocs.text import fmt_number
from trajdocs.tokenizer import decode_pieces

roll = FORMATS["roll"]
PAD = "<|endoftext|>"  # Qwen's pad token, which ROLL pads prompts (left) and responses (right) with
OPTS = demo.DemoOptions(experiments=2, steps=3, trajectories=16, group_size=4, min_tokens=20, max_tokens=90,
                        kinds=("roll", "roll-agentic"))


@pytest.fixture(scope="module")
def roll_site(tmp_path_factory):
    project = tmp_path_factory.mktemp("roll")
    demo.write_demo(str(project / "results"), OPTS)
    board = project / "results" / "roll-rlvr-math" / "logging_board"
    first = sorted(board.iterdir())[0]
    lines = first.read_text(encoding="utf-8").splitlines(keepends=True)
    moved = [json.dumps(dict(json.loads(line), step=3), ensure_ascii=False) + "\n" for line in lines[:2]]
    (board / "data_20261103_091500_000.jsonl").write_text("".join(moved), encoding="utf-8")  # a later step: 3
    site, messages = build_site_warnings(project)
    return project, site, messages


def board_experiment(project):  # type: ignore[no-untyped-def]
    return next(e for e in find_experiments([str(project / "results")]) if e.name.endswith("logging_board"))


def unpack(packed: str | None) -> list[float] | None:
    if packed is None:
        return None
    raw = base64.b64decode(packed.lstrip("!"))
    code = "f" if packed.startswith("!") else "e"
    return list(struct.unpack(f"<{len(raw) // struct.calcsize(code)}{code}", raw))


def as_packed(values: list[float]) -> list[float]:
    """What packing keeps of each value (float16, as the page carries it)."""
    return [struct.unpack("<e", struct.pack("<e", v))[0] for v in values]


def test_the_writer_follows_roll(roll_site):
    project, _, _ = roll_site
    board = project / "results" / "roll-rlvr-math" / "logging_board"
    names = sorted(p.name for p in board.iterdir())
    assert len(names) == 2 * OPTS.steps + 1 and all(n.startswith("data_2026") for n in names)
    record = json.loads((board / names[0]).read_text(encoding="utf-8").splitlines()[0])
    assert list(record) == ["log_probs2", "logprobs", "new_response_mask", "prompt", "response",
                            "old_log_probs2_entropy", "ref_logprobs", "values", "token_rewards", "reward", "step",
                            "response_tokens"]
    n = sum(record["new_response_mask"])
    assert record["step"] == 0 and n < len(record["response_tokens"]) and record["response_tokens"][n] == PAD
    assert len(record["logprobs"]) == len(record["new_response_mask"]) and record["values"] == record["token_rewards"]
    assert len(record["token_rewards"]) > len(record["logprobs"])  # the whole sequence less its first token
    pads = [json.loads(line)["prompt"].startswith(PAD) for line in (board / names[0]).read_text().splitlines()]
    assert any(pads) and not all(pads)  # left padding to the longest prompt of the batch
    dump = json.loads((project / "results" / "roll-rlvr-math" / "rollout_dump" / "rollout_dump_data.step_0.jsonl")
                      .read_text(encoding="utf-8"))
    assert all(isinstance(v, list) and len(v) == len(dump["responses"]) for v in dump.values())


def test_well_formed_dumps_build_without_warnings(roll_site):
    assert roll_site[2] == []


def test_board_steps_come_from_the_lines(roll_site):
    project, _, _ = roll_site
    exp = board_experiment(project)
    assert [s.step for s in exp.steps] == [0, 1, 2, 3]  # from 0, and the file holding step 3
    assert all(len(s.parts) == 2 for s in exp.steps[:3])  # one file a domain batch


def test_every_board_token_and_channel_equals_the_file(roll_site):
    project, site, _ = roll_site
    exp = board_experiment(project)
    tokenizer = qwen_tokenizer_json()
    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(tokenizer)
    checked = 0
    for step in exp.steps:
        records = step_records(step)
        shown = shown_trajectories(step_pages(site, exp.slug, step.step))
        assert sorted(t.index for t in shown) == list(range(len(records)))
        for item in shown:
            name, record = records[item.index]
            where = f"step {step.step} {name} trajectory {item.index}"
            n = sum(record["new_response_mask"])
            ids = [tk.token_to_id(piece) for piece in record["response_tokens"][:n]]
            expected = decode_pieces(ids, tokenizer).texts
            tokens = shown_tokens(item.section)
            assert [t.text for t in tokens] == expected, where
            assert "".join(expected) == tk.decode(ids, skip_special_tokens=False), where
            assert [t.score for t in tokens] == ["%.6g" % v for v in record["old_log_probs2_entropy"][:n]], where
            box = item.section.find(lambda node: node.tag == "div" and "td-tokens" in node.classes())
            offset = len(record["token_rewards"]) - len(record["logprobs"])
            for channel, values in (("logprob", record["logprobs"][:n]),
                                    ("surprisal", [-v for v in record["logprobs"][:n]]),
                                    ("ref_logprob", record["ref_logprobs"][:n]),
                                    ("token_reward", record["token_rewards"][offset:offset + n])):
                got = unpack(box.attrs.get(f"data-{channel}"))
                want = as_packed(values)
                assert got == want or (len(got) == 1 and want.count(got[0]) == n), (where, channel)
            assert record["token_rewards"][offset + n - 1] == record["reward"]  # the reward sits on the last token
            assert shown_reward(item) == f"reward {fmt_number(record['reward'])}", where
            prompt = record["prompt"]
            pads = 0
            while prompt.startswith(PAD):
                prompt, pads = prompt[len(PAD):], pads + 1
            got = shown_prompt(item.section, item.group)
            assert got is not None and pre_text(got[2]) == prompt, where
            meta = shown_metadata(item.section)
            assert meta.get("step") == str(record["step"]), where
            assert meta.get("prompt left padding (not shown)") == (f"{pads} × {PAD}" if pads else None), where
            checked += 1
    assert checked == OPTS.trajectories * OPTS.steps + 2


def dump_expected(record: dict):  # type: ignore[no-untyped-def]
    return record["prompt"], record["responses"], record["scores"], {"global_step": str(record["global_step"]),
                                                                    "ground_truth": record["ground_truth"]}


def test_every_rollout_dump_sample_equals_the_file(roll_site):
    project, site, _ = roll_site
    exp = next(e for e in find_experiments([str(project / "results")]) if e.name == "roll-rlvr-math/rollout_dump")
    for step in exp.steps:
        [(_, columns)] = step_records(step)
        shown = shown_trajectories(step_pages(site, exp.slug, step.step))
        assert sorted(t.index for t in shown) == list(range(len(columns["responses"])))
        for item in shown:
            i = item.index
            assert shown_response(item) == columns["responses"][i]
            assert shown_reward(item) == f"reward {fmt_number(columns['scores'][i])}"
            got = shown_prompt(item.section, item.group)
            assert got is not None and pre_text(got[2]) == columns["prompt"][i]
            meta = shown_metadata(item.section)
            assert meta["global_step"] == str(step.step) and meta["id"] == columns["id"][i]


def test_agentic_messages_are_turns(roll_site):
    project, site, _ = roll_site
    exp = next(e for e in find_experiments([str(project / "results")]) if e.name.startswith("roll-agentic"))
    for step in exp.steps:
        [(_, columns)] = step_records(step)
        page = step_pages(site, exp.slug, step.step)[0]
        shown = shown_trajectories([page])
        assert len(shown) == len(columns["messages"])
        for item in shown:
            messages = json.loads(columns["messages"][item.index])
            data = json.loads(columns["trajectory_data"][item.index])
            turns = item.section.find_all(lambda node: "td-turn" in node.classes())
            assert [t.attrs["data-role"] for t in turns] == [m["role"] for m in messages]
            assert [pre_text(t.find(lambda node: node.tag == "pre")) for t in turns] == [m["content"] for m in messages]
            assert shown_reward(item) == f"reward {fmt_number(data['reward_info']['episode_reward'])}"


def test_steps_in_keeps_every_line_with_a_step():
    lines = [b'{"step": 0, "x": 1}\n', b'not json\n', b'{"step": 1}\n', b'\n', b'{"step": 0}\n', b'{"step": 1, "a']
    data = b"".join(lines)
    steps = roll.steps_in(data)
    starts = [sum(map(len, lines[:i])) for i in range(len(lines) + 1)]
    # the broken line goes with step 0 before it, the half-written last one with step 0 before it too
    assert steps == {0: [(starts[0], starts[2]), (starts[4], starts[6])], 1: [(starts[2], starts[3])]}
    assert roll.steps_in(b'not json\n{"step": 4}\n') == {4: [(0, 21)]}  # a first bad line: with the next step
    assert roll.steps_in(b"garbage\n") == {}


def test_token_pieces_decode_split_characters_on_their_last_token():
    assert roll.token_texts(["Hello", "Ġ", "ðŁ", "¦", "ľ", "<|im_end|>"]) == ["Hello", " ", "", "", "🦜", "<|im_end|>"]
    assert roll.token_texts(["▁the", "x"]) is None  # not byte-level BPE: shown as written


def test_paths():
    board = match_step_path("out/logging_board/data_20261103_090000_439.jsonl")
    assert (board.fmt, board.step, board.series, board.folder) == ("roll", None, "roll-board", "out/logging_board")
    dump = match_step_path("out/rollout_dump/rollout_dump_data.step_12.jsonl")
    assert (dump.fmt, dump.step, dump.series) == ("roll", 12, "roll-dump")
    assert match_step_path("out/data_2026_1.jsonl") is None
    slashless = match_step_path("out/logging_boarddata_20261103_090000_439.jsonl")  # the folder without its "/"
    assert (slashless.fmt, slashless.folder, slashless.series) == ("roll", "out", "roll-board")
    assert detect_format("x/rollout_dump_data.step_1.jsonl") == "roll"


def test_bad_files_warn_and_the_rest_builds(tmp_path, warnings_logged):
    demo.write_demo(str(tmp_path / "results"), demo.DemoOptions(experiments=1, steps=2, trajectories=8, group_size=2,
                    min_tokens=20, max_tokens=40, kinds=("roll",), names=("r",)))
    board = tmp_path / "results" / "r" / "logging_board"
    first = sorted(board.iterdir())[0]
    with open(first, "a", encoding="utf-8") as f:
        f.write('{"log_probs2": [0.1, 0.2], "logprobs": [')
    (board / "data_20261103_093000_001.jsonl").write_text("[1]\n", encoding="utf-8")
    dump = tmp_path / "results" / "r" / "rollout_dump" / "rollout_dump_data.step_1.jsonl"
    dump.write_text('{"responses": ["a", "b"], "scores": [1.0]}\n', encoding="utf-8")
    (dump.parent / "rollout_dump_data.step_0.jsonl").write_text('{"responses": ["a"', encoding="utf-8")
    site = build_site(tmp_path)
    text = "\n".join(warnings_logged)
    assert f"{first.name}: line" in text and "may still be being written" in text
    assert "data_20261103_093000_001.jsonl: no record in the file says its step" in text
    assert "rollout_dump_data.step_1.jsonl" in text and "columns of different lengths" in text
    assert "rollout_dump_data.step_0.jsonl" in text
    exp = next(e for e in find_experiments([str(tmp_path / "results")]) if e.name.endswith("logging_board"))
    assert 'data-index="3"' in step_pages(site, exp.slug, 0)[0].read_text(encoding="utf-8")
    with pytest.raises(Abort):
        build_site(tmp_path, strict=True)
    assert run_cli("check", str(tmp_path / "results")).returncode == 1


def test_the_cli_builds_with_a_tokenizer_and_check_lists_the_format(tmp_path):
    demo.write_demo(str(tmp_path / "results"), demo.DemoOptions(experiments=1, steps=2, trajectories=8, group_size=2,
                    min_tokens=20, max_tokens=40, kinds=("roll",), names=("r",)))
    result = run_cli("build", str(tmp_path / "results"), "-o", str(tmp_path / "site"), "--tokenizer",
                     qwen_tokenizer_json(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    exp = next(e for e in find_experiments([str(tmp_path / "results")]) if e.name.endswith("rollout_dump"))
    assert all(step_pages(tmp_path / "site", exp.slug, s.step)[0].exists() for s in exp.steps)
    check = run_cli("check", str(tmp_path / "results"))
    assert check.returncode == 0 and "format roll" in check.stdout


def plain_token_texts(pieces: list) -> list[str] | None:
    """The plain twin of `roll.token_texts`: every character looked up one by one."""
    import codecs

    from trajdocs.tokenizer import BYTE_DECODER
    if not all(isinstance(p, str) for p in pieces):
        return None
    for piece in pieces:
        for ch in piece:
            if ch not in BYTE_DECODER:
                return None
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    texts = [decoder.decode(bytes([BYTE_DECODER[ch] for ch in piece])) for piece in pieces]
    tail = decoder.decode(b"", final=True)
    if tail and texts:
        texts[-1] += tail
    return texts


def test_token_texts_equals_its_plain_twin_on_generated_and_real_pieces(roll_site):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from trajdocs.tokenizer import BYTE_DECODER
    alphabet = st.sampled_from(sorted(BYTE_DECODER) + ["▁", "é", " ", "\x00", "🦜"])

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.text(alphabet, max_size=6), max_size=12))
    def check(pieces):  # type: ignore[no-untyped-def]
        assert roll.token_texts(pieces) == plain_token_texts(pieces)

    check()
    project, _, _ = roll_site
    for step in board_experiment(project).steps:
        for _, record in step_records(step):
            assert roll.token_texts(record["response_tokens"]) == plain_token_texts(record["response_tokens"])


def test_a_board_folder_of_only_unreadable_files_fails_strict(tmp_path):
    board = tmp_path / "results" / "run" / "logging_board"
    board.mkdir(parents=True)
    (board / "data_20261103_090000_001.jsonl").write_text('{"step": 0, "response_tokens": ["a"', encoding="utf-8")
    result = run_cli("build", str(tmp_path / "results"), "-o", str(tmp_path / "site"), "--strict", cwd=tmp_path)
    assert result.returncode != 0 and "data_20261103_090000_001.jsonl" in result.stdout + result.stderr
    assert run_cli("check", str(tmp_path / "results")).returncode == 1


def test_a_runs_folder_mixing_every_format_builds(tmp_path, warnings_logged):
    kinds = ("areal", "skyrl", "roll", "roll-agentic", "verl", "lightrft")
    demo.write_demo(str(tmp_path / "results"), demo.DemoOptions(experiments=len(kinds), steps=2, trajectories=8,
                    group_size=2, min_tokens=20, max_tokens=40, kinds=kinds))
    site = build_site(tmp_path, strict=True)
    assert warnings_logged == []
    formats = {}
    for exp in find_experiments([str(tmp_path / "results")]):
        formats.setdefault(exp.steps[0].fmt, []).append(exp.name)
        assert all(step_pages(site, exp.slug, s.step)[0].exists() for s in exp.steps)
    assert set(formats) == {"areal", "skyrl", "roll", "verl", "lightrft"}
    assert len(formats["roll"]) == 3 and len(formats["areal"]) == 2


def test_no_high_entropy_counts_are_made_up_for_a_file_without_flags(roll_site):
    # ROLL flags no tokens: the count and ratio are unknown (a dash), never 0 / 0.0 %
    project, site, _ = roll_site
    pages = sorted(p for p in site.rglob("step-*/index.html") if "logging_board" in p.as_posix())
    assert pages
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert "<dt>High-entropy tokens</dt><dd>—</dd>" in html and "<dt>High-entropy ratio</dt><dd>—</dd>" in html
        assert "<dt>High-entropy tokens</dt><dd>0</dd>" not in html and "<th>High-entropy</th>" not in html
        assert "as flagged in the file" not in html
    downloads = [p for p in site.rglob("steps.json") if "logging_board" in p.as_posix()]
    assert downloads
    for row in json.loads(downloads[0].read_text(encoding="utf-8")):
        assert row["tokens"] and row["high_entropy_tokens"] is None and row["high_entropy_ratio"] is None
