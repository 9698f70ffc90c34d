"""Synthetic prime-rl runs, written the way prime-rl's own writers write them (see
`trajdocs/formats/prime_rl.py` and `prime_rl_tokens.py` for the facts and their sources).

- Episode traces (`monitors.file`, on by default): `<run_dir>/rollouts/step_<N>/<train|eval>/
  <all|effective>/traces.jsonl`, one `orjson.dumps(episode.to_record())` line per episode: the
  `all` file in arrival order, without advantages (written before credit is assigned), errored
  episodes included; the `effective` file in batch order with the GRPO advantages (reward minus
  the group mean) on the sampled tokens, errored episodes left out. Every field that is None is
  left out (pydantic `exclude_none`). Steps count from 1; eval episodes every 4 steps.
- Token exports (`trainer.enable_token_export = true`, kind `prime-rl-tokens`): the effective
  traces of each step as trainer samples, split over 2 ranks and micro-batches:
  `<run_dir>/token_exports/step_<N>/rank_<r>.jsonl`, `json.dumps(separators=(",", ":"),
  allow_nan=False)` with non-finite floats as null, and an empty `STABLE` when the step is done.

Conversations: system and user messages, then either one answer or a calculator tool call, the
tool's result and the answer (Qwen's chat template, tokenised with Qwen's tokenizer); each node
holds the tokens it adds (its leading template scaffold, then its own tokens; an assistant node:
the generation prompt, then the sampled completion, mask True only there).
"""

from __future__ import annotations

import json
import math
import os
import random
import uuid
import zlib

from . import Writer

VOCAB = 151936  # Qwen2.5's model vocabulary size: the trainer pads position 0 with log(1/V), entropy log(V)
ENV = "gsm8k-calculator"
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def _ids(codec, text: str) -> list[int]:  # type: ignore[no-untyped-def]
    return codec.encode(text)


def _node(parent, message: dict, ids: list[int], sampled_from: int | None, t: float,  # type: ignore[no-untyped-def]
          logprobs: list[float] = (), content_from: int = 0) -> dict:  # type: ignore[assignment]
    """A node as `MessageNode.model_dump(mode="json", exclude_none=True)` writes it."""
    mask = [sampled_from is not None and k >= sampled_from for k in range(len(ids))]
    node: dict = {}
    if parent is not None:
        node["parent"] = parent
    node.update(message=message, sampled=sampled_from is not None, timestamp=t, token_ids=ids, mask=mask,
                is_content=[k >= content_from for k in range(len(ids))], logprobs=list(logprobs))
    return node


def _sample(rng: random.Random, codec, ids: list[int], temperature: float) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    from . import draw_entropies, f32
    entropies = draw_entropies(rng, codec, ids, temperature)
    logprobs = [f32(-min(20.0, e * rng.uniform(0.2, 0.8) + rng.uniform(0.0, 0.02))) for e in entropies]
    return entropies, logprobs


def conversation(rng: random.Random, codec, opts, question: str, answer: int, p_correct: float,  # type: ignore[no-untyped-def]
                 temperature: float, t0: float, shape: str = "") -> dict:
    """One trace's nodes and what the trainer knows of them: {"nodes", "entropies" (per sampled
    token), "accuracy", "format", "turns", "tool_calls"}."""
    from . import SYSTEM, INSTRUCTION, response_text
    nodes: list[dict] = []
    entropies: list[float] = []
    system = f"{SYSTEM} Use the calculator tool when it helps."
    nodes.append(_node(None, {"role": "system", "content": system},
                       _ids(codec, f"<|im_start|>system\n{system}<|im_end|>"), None, t0, content_from=3))
    user = question + INSTRUCTION
    nodes.append(_node(0, {"role": "user", "content": user},
                       _ids(codec, f"\n<|im_start|>user\n{user}<|im_end|>"), None, t0, content_from=4))
    scaffold = _ids(codec, "\n<|im_start|>assistant\n")
    correct = rng.random() < p_correct
    shown = answer if correct else answer + rng.choice([-10, -2, -1, 1, 3, 12])
    calls = 0
    if shape != "eos" and rng.random() < 0.5:  # a tool call first
        x = rng.randint(1, 9)
        expression, result = f"{shown - x} + {x}", str(shown)
        arguments = json.dumps({"expression": expression})
        said = "Let me check the arithmetic with the calculator."
        completion = _ids(codec, f"{said}\n<tool_call>\n{{\"name\": \"calculator\", \"arguments\": {arguments}}}\n"
                                 "</tool_call>") + [codec.eos]
        e, lp = _sample(rng, codec, completion, temperature)
        entropies += e
        call_id = f"call_{uuid.UUID(int=rng.getrandbits(128)).hex[:8]}"
        message = {"role": "assistant", "content": said,
                   "tool_calls": [{"id": call_id, "name": "calculator", "arguments": arguments}]}
        nodes.append(_node(len(nodes) - 1, message, scaffold + completion, len(scaffold), t0 + 2.0, lp))
        nodes.append(_node(len(nodes) - 1, {"role": "tool", "tool_call_id": call_id, "content": result},
                           _ids(codec, f"\n<|im_start|>user\n<tool_response>\n{result}\n</tool_response><|im_end|>"),
                           None, t0 + 2.1, content_from=5))
        calls = 1
    well_formed = rng.random() < 0.9
    if shape == "eos":
        completion = [codec.eos]
        correct = well_formed = False
    else:
        target = rng.randint(opts.min_tokens, opts.max_tokens)
        completion = codec.encode(response_text(rng, target, codec, shown, well_formed)) + [codec.eos]
    e, lp = _sample(rng, codec, completion, temperature)
    entropies += e
    nodes.append(_node(len(nodes) - 1, {"role": "assistant", "content": codec.decode(completion)},
                       scaffold + completion, len(scaffold), t0 + 5.0 + len(completion) / 200, lp))
    return {"nodes": nodes, "entropies": entropies, "accuracy": float(correct and well_formed),
            "format": float(well_formed), "turns": 1 + calls, "tool_calls": calls}


