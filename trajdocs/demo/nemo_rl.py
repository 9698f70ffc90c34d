"""NeMo-RL's step files, written as its own code writes them (see `trajdocs/formats/nemo_rl.py`
for the facts and where they are in NeMo-RL's code): `<log_dir>/exp_001/train_data_step<N>.jsonl`
for every training step from 1 and `val_data_step<N>.jsonl` before training (N = 0) and every
`val_period` steps; one `json.dumps(..., default=str)` line per sample (ASCII-escaped), every
value a one-element list, plus `idx`; math-environment feedback ("Environment: correct")
tokenised after the response; `token_ids` right-padded with the pad token, the per-token lists
with 0, to the batch's longest sequence."""

from __future__ import annotations

import json
import math
import os
import random

from . import Writer

VAL_PERIOD = 4


def _group_advantages(rewards: list[float], group_size: int) -> list[float]:
    """GRPO's advantage: reward minus the group's mean, over the group's standard deviation."""
    out = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start:start + group_size]
        mean = sum(group) / len(group)
        std = math.sqrt(sum((r - mean) ** 2 for r in group) / (len(group) - 1)) if len(group) > 1 else 0.0
        out.extend((r - mean) / (std + 1e-6) if std > 0 else r - mean for r in group)
    return out


def _rollouts(codec, rng: random.Random, opts, e: int, s: int, validation: bool):  # type: ignore[no-untyped-def]
    from . import PROBLEMS, rollout
    progress = s / max(1, opts.steps)
    p_correct = min(0.9, 0.2 + progress * 0.6)
    out = []
    group_size = 1 if validation else max(1, opts.group_size)
    count = max(1, opts.trajectories // 2) if validation else opts.trajectories
    for g in range(math.ceil(count / group_size)):
        problem = (s * 5 + g * 3 + e + (7 if validation else 0)) % len(PROBLEMS)
        a, b = 12 + (problem * 5 + g + s) % 40, 3 + (problem + s) % 7
        question = PROBLEMS[problem][0].format(a=a, b=b)
        for _ in range(min(group_size, count - len(out))):
            out.append(rollout(rng, codec, opts, question, PROBLEMS[problem][1](a, b), p_correct, 1.0))
    return out


def feedback(r) -> str:  # type: ignore[no-untyped-def]
    """The math environment's observation (math_environment.py:527-535)."""
    return "Environment: correct" if r.accuracy > 0 else "Environment: incorrect"


def train_lines(codec, rng: random.Random, rollouts, group_size: int,  # type: ignore[no-untyped-def]
                divisible_by: int = 1) -> str:
    rewards = [1.0 if r.accuracy > 0 else 0.0 for r in rollouts]
    advantages = _group_advantages(rewards, group_size)
    samples = []
    for r in rollouts:
        obs = codec.encode(feedback(r))
        samples.append((r, obs, r.prompt_ids + r.response_ids + obs))
    width = max(len(ids) for _, _, ids in samples)
    width = -(-width // divisible_by) * divisible_by
    lines = []
    for i, ((r, obs, ids), reward, adv) in enumerate(zip(samples, rewards, advantages)):
        from . import f32
        n_prompt, n_resp, pad = len(r.prompt_ids), len(r.response_ids), width - len(ids)
        mask = [0] * n_prompt + [1] * n_resp + [0] * len(obs) + [0] * pad
        gen = [0.0] * n_prompt + r.log_probs + [0.0] * len(obs) + [0.0] * pad
        # the trainer's log-probs: every position (0 placeholder first), near the engine's on the response
        prev = [0.0] + [f32(-rng.uniform(0.0, 6.0)) for _ in range(n_prompt - 1)]
        prev += [f32(lp + rng.gauss(0.0, 0.02) * (1 + 20 * (rng.random() < 0.02))) if lp < 0 else lp
                 for lp in r.log_probs]
        prev += [f32(-rng.uniform(0.0, 8.0)) for _ in range(len(obs) + pad)]
        sample = {
            "content": [[codec.decode(r.prompt_ids, skip_special=False), codec.decode(r.response_ids), feedback(r)]],
            "rewards": [reward],
            "input_lengths": [len(ids)],
            "token_ids": [ids + [codec.pad] * pad],
            "token_loss_mask": [mask],
            "sample_loss_mask": [1.0],
            "advantages": [[f32(adv)] * width],
            "generation_logprobs": [gen],
            "prev_logprobs": [prev],
        }
        lines.append(json.dumps({**sample, "idx": i}, default=str) + "\n")
    return "".join(lines)


def val_lines(codec, rollouts) -> str:  # type: ignore[no-untyped-def]
    lines = []
    for i, r in enumerate(rollouts):
        messages = [{"role": "user", "content": codec.decode(r.prompt_ids, skip_special=False)},
                    {"role": "assistant", "content": codec.decode(r.response_ids)},
                    {"role": "environment", "content": feedback(r)}]
        sample = {"content": [messages], "rewards": [1.0 if r.accuracy > 0 else 0.0]}
        lines.append(json.dumps({**sample, "idx": i}, default=str) + "\n")
    return "".join(lines)


def write(folder: str, name: str, opts, codec, rng: random.Random) -> list[str]:  # type: ignore[no-untyped-def]
    """One NeMo-RL run: `<name>/logs/exp_001/` (the example configs' log_dir and its experiment
    folder) with train and validation dumps."""
    out = os.path.join(folder, name, "logs", "exp_001")
    os.makedirs(out, exist_ok=True)
    written = []
    e = sum(map(ord, name)) % 7
    for s in range(0, opts.steps + 1):
        if s:
            path = os.path.join(out, f"train_data_step{s}.jsonl")
            with open(path, "w") as f:
                f.write(train_lines(codec, rng, _rollouts(codec, rng, opts, e, s, False), max(1, opts.group_size)))
            written.append(path)
        if s % VAL_PERIOD == 0 or s == opts.steps:
            path = os.path.join(out, f"val_data_step{s}.jsonl")
            with open(path, "w") as f:
                f.write(val_lines(codec, _rollouts(codec, rng, opts, e, s, True)))
            written.append(path)
    return written


WRITERS = {"nemo-rl": Writer("NeMo-RL train_data_step<N>.jsonl / val_data_step<N>.jsonl dumps (token ids)",
                             "nemo-rl-grpo-math", write)}
