"""prime-rl episode traces: `<run_dir>/rollouts/step_<N>/<train|eval>/<all|effective>/traces.jsonl`.

Facts from the writers (prime-rl 559b4477, verifiers a60a606e):
- prime-rl `monitors/file.py:43-58`: `FileMonitor.log_episodes` appends one
  `orjson.dumps(episode.to_record(), default=str, OPT_APPEND_NEWLINE | OPT_SERIALIZE_NUMPY)` line
  per episode (UTF-8, not ASCII-escaped); on by default (`configs/monitors.py:40-42`, off with
  `--no-monitors.file`). `orchestrator.py:592` writes every completed episode to `all` the moment
  it arrives (train episodes under the step whose batch is collecting, eval episodes under the
  step that triggered the eval): before any credit is assigned, so `all` has no advantages.
  `orchestrator.py:684` (train) and `:919` (eval) write the `effective` subset when the batch
  ships: train = admitted, sampled, not cancelled, no error, trainable agent (`metrics.py:484-497`),
  with the advantages the algorithm stamped; eval = traces without an error (`metrics.py:524-529`).
- verifiers `episode.py:86-155`: `Episode.to_record()` = `model_dump(mode="json", exclude_none=True)`
  without the nodes' tensor fields (`trace.py:41-50`): so a `None` field (e.g. `advantages`,
  `group`, `content`) is absent, not null, and a NaN float becomes null. Keys: `id`, `env{id,name}`,
  `task{type,data,key,hash}`, `group{id}` (the rollout group, `dispatcher.py:635`), `run{...}`, `ok`,
  `errors[]`, `traces[]`.
- A trace (`trace.py:363-407`): `agent{name,trainable,...}`, `tools`, `nodes[]`, `calls[]`,
  `rewards{name: {score, weight} | null}`, `metrics{name: float | null}`, `info`, `is_completed`,
  `ok`, `stop_condition`, `errors`, `timing`. Its reward is `Trace.reward` =
  sum(score * weight) over the rewards that are not null (`trace.py:135-141, 412-414`); prime-rl's
  algorithms use exactly that (`algo/grpo.py:27`). One trajectory here per trace.
- A node (`graph.py:64-113`): `parent`, `message{role, content (str or parts), ...}`, `sampled`,
  `token_ids` (the tokens the message adds: leading template scaffold + its own tokens; an
  assistant node: the generation prompt, then the sampled completion), `mask` (True on sampled
  tokens), `is_content`, `logprobs` and `advantages` over the sampled tokens only (compact layout).
  The concatenation of a path's `token_ids` is exactly what the model saw.

Shown: one trajectory per trace, its nodes as turns in stored order with their roles; sampled
nodes as tokens (from their first sampled token on; the scaffold before it is counted in the
metadata) with the channels surprisal (-logprob), advantage and ref_logprob where present; other
nodes as their message text. Without a tokenizer a sampled turn shows its token ids and its message text.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..model import Tokens, Trajectory, Turn
from ..tokenizer import TokenizerUnavailable, decode_pieces
from .common import Meta, Problems, ReadContext, accuracy, apply_rule, as_text, correctness, kind
from .jsonlines import objects

NAME = "prime-rl"
PATH = re.compile(r"rollouts/step_(?P<step>\d+)/(?P<view>train|eval)/(?P<subset>all|effective)/traces\.jsonl")
SUFFIX = ".jsonl"
NAMES_TEXT = "prime-rl traces rollouts/step_<N>/<train|eval>/<all|effective>/traces.jsonl"
TOKEN_IDS = True  # token ids: text comes from the `tokenizer` option
TOKEN_CHANNELS = ("surprisal", "advantage", "ref_logprob")
FIELDS = ("group.id (group)", "rewards (reward = sum of score × weight)", "metrics", "nodes (turns with roles)",
          "token_ids / mask / logprobs / advantages (sampled tokens)", "errors, stop_condition, info, timing")


def series(match: re.Match) -> str:
    return f"{NAME}:{match.group('subset')}"


def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    """Every trace of every episode line; a bad line is a problem, never the file."""
    trajectories: list[Trajectory] = []
    records: list[dict] = []
    state = {"tokenizer": ctx.tokenizer, "warned": False}
    for lineno, episode, _, _ in objects(data, problems, "prime-rl", ctx.first_line):
        for traj in episode_trajectories(episode, lineno, problems, state):
            traj.index = len(trajectories)
            trajectories.append(traj)
            records.append(episode)
    if not trajectories and not problems:
        problems.add("no episodes in the file")
    if ctx.rule is not None:
        apply_rule(trajectories, records, ctx.rule, problems)
    return trajectories


def message_text(message: Any) -> str:
    """A message's text as written: its content (text parts joined by newlines, an image part as
    `[image]`), an assistant's reasoning before it and tool calls after it."""
    if not isinstance(message, dict):
        return as_text(message)
    parts = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        parts.append(reasoning)
    content = message.get("content")
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") == "image_url":
                texts.append("[image]")
            else:
                texts.append(as_text(part))
        parts.append("\n".join(texts))
    elif content is not None:
        parts.append(as_text(content))
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            parts.append(f"[tool call {call.get('name')}: {call.get('arguments')}]")
        else:
            parts.append(f"[tool call {as_text(call)}]")
    return "\n".join(parts)


