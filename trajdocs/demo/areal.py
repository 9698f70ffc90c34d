"""AReaL trajectory dumps, written as `WorkflowExecutor._dump_trajectory` writes them
(see `trajdocs/formats/areal.py` for the facts and where they are in AReaL's code).

Synchronous GRPO training: the rollouts of step s are generated with weight version s (the
version is global_step + 1 after each update), evaluation after the update of step s with
version s + 1. One task = one prompt run `group_size` times; its file gets one line a sample
whose completion is not empty. Prompt tokens carry version -1, so `head_version` is -1.
"""

from __future__ import annotations

import json
import math
import os

from . import Writer  # (defined before the package imports its writer modules)


def _task_lines(codec, rng, opts, task_id: int, version: int, question: str, answer: int, p_correct: float,
                skip: set[int]) -> list[str]:
    from . import f32, rollout
    lines = []
    for i in range(max(1, opts.group_size)):
        if i in skip:  # an empty completion: AReaL skips the row
            continue
        r = rollout(rng, codec, opts, question, answer, p_correct, 1.0)
        record = {"task_id": task_id, "sample_idx": i, "seqlen": len(r.prompt_ids) + len(r.response_ids),
                  "prompt_len": len(r.prompt_ids), "head_version": -1, "tail_version": version,
                  "reward": f32(float(r.accuracy)), "prompt": codec.decode(r.prompt_ids, skip_special=False),
                  "completion": codec.decode(r.response_ids, skip_special=False)}
        lines.append(json.dumps(record) + "\n")  # ensure_ascii: "\uXXXX" escapes
    return lines


def write(folder: str, name: str, opts, codec, rng) -> list[str]:  # type: ignore[no-untyped-def]
    from . import PROBLEMS
    trial = os.path.join(folder, name, "logs", "areal", name, "trial0")  # {fileroot}/logs/{user}/{exp}/{trial}
    written: list[str] = []
    task_ids = {"rollout": 0, "eval-rollout": 0}
    tasks = max(1, math.ceil(opts.trajectories / max(1, opts.group_size)))

    def dump(view: str, version: int, s: int) -> None:
        out = os.path.join(trial, view, str(version))
        os.makedirs(out, exist_ok=True)
        for t in range(tasks):
            problem = (s * 5 + t * 3 + (7 if view != "rollout" else 0)) % len(PROBLEMS)
            a, b = 12 + (problem * 5 + t + s) % 40, 3 + (problem + s) % 7
            task_id = task_ids[view]
            task_ids[view] += 1
            skip = {rng.randrange(max(1, opts.group_size))} if (s + t) % 5 == 4 and opts.group_size > 1 else set()
            path = os.path.join(out, f"{task_id}.jsonl")
            with open(path, "a", encoding="utf-8") as f:
                f.writelines(_task_lines(codec, rng, opts, task_id, version, PROBLEMS[problem][0].format(a=a, b=b),
                                         PROBLEMS[problem][1](a, b), min(0.9, 0.2 + 0.5 * s / max(1, opts.steps)),
                                         skip))
            written.append(path)

    for s in range(opts.steps):
        dump("rollout", s, s)
        if (s + 1) % 4 == 0 or s + 1 == opts.steps:  # evaluation after the update: version s + 1
            dump("eval-rollout", s + 1, s)
    return written


WRITERS = {"areal": Writer("AReaL rollout/ and eval-rollout/ dumps (rollout.dump_to_file)", "areal-gsm8k-grpo",
                           write)}
