"""open-instruct's rollout traces, written as its own code writes them (see
`trajdocs/formats/open_instruct.py` for the facts and where they are in open-instruct's code):
`<rollouts_save_path>/<run>_rollouts_<shard:06d>.jsonl`, each step's samples appended to shard
`samples written before the step // 10000`, one `json.dumps(asdict(record))` line a sample
(ASCII-escaped, NaN as `NaN`), and `<run>_metadata.jsonl`. Rewards as open-instruct's
verifiable reward gives them (`verification_reward` 10.0 when correct), GRPO advantages
standardised within each prompt's samples; an empty response is the EOS id with a NaN log-prob.

`write_corpus` writes a run of realistic size (the benchmark's token-id corpus)."""

from __future__ import annotations

import json
import math
import os
import random

from . import Writer

SHARD_SIZE = 10000  # ROLLOUT_SHARD_SIZE
RUN_NAME = "grpo_qwen_math__1__1764633600"  # open-instruct's f"{exp_name}__{seed}__{int(time.time())}"
VERIFICATION_REWARD = 10.0


def step_records(codec, rng: random.Random, opts, e: int, step: int) -> list[dict]:  # type: ignore[no-untyped-def]
    from . import PROBLEMS, rollout
    progress = step / max(1, opts.steps)
    p_correct = min(0.9, 0.2 + progress * 0.6)
    group_size = max(1, opts.group_size)
    rollouts, shapes = [], {}
    if opts.special_every and step % opts.special_every == 0 and opts.trajectories >= 2:
        shapes = {1: "eos"}
    for g in range(math.ceil(opts.trajectories / group_size)):
        problem = (step * 5 + g * 3 + e) % len(PROBLEMS)
        a, b = 12 + (problem * 5 + g + step) % 40, 3 + (problem + step) % 7
        question = PROBLEMS[problem][0].format(a=a, b=b)
        for _ in range(min(group_size, opts.trajectories - len(rollouts))):
            rollouts.append((rollout(rng, codec, opts, question, PROBLEMS[problem][1](a, b), p_correct, 1.0,
                                     shapes.get(len(rollouts), "")), str(PROBLEMS[problem][1](a, b))))
    scores = [VERIFICATION_REWARD if r.accuracy > 0 else 0.0 for r, _ in rollouts]
    advantages = []
    for start in range(0, len(scores), group_size):
        group = scores[start:start + group_size]
        mean = sum(group) / len(group)
        std = math.sqrt(sum((x - mean) ** 2 for x in group) / len(group))  # numpy's std
        advantages += [(x - mean) / (std + 1e-8) for x in group]
    records = []
    for i, ((r, truth), score, adv) in enumerate(zip(rollouts, scores, advantages)):
        response = r.response_ids
        logprobs: list[float] = [float(lp) for lp in r.log_probs]
        if response == [codec.eos]:  # nothing generated: the EOS id, a NaN log-prob
            logprobs = [float("nan")]
        truncated = len(response) >= opts.max_tokens
        records.append({
            "step": step, "sample_idx": i, "prompt_idx": i // group_size,
            "prompt_tokens": r.prompt_ids, "response_tokens": response,
            "reward": float(score), "advantage": float(adv),
            "finish_reason": "length" if truncated else "stop", "dataset": "gsm8k",
            "ground_truth": truth,
            "request_info": {"num_calls": 0, "timeouts": 0, "tool_errors": "", "tool_outputs": "",
                             "tool_runtimes": 0.0, "tool_calleds": False, "tool_call_stats": [],
                             "rollout_state": {}},
            "logprobs": logprobs,
        })
    return records


def write_run(folder: str, name: str, opts, codec, rng: random.Random,  # type: ignore[no-untyped-def]
              shard_size: int = SHARD_SIZE, run_name: str = RUN_NAME) -> list[str]:
    """One run's traces under `<folder>/<name>/rollouts/`; `shard_size` samples per shard."""
    out = os.path.join(folder, name, "rollouts")
    os.makedirs(out, exist_ok=True)
    meta = os.path.join(out, f"{run_name}_metadata.jsonl")
    with open(meta, "w") as f:
        f.write(json.dumps({"run_name": run_name, "git_commit": "e6c3044a", "model_name": "Qwen/Qwen2.5-0.5B",
                            "timestamp": "2026-12-02T00:00:00+00:00"}) + "\n")
    written: list[str] = []
    samples = 0
    e = sum(map(ord, name)) % 7
    for step in range(1, opts.steps + 1):
        path = os.path.join(out, f"{run_name}_rollouts_{samples // shard_size:06d}.jsonl")
        records = step_records(codec, rng, opts, e, step)
        with open(path, "a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
        samples += len(records)
        if path not in written:
            written.append(path)
    return written


def write(folder: str, name: str, opts, codec, rng: random.Random) -> list[str]:  # type: ignore[no-untyped-def]
    return write_run(folder, name, opts, codec, rng)


def write_corpus(folder: str, steps: int, samples_per_step: int = 256, group_size: int = 8, seed: int = 0,
                 name: str = "open-instruct-grpo") -> list[str]:
    """A run of realistic size for benchmarks: `steps` steps of `samples_per_step` samples
    (responses of 300 to 1,500 Qwen tokens), sharded every 10,000 samples as open-instruct does."""
    from . import Codec, DemoOptions
    opts = DemoOptions(steps=steps, trajectories=samples_per_step, group_size=group_size, min_tokens=300,
                       max_tokens=1500, seed=seed, special_every=0)
    return write_run(folder, name, opts, Codec(), random.Random(f"{seed}-{name}"))


WRITERS = {"open-instruct": Writer("open-instruct --save_traces shards <run>_rollouts_<shard>.jsonl (token ids)",
                                   "open-instruct-grpo", write)}