def _shown(value: Any, depth: int = 0) -> Any:
    """A value for the metadata with every list of objects (errors, rewrites, usage) as its JSON
    text, which the metadata would otherwise only count."""
    if isinstance(value, dict) and depth < 6:
        return {k: _shown(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return as_text(value)
    return value


def numbers(values: Any) -> bool:
    """A list of numbers and nulls. Fast path: a list without null whose sum() works holds only
    numbers (booleans count as 0 / 1 there, as in the per-value check of the twin `_numbers`)."""
    if not isinstance(values, list):
        return False
    if None not in values:
        try:
            sum(values)
            return True
        except TypeError:
            return False
    return _numbers(values)


def integers(values: Any) -> bool:
    """A list of integers (token ids). Fast path: sum() of a list is an int only when every value
    is one (booleans count as integers, as in the per-value twin `_integers`)."""
    if not isinstance(values, list):
        return False
    try:
        return isinstance(sum(values), int)
    except TypeError:
        return False


def _integers(values: list) -> bool:
    return all(isinstance(v, int) for v in values)


def _numbers(values: list) -> bool:
    return all(v is None or isinstance(v, (int, float)) for v in values)


def trace_reward(rewards: Any, where: str, problems: Problems) -> float | None:
    """verifiers' `Trace.reward`: sum of score × weight over the rewards that ran (not null);
    None when none ran (the file says scoring did not run)."""
    if not isinstance(rewards, dict):
        if rewards is not None:
            problems.add(f"{where}: rewards is {kind(rewards)}, expected an object")
        return None
    total, ran = 0.0, False
    for name, reward in rewards.items():
        if reward is None:
            continue
        score = reward.get("score") if isinstance(reward, dict) else None
        weight = reward.get("weight", 1.0) if isinstance(reward, dict) else None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (score, weight)):
            problems.add(f"{where}: reward {name!r} has no numeric score and weight, not counted")
            continue
        total += score * weight
        ran = True
    return total if ran else None


def decode(ids: list, state: dict, where: str, problems: Problems) -> tuple[list[str], bool]:
    """Token texts (the tokenizer's pieces) or the ids as numbers (no tokenizer, or it cannot be
    used: said once per file)."""
    if state["tokenizer"]:
        try:
            pieces = decode_pieces(ids, state["tokenizer"])
            if pieces.unknown:
                problems.add(f"{where}: {len(pieces.unknown)} token ids outside the tokenizer's vocabulary")
            return pieces.texts, False
        except TokenizerUnavailable as err:
            if not state["warned"]:
                problems.add(f"{err}: token ids shown as numbers")
                state["warned"] = True
            state["tokenizer"] = ""
    return [str(i) for i in ids], True


def episode_trajectories(episode: dict, lineno: int, problems: Problems, state: dict) -> list[Trajectory]:
    where = f"line {lineno}"
    meta = Meta()
    for key, value in episode.items():
        if key != "traces":
            meta.add(f"episode.{key}" if key in ("id", "ok", "errors") else str(key), _shown(value))
    group = episode.get("group")
    group_id = group.get("id") if isinstance(group, dict) else None
    traces = episode.get("traces")
    if not isinstance(traces, list):
        problems.add(f"{where}: traces is {kind(traces)}, expected a list" if "traces" in episode
                     else f"{where}: no traces field")
        traces = []
    if not traces:  # an episode that failed before any trace: shown with its errors
        traj = Trajectory(index=0, metadata=meta.fields, group=None if group_id is None else str(group_id))
        traj.pure_generated_text = None
        return [traj]
    out = []
    for t, trace in enumerate(traces):
        tw = f"{where} trace {t}" if len(traces) > 1 else where
        if not isinstance(trace, dict):
            problems.add(f"{tw}: is {kind(trace)}, expected a trace object")
            continue
        traj = trace_trajectory(trace, tw, problems, state)
        tmeta = Meta()
        tmeta.fields = dict(meta.fields)
        if len(traces) > 1:
            tmeta.add("trace", t)
        for key, value in trace.items():
            if key == "nodes" or (key == "task" and value == episode.get("task")):
                continue  # the nodes are the turns; the task is the episode's
            tmeta.add(f"trace.{key}" if key in ("task", "id", "ok", "errors") else str(key), _shown(value))
        tmeta.fields.update(traj.metadata)
        traj.metadata = tmeta.fields
        traj.group = None if group_id is None else str(group_id)
        out.append(traj)
    return out


def trace_trajectory(trace: dict, where: str, problems: Problems, state: dict) -> Trajectory:
    traj = Trajectory(index=0)
    traj.reward = trace_reward(trace.get("rewards"), where, problems)
    metrics = trace.get("metrics")
    traj.accuracy = accuracy(None, metrics if isinstance(metrics, dict) else None)
    traj.correct = correctness(traj.accuracy)
    nodes = trace.get("nodes")
    if not isinstance(nodes, list):
        if nodes is not None:
            problems.add(f"{where}: nodes is {kind(nodes)}, expected a list")
        return traj
    good: list[tuple[int, dict, list, list]] = []  # (node number, node, token ids, mask)
    for n, node in enumerate(nodes):
        if not isinstance(node, dict):
            problems.add(f"{where} node {n}: is {kind(node)}, expected an object")
            continue
        ids = node.get("token_ids") or []
        mask = node.get("mask") or []
        if not integers(ids):
            problems.add(f"{where} node {n}: token_ids is not a list of integers, tokens not shown")
            ids = []
        if not isinstance(mask, list) or len(mask) != len(ids):
            problems.add(f"{where} node {n}: mask does not match token_ids in length, no token sampled")
            mask = [False] * len(ids)
        good.append((n, node, ids, mask))
    all_ids = [i for _, _, ids, _ in good for i in ids]
    texts, as_ids = decode(all_ids, state, where, problems) if all_ids else ([], state["tokenizer"] == "")
    turns: list[Turn] = []
    model_texts: list[str] = []
    model_values: dict[str, list] = {"surprisal": [], "advantage": [], "ref_logprob": []}
    has_adv = False
    scaffold = sampled_total = 0
    prompt_end = None  # tokens before the first sampled one
    pos = 0
    prompt_messages = []
    for n, node, ids, mask in good:
        message = node.get("message")
        role = message.get("role") if isinstance(message, dict) and isinstance(message.get("role"), str) else "?"
        text = message_text(message) if message is not None else ""
        node_texts = texts[pos:pos + len(ids)]
        first = next((k for k, m in enumerate(mask) if m), None)
        if node.get("sampled") is True and first is not None:
            if prompt_end is None:
                prompt_end = pos + first
            count = sum(1 for m in mask if m)
            scaffold += first
            sampled_total += count
            turn = Turn(role=role, tokens=Tokens(texts=node_texts[first:], flags=[False] * (len(ids) - first),
                                                 scores=[None] * (len(ids) - first), ids=as_ids))
            if as_ids:
                turn.text = text
            logprobs, advantages = node.get("logprobs"), node.get("advantages")
            values = {"surprisal": _spread(logprobs, mask[first:], count, -1.0, f"{where} node {n}: logprobs", problems)}
            if advantages is not None:
                values["advantage"] = _spread(advantages, mask[first:], count, 1.0,
                                              f"{where} node {n}: advantages", problems)
            if node.get("reference_logprobs") is not None:
                values["ref_logprob"] = _spread(node["reference_logprobs"], mask[first:], count, 1.0,
                                                f"{where} node {n}: reference_logprobs", problems)
            turn.token_values = {k: v for k, v in values.items() if v is not None}
            for key in model_values:
                model_values[key].extend(turn.token_values.get(key) or [None] * len(turn.tokens))
            has_adv = has_adv or "advantage" in turn.token_values
            model_texts.append(text)
            turns.append(turn)
        else:
            if node.get("sampled") is True:
                problems.add(f"{where} node {n}: sampled, but its mask marks no token as sampled: shown as text")
            if prompt_end is None:
                prompt_messages.append(f"[{role}]\n{text}")
            turns.append(Turn(role=role, text=text))
        pos += len(ids)
    traj.turns = turns
    if prompt_end is not None and not as_ids:
        traj.prompt = "".join(texts[:prompt_end])
    elif prompt_messages:
        traj.prompt = "\n\n".join(prompt_messages)
    model_turns = [turn for turn in turns if turn.tokens is not None]
    if model_turns:
        joined = Tokens(ids=as_ids)
        for turn in model_turns:
            joined.texts += turn.tokens.texts
            joined.flags += turn.tokens.flags
            joined.scores += turn.tokens.scores
        traj.tokens = joined
        traj.token_values = {k: v for k, v in model_values.items() if v.count(None) != len(v)}
        traj.pure_generated_text = "".join(joined.texts) if not as_ids else "\n\n".join(model_texts)
        traj.response_length = sampled_total
        advs = [a for a in model_values["advantage"] if a is not None and math.isfinite(a)] if has_adv else []
        traj.advantage = sum(advs) / len(advs) if advs else None
    traj.metadata = {"nodes": len(nodes), "sampled tokens": sampled_total,
                     "template tokens before sampled tokens": scaffold, "tokens": len(all_ids)}
    return traj


def _spread(values: Any, mask: list, count: int, sign: float, what: str, problems: Problems) -> list | None:
    """Compact per-sampled-token values laid onto a node's tokens (from its first sampled one):
    a value on each sampled token, None on the others; None (with a problem) when the list does
    not hold one number per sampled token."""
    if not numbers(values) or len(values) != count:
        problems.add(f"{what} does not hold one number per sampled token ({count}), not shown")
        return None
    it = iter(values)
    if all(mask):  # the usual layout: every token from the first sampled one on is sampled
        return [None if v is None else sign * v for v in values]
    out = []
    for m in mask:
        v = next(it) if m else None
        out.append(None if v is None else sign * v)
    return out
