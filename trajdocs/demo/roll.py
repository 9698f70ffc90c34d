"""ROLL's dumps, written as its writers write them (see `trajdocs/formats/roll.py` for the facts
and where they are in ROLL's code):

- "roll": the RLVR logging board (`save_logging_board_dir`), one `data_<time>_<ms>.jsonl` per
  domain batch of a step (steps from 0), token lists of the right-padded sequence (padding
  kept), left-padded prompt text, `response_tokens` as vocabulary strings; and the rollout dump
  (`rollout_dump_dir`), `rollout_dump_data.step_<N>.jsonl`, one line of columns;
- "roll-agentic": the agentic rollout dump, columns `trajectory_data`, `messages`, `tools`
  (JSON strings), `exp_name`, `global_step`.
"""

from __future__ import annotations

import datetime
import json
import os

from . import Writer  # (defined before the package imports its writer modules)

DOMAINS = ("math_rule", "llm_judge")


def _rows(pad: float, rng, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Values the model gives padding positions: kept in the rows, belonging to no response token."""
    from . import f32
    return [f32(rng.uniform(-pad, 0.0)) for _ in range(n)]


def board_lines(codec, rng, opts, step: int, domain: int) -> list[str]:  # type: ignore[no-untyped-def]
    from . import PROBLEMS, f32, rollout, sample_std
    group = max(1, opts.group_size)
    rollouts = []
    for g in range(max(1, opts.trajectories // (group * len(DOMAINS)))):
        problem = (step * 5 + g * 3 + domain * 2) % len(PROBLEMS)
        a, b = 12 + (problem * 5 + g + step) % 40, 3 + (problem + step) % 7
        for _ in range(group):
            rollouts.append(rollout(rng, codec, opts, PROBLEMS[problem][0].format(a=a, b=b), PROBLEMS[problem][1](a, b),
                                    min(0.9, 0.2 + 0.5 * step / max(1, opts.steps)), 1.0))
    width_p = max(len(r.prompt_ids) for r in rollouts)  # prompts left-padded to the longest
    seq_len = width_p + max(len(r.response_ids) for r in rollouts) + 6  # responses padded to sequence_length
    width_r = seq_len - width_p
    rewards = []  # response_level_rewards after GRPO normalisation within each group
    for start in range(0, len(rollouts), group):
        scores = [r.accuracy for r in rollouts[start:start + group]]
        mean = sum(scores) / len(scores)
        std = sample_std(scores) if len(scores) > 1 else 0.0
        rewards += [f32((x - mean) / (std + 1e-6)) for x in scores]
    lines = []
    for r, reward in zip(rollouts, rewards):
        p, n = len(r.prompt_ids), len(r.response_ids)
        prompt_ids = [codec.pad] * (width_p - p) + r.prompt_ids
        response_ids = r.response_ids + [codec.pad] * (width_r - n)
        tail = seq_len - p - n  # padding positions after the response in the shifted sequence
        rest = seq_len - 1 - (p - 1)  # a row from the first response token to the end
        logprobs = r.log_probs + _rows(3.0, rng, tail)
        log_probs2 = [f32(v + rng.uniform(-1e-3, 1e-3)) if v else v for v in r.log_probs] + _rows(3.0, rng, tail)
        ref = [f32(v - rng.uniform(0.0, 0.05)) for v in r.log_probs] + _rows(3.0, rng, tail)
        entropy = r.entropies + [f32(rng.uniform(0.0, 4.0)) for _ in range(tail)]
        token_rewards = [0.0] * (seq_len - 1)
        token_rewards[p - 1 + n - 1] = reward
        record = {"log_probs2": log_probs2, "logprobs": logprobs, "new_response_mask": [1] * n + [0] * tail,
                  "prompt": codec.decode(prompt_ids, skip_special=False),
                  "response": codec.decode(response_ids, skip_special=False),
                  "old_log_probs2_entropy": entropy, "ref_logprobs": ref, "values": token_rewards,
                  "token_rewards": token_rewards, "reward": reward, "step": step,
                  "response_tokens": [codec.tk.id_to_token(t) for t in response_ids]}
        assert all(len(record[k]) == rest for k in ("logprobs", "log_probs2", "ref_logprobs", "new_response_mask"))
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    return lines


def dump_line(codec, rng, opts, step: int) -> str:  # type: ignore[no-untyped-def]
    from . import PROBLEMS, SYSTEM, f32, rollout
    columns: dict = {k: [] for k in ("id", "source", "prompt", "messages", "ground_truth", "tag", "domain")}
    responses, scores = [], []
    group = max(1, opts.group_size)
    for g in range(max(1, opts.trajectories // group)):
        problem = (step * 5 + g * 3) % len(PROBLEMS)
        a, b = 12 + (problem * 5 + g + step) % 40, 3 + (problem + step) % 7
        question, answer = PROBLEMS[problem][0].format(a=a, b=b), PROBLEMS[problem][1](a, b)
        for _ in range(group):
            r = rollout(rng, codec, opts, question, answer, min(0.9, 0.2 + 0.5 * step / max(1, opts.steps)), 1.0)
            columns["id"].append(f"gsm8k-{problem}-{a}-{b}")
            columns["source"].append("gsm8k")
            columns["prompt"].append(r.prompt)
            columns["messages"].append(json.dumps([{"role": "system", "content": SYSTEM},
                                                   {"role": "user", "content": question}], ensure_ascii=False))
            columns["ground_truth"].append(str(answer))
            columns["tag"].append("math_rule")
            columns["domain"].append("math_rule")
            responses.append(codec.decode(r.response_ids))  # skip_special_tokens=True
            scores.append(f32(r.accuracy))
    count = len(responses)
    columns.update(responses=responses, scores=scores,
                   sampling_params=[json.dumps({"global_step": step, "temperature": 1.0, "top_p": 0.99})] * count,
                   global_step=[step] * count)
    return json.dumps(columns, ensure_ascii=False) + "\n"


def write(folder: str, name: str, opts, codec, rng) -> list[str]:  # type: ignore[no-untyped-def]
    board = os.path.join(folder, name, "logging_board")
    dump = os.path.join(folder, name, "rollout_dump")
    os.makedirs(board, exist_ok=True)
    os.makedirs(dump, exist_ok=True)
    written: list[str] = []
    start = datetime.datetime(2026, 11, 3, 9, 0, 0)
    for step in range(opts.steps):
        for d in range(len(DOMAINS)):
            when = start + datetime.timedelta(minutes=3 * step, seconds=d, milliseconds=rng.randrange(1000))
            path = os.path.join(board, f"data_{when.strftime('%Y%m%d_%H%M%S')}_{when.microsecond // 1000:03d}.jsonl")
            with open(path, "a", encoding="utf-8") as f:
                f.writelines(board_lines(codec, rng, opts, step, d))
            written.append(path)
        path = os.path.join(dump, f"rollout_dump_data.step_{step}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            f.write(dump_line(codec, rng, opts, step))
        written.append(path)
    return written


def write_agentic(folder: str, name: str, opts, codec, rng) -> list[str]:  # type: ignore[no-untyped-def]
    dump = os.path.join(folder, name, "rollout_dump")
    os.makedirs(dump, exist_ok=True)
    written = []
    for step in range(opts.steps):
        columns: dict = {"trajectory_data": [], "messages": [], "tools": [], "exp_name": []}
        for episode in range(max(1, opts.trajectories)):
            secret = rng.randint(1, 20)
            messages = [{"role": "system", "content": "Guess the number between 1 and 20. Answer <answer>N</answer>."},
                        {"role": "user", "content": "Turn 1: make a guess."}]
            rewards, guess, low, high = [], 0, 1, 20
            for turn in range(4):
                guess = (low + high) // 2
                messages.append({"role": "assistant", "content": f"<think>Between {low} and {high}.</think>"
                                                                 f"<answer>{guess}</answer>"})
                if guess == secret:
                    messages.append({"role": "user", "content": "Correct! 🎉"})
                    rewards.append(1.0)
                    break
                low, high = (guess + 1, high) if guess < secret else (low, guess - 1)
                messages.append({"role": "user", "content": f"Too {'low' if guess < secret else 'high'}. "
                                                            f"Turn {turn + 2}: guess again."})
                rewards.append(0.0)
            stamp = f"20261103_0900{step:02d}_{episode:06d}"
            data = {"trajectory_id": f"GuessNumber_{step}_{step}_{episode // 4}_{episode}_{episode}_7_{stamp}",
                    "timestamp": stamp, "current_step": step,
                    "env_info": {"env_id": episode, "group_id": episode // 4, "tag": "GuessNumber", "seed": 7,
                                 "episode_id": episode, "max_steps": 4, "mode": "train", "sequence_length": 4096},
                    "length_info": {"trajectory_length": len(rewards), "num_actions": len(rewards),
                                    "terminated": rewards[-1] == 1.0, "truncated": rewards[-1] != 1.0},
                    "reward_info": {"episode_reward": sum(rewards), "step_rewards": rewards,
                                    "first_round_reward": rewards[0], "final_reward": rewards[-1]},
                    "failure_info": {"failure_mode": "", "stop_reason": "FINISH" if rewards[-1] else "MAX_STEPS",
                                     "error_messages": [], "test_output": "", "has_failure": False,
                                     "failure_step": len(rewards)}}
            columns["trajectory_data"].append(json.dumps(data))
            columns["messages"].append(json.dumps(messages))
            columns["tools"].append(json.dumps([]))
            columns["exp_name"].append(name)
        columns["global_step"] = [step] * len(columns["exp_name"])
        path = os.path.join(dump, f"rollout_dump_data.step_{step}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(columns, ensure_ascii=False) + "\n")
        written.append(path)
    return written


WRITERS = {"roll": Writer("ROLL logging board (save_logging_board_dir) and rollout dump (rollout_dump_dir)",
                          "roll-rlvr-math", write),
           "roll-agentic": Writer("ROLL agentic rollout dump (rollout_dump_dir): multi-turn messages",
                                  "roll-agentic-guess", write_agentic)}