def trace_record(rng: random.Random, conv: dict, task: dict, step: int, t0: float, error: bool) -> dict:
    """`Trace.model_dump(mode="json", exclude_none=True)` less the nodes' tensor fields."""
    sampled = [n for n in conv["nodes"] if n["sampled"]]
    calls = []
    for k, node in enumerate(conv["nodes"]):
        if node["sampled"]:
            prompt = sum(len(n["token_ids"]) for n in conv["nodes"][:k]) + (len(node["token_ids"]) - len(node["logprobs"]))
            calls.append({"node": k, "model": MODEL, "sampling": {"temperature": 1.0, "max_tokens": 2048},
                          "endpoint": "/chat/completions", "finish_reason": "tool_calls" if "tool_calls" in node["message"] else "stop",
                          "usage": {"input_tokens": prompt, "output_tokens": len(node["logprobs"]), "prompt_tokens": prompt,
                                    "completion_tokens": len(node["logprobs"])},
                          "time": {"start": node["timestamp"] - 1.5, "end": node["timestamp"]}})
    trace: dict = {
        "version": 1, "id": uuid.UUID(int=rng.getrandbits(128)).hex, "verifiers": {"version": "0.2.0"},
        "task": task,
        "agent": {"config": {"model": MODEL, "max_turns": 4, "timeout": {}, "retries": {"max_attempts": 1}},
                  "name": "agent", "trainable": True},
        "tools": [{"name": "calculator", "description": "Evaluate an arithmetic expression.",
                   "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}],
        "nodes": conv["nodes"], "calls": calls, "request_rewrites": [], "response_rewrites": [],
    }
    if error:
        trace.update(rewards={"correct_answer": None, "format": None},
                     metrics={"num_turns": float(len(sampled)), "num_tool_calls": None}, info={}, extra_usage=[],
                     is_completed=False, ok=False, stop_condition="error",
                     errors=[{"type": "ToolError", "message": "calculator sandbox timed out after 30 s"}])
    else:
        trace.update(rewards={"correct_answer": {"score": conv["accuracy"], "weight": 1.0},
                              "format": {"score": conv["format"], "weight": 0.2}},
                     metrics={"num_turns": float(conv["turns"]), "num_tool_calls": float(conv["tool_calls"])},
                     info={}, extra_usage=[], is_completed=True, ok=True, stop_condition="completed", errors=[])
    trace["timing"] = {"start": t0, "boot": {"start": t0, "end": t0 + 0.2}, "setup": {"start": t0 + 0.2, "end": t0 + 0.3},
                       "agent": {"start": t0 + 0.3, "end": t0 + 6.0, "model": {"duration": 4.8}, "harness": {"duration": 0.9}},
                       "finalize": {"start": t0 + 6.0, "end": t0 + 6.0}, "scoring": {"start": t0 + 6.0, "end": t0 + 6.1}}
    return trace


def reward_of(trace: dict) -> float | None:
    """verifiers' Trace.reward: sum of score × weight over the rewards that ran."""
    ran = [r for r in trace["rewards"].values() if r is not None]
    return sum(r["score"] * r["weight"] for r in ran) if ran else None


def step_episodes(rng: random.Random, codec, opts, e: int, s: int, step: int, kind: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """One step's episodes (train or eval), in batch order (groups together)."""
    from . import PROBLEMS
    progress = s / max(1, opts.steps)
    p_correct = min(0.9, 0.25 + 0.55 * progress)
    temperature = 1.2 - 0.4 * progress
    episodes = []
    group_size = max(1, opts.group_size)
    t0 = 1.7e9 + step * 600.0
    for g in range(math.ceil(opts.trajectories / group_size)):
        problem = (s * 5 + g * 3 + e + (1 if kind == "eval" else 0)) % len(PROBLEMS)
        a, b = 12 + (problem * 5 + g + s) % 40, 3 + (problem + s) % 7
        question = PROBLEMS[problem][0].format(a=a, b=b)
        answer = PROBLEMS[problem][1](a, b)
        data = {"question": question, "answer": str(answer)}
        task = {"type": "Task", "data": data, "key": f"gsm8k-{problem}-{a}-{b}",
                "hash": f"{zlib.crc32(question.encode()):08x}"}
        group_id = uuid.UUID(int=rng.getrandbits(128)).hex
        for k in range(min(group_size, opts.trajectories - len(episodes))):
            shape = "eos" if opts.special_every and s % opts.special_every == 0 and g == 0 and k == 1 else ""
            error = kind == "train" and g == 1 and k == 0 and s % 3 == 1
            start = t0 + rng.uniform(0, 60)
            conv = conversation(rng, codec, opts, question, answer, p_correct, temperature, start, shape)
            trace = trace_record(rng, conv, task, step, start, error)
            episode = {"id": uuid.UUID(int=rng.getrandbits(128)).hex, "env": {"id": "gsm8k-calculator", "name": ENV},
                       "task": task, "group": {"id": group_id},
                       "run": {"type": "train", "id": "run-0001", "name": "demo",
                               "work": {"type": kind, "step": step, "policy": {"start": max(0, step - 1), "end": max(0, step - 1)}}},
                       "ok": not error, "errors": list(trace["errors"]), "traces": [trace]}
            episode["_entropies"] = conv["entropies"]  # kept for the token export, never written
            episodes.append(episode)
    return episodes


def assign_advantages(episodes: list[dict]) -> None:
    """GRPO (prime-rl `algo/grpo.py`): reward minus the group mean over the group's trainable
    traces, as float32, on every sampled token."""
    from . import f32
    groups: dict[str, list[dict]] = {}
    for ep in episodes:
        if ep["ok"]:
            groups.setdefault(ep["group"]["id"], []).append(ep["traces"][0])
    for traces in groups.values():
        rewards = [f32(reward_of(t) or 0.0) for t in traces]
        mean = f32(sum(rewards) / len(rewards))
        for trace, reward in zip(traces, rewards):
            advantage = f32(reward - mean)
            for node in trace["nodes"]:
                if node["sampled"]:
                    node["advantages"] = [advantage] * len(node["logprobs"])


def record_line(episode: dict) -> bytes:
    import orjson
    clean = {k: v for k, v in episode.items() if not k.startswith("_")}
    return orjson.dumps(clean, option=orjson.OPT_APPEND_NEWLINE)


def export_sample(rng: random.Random, episode: dict) -> dict:
    """The trainer's view of one effective trace: aligned per-token columns as
    `token_export._export_columns` makes them (log-probs and entropies shifted right by one)."""
    from . import f32
    trace = episode["traces"][0]
    ids, mask, inference, advantages, entropy, trainer = [], [], [], [], [], []
    drawn = iter(episode["_entropies"])
    for node in trace["nodes"]:
        lps = iter(node["logprobs"])
        advs = iter(node.get("advantages") or [])
        for token, sampled in zip(node["token_ids"], node["mask"]):
            ids.append(token)
            mask.append(bool(sampled))
            if sampled:
                lp = next(lps)
                inference.append(lp)
                advantages.append(next(advs, 0.0))
                entropy.append(next(drawn))
                trainer.append(f32(min(0.0, lp + rng.gauss(0.0, 0.02 + 0.05 * abs(lp)))))
            else:
                inference.append(0.0)
                advantages.append(0.0)
                entropy.append(f32(rng.lognormvariate(0.0, 0.8)))
                trainer.append(f32(-rng.lognormvariate(0.5, 1.0)))
    entropy[0], trainer[0] = f32(math.log(VOCAB)), f32(math.log(1.0 / VOCAB))  # the shift's pad
    log_ratio = [f32(t - i) for t, i in zip(trainer, inference)]
    ratio = [f32(math.exp(x)) if x < 80 else math.inf for x in log_ratio]
    mismatch = [f32(r - x - 1) if math.isfinite(r) else math.inf for r, x in zip(ratio, log_ratio)]
    delta = [f32(math.exp(t) - math.exp(i)) for t, i in zip(trainer, inference)]
    high = [m and a > 0 and d > 0.2 for m, a, d in zip(mask, advantages, delta)]
    low = [m and a < 0 and d < -0.2 for m, a, d in zip(mask, advantages, delta)]
    masked = [m and ((a > 0 and d > 0.2) or (a <= 0 and d < -0.2)) for m, a, d in zip(mask, advantages, delta)]
    return {"token_ids": ids, "position_ids": list(range(len(ids))), "loss_mask": mask, "advantages": advantages,
            "inference_logprobs": inference, "trainer_logprobs": trainer, "entropy": entropy, "mismatch_kl": mismatch,
            "log_importance_ratio": log_ratio, "importance_ratio": ratio, "prob_delta": delta, "is_masked": masked,
            "is_masked_high": high, "is_masked_low": low}


def json_float(value):  # type: ignore[no-untyped-def]
    """`token_export._json_float`: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_exports(rng: random.Random, run: str, step: int, episodes: list[dict], ranks: int = 2,
                  micro: int = 2, stable: bool = True) -> list[str]:
    """The trainer ranks' files of one step: samples (longest first, as the packer sorts them) dealt
    to the ranks, `micro` per micro-batch; one line per sample, then STABLE."""
    samples = sorted((export_sample(rng, ep) for ep in episodes), key=lambda c: -len(c["token_ids"]))
    folder = os.path.join(run, "token_exports", f"step_{step}")
    os.makedirs(folder, exist_ok=True)
    written = []
    for rank in range(ranks):
        mine = samples[rank::ranks]
        if not mine:
            continue
        path = os.path.join(folder, f"rank_{rank}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for n, columns in enumerate(mine):
                seq_len = len(columns["token_ids"])
                record = {"schema_version": 1, "step": step, "rank": rank, "micro_step": n // micro,
                          "micro_sequence_idx": n % micro, "export_sequence_idx": n, "env_name": ENV,
                          **{k: [json_float(v) for v in values] for k, values in columns.items()},
                          "rl_weights": [None] * seq_len, "ce_weights": [None] * seq_len,
                          "ref_kl_weights": [None] * seq_len}
                f.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        written.append(path)
    if stable:
        open(os.path.join(folder, "STABLE"), "w").close()
    return written


def write_run(folder: str, name: str, opts, codec, rng: random.Random, tokens: bool = False) -> list[str]:  # type: ignore[no-untyped-def]
    run = os.path.join(folder, name)
    written: list[str] = []
    for s in range(1, opts.steps + 1):
        step = s
        for kind in ("train", "eval") if s % 4 == 0 else ("train",):
            episodes = step_episodes(rng, codec, opts, zlib.crc32(name.encode()) % 7, s, step, kind)
            arrival = episodes[:]
            rng.shuffle(arrival)  # `all`: as each episode completes
            base = os.path.join(run, "rollouts", f"step_{step}", kind)
            os.makedirs(os.path.join(base, "all"), exist_ok=True)
            path = os.path.join(base, "all", "traces.jsonl")
            with open(path, "ab") as f:
                for ep in arrival:
                    f.write(record_line(ep))
            written.append(path)
            effective = [ep for ep in episodes if ep["ok"]]
            if kind == "train":
                assign_advantages(effective)
            os.makedirs(os.path.join(base, "effective"), exist_ok=True)
            path = os.path.join(base, "effective", "traces.jsonl")
            with open(path, "ab") as f:
                for ep in effective:
                    f.write(record_line(ep))
            written.append(path)
            if tokens and kind == "train":
                written += write_exports(rng, run, step, effective)
    return written


def write_traces(folder, name, opts, codec, rng):  # type: ignore[no-untyped-def]
    return write_run(folder, name, opts, codec, rng)


def write_traces_and_tokens(folder, name, opts, codec, rng):  # type: ignore[no-untyped-def]
    return write_run(folder, name, opts, codec, rng, tokens=True)


WRITERS = {
    "prime-rl": Writer("prime-rl episode traces (rollouts/step_N/{train,eval}/{all,effective}/traces.jsonl), "
                       "multi-turn with a tool", "prime-rl-gsm8k-tools", write_traces),
    "prime-rl-tokens": Writer("prime-rl traces plus trainer token exports (token_exports/step_N/rank_R.jsonl, "
                              "entropy and mismatch per token)", "prime-rl-gsm8k-token-export", write_traces_and_tokens),
}
