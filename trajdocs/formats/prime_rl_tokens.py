"""prime-rl token exports: `<output_dir>/token_exports/step_<N>/rank_<r>.jsonl` (+ `STABLE`).

Facts from the writer (prime-rl 559b4477, `trainer/rl/token_export.py`):
- Turned on by `trainer.enable_token_export = true` (`configs/trainer.py:658-659`); each trainer
  rank writes its own file per step (`token_export.py:87-100`; with context parallelism only CP
  rank 0, `:120`): the ranks' files together hold the step (one step here, its files as parts).
- `train.py:522-529, 551-553`: after every micro-batch's forward pass the exporter writes; after
  the step's last micro-batch all ranks meet at a barrier and an empty `STABLE` file is touched in
  the step folder (`token_export.py:81-85`). A step folder without `STABLE` is being written (or the
  run stopped mid-step): its files are read as they are and the pages say the step is not marked
  complete; that is no fault of the files, so it is no problem (a strict build passes).
- One line per sequence (`token_export.py:55-74`): the micro-batch is split by its
  `sequence_lengths`, one per packed sample (`trainer/batch.py:596`), the trailing padding is
  trimmed (`_trim_padding`: env name "" and no loss), sequences without any loss token are not
  written. So a line is one sample; its `position_ids` count 0..n-1 (`batch.py:371`).
  `json.dumps(record, separators=(",", ":"), allow_nan=False)`, ASCII-escaped; non-finite floats
  are written as null (`_json_float`). Keys: `schema_version` (1), `step`, `rank`, `micro_step`,
  `micro_sequence_idx`, `export_sequence_idx` (count in the file), `env_name`, then the aligned
  lists `token_ids`, `position_ids`, `loss_mask`, `advantages`, `inference_logprobs`,
  `trainer_logprobs`, `entropy`, `mismatch_kl`, `log_importance_ratio`, `importance_ratio`,
  `prob_delta`, `is_masked`, `is_masked_high`, `is_masked_low` (null lists when not computed),
  `rl_weights`, `ce_weights`, `ref_kl_weights` (null lists = defaults).
- `train.py:452-456`: trainer log-probs and entropies are shifted right by one, so position i holds
  the log-prob of token i and the entropy of the distribution that chose it (position 0: a
  constant pad). `loss_mask` is True on the tokens the model sampled; prompt and environment
  tokens (and multi-turn tool results) are False. No text, no reward: token ids only.

Shown: one trajectory per line; the tokens before the first loss token as the prompt; the loss
tokens as the response with entropy as the score and the channels mismatch_kl, mismatch
(|inference - trainer log-prob|), surprisal (-inference log-prob), advantage and importance_ratio.
A sequence whose loss tokens are interrupted (multi-turn: tool results between model turns) is
shown as turns: "prompt", "model" (loss tokens) and "context" (tokens between them without loss).
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from ..model import Tokens, Trajectory, Turn
from .common import Problems, ReadContext, per_token_list
from .jsonlines import objects
from .prime_rl import decode, integers, numbers

NAME = "prime-rl-tokens"
PATH = re.compile(r"token_exports/step_(?P<step>\d+)/(?P<part>rank_\d+)\.jsonl")
SUFFIX = ".jsonl"
NAMES_TEXT = "prime-rl token exports token_exports/step_<N>/rank_<r>.jsonl"
TOKEN_IDS = True  # token ids: text comes from the `tokenizer` option
TOKEN_CHANNELS = ("entropy", "mismatch_kl", "mismatch", "surprisal", "advantage", "importance_ratio")
FIELDS = ("token_ids (tokens)", "loss_mask (model tokens)", "entropy (score)", "inference_logprobs / trainer_logprobs",
          "mismatch_kl, importance_ratio, advantages", "is_masked*, prob_delta, weights (summaries)",
          "step, rank, micro_step, env_name")
STABLE = "STABLE"  # the marker the trainer touches when every rank finished the step
STAMP_FILES = (STABLE,)  # files beside a step's files whose presence changes its pages (cache key)
INCOMPLETE = "not marked complete: no STABLE file in the step folder (the trainer may still be writing it)"

ALIGNED = ("position_ids", "loss_mask", "advantages", "inference_logprobs", "trainer_logprobs", "entropy",
           "mismatch_kl", "log_importance_ratio", "importance_ratio", "prob_delta", "is_masked", "is_masked_high",
           "is_masked_low", "rl_weights", "ce_weights", "ref_kl_weights")
SUMMARISED_FLAGS = ("is_masked", "is_masked_high", "is_masked_low")
SUMMARISED_NUMBERS = ("log_importance_ratio", "prob_delta", "rl_weights", "ce_weights", "ref_kl_weights",
                      "trainer_logprobs", "inference_logprobs")


def series(match: re.Match) -> str:
    return f"{NAME}:token_exports"


def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    """Every sequence line of one rank's file; a bad line is a problem, never the file."""
    stable = not ctx.path or os.path.exists(os.path.join(os.path.dirname(ctx.path), STABLE))
    trajectories: list[Trajectory] = []
    state = {"tokenizer": ctx.tokenizer, "warned": False}
    for lineno, record, _, _ in objects(data, problems, "prime-rl", ctx.first_line):
        traj = sequence_trajectory(record, f"line {lineno}", problems, state)
        if traj is None:
            continue
        if not stable:
            traj.metadata["step"] = INCOMPLETE if "step" not in traj.metadata else \
                f"{traj.metadata['step']} ({INCOMPLETE})"
        traj.index = len(trajectories)
        trajectories.append(traj)
    if not trajectories and not problems:
        problems.add("no sequences in the file")
    return trajectories


def _floats(values: list | None) -> list | None:
    """Numbers (null stays None); None when the list holds anything else or nothing but nulls."""
    if values is None or values.count(None) == len(values) or not numbers(values):
        return None
    return values


def sequence_trajectory(record: dict, where: str, problems: Problems, state: dict) -> Trajectory | None:
    ids = record.get("token_ids")
    if not integers(ids):
        problems.add(f"{where}: no token_ids list of integers, not shown")
        return None
    n = len(ids)
    cols = {key: per_token_list(record.get(key), n, key, where, problems) for key in ALIGNED}
    mask = cols["loss_mask"]
    if mask is None:
        problems.add(f"{where}: no loss_mask: every token shown as the model's")
        mask = [True] * n
    positions = cols["position_ids"]
    if positions is not None and positions != list(range(n)):
        problems.add(f"{where}: position_ids do not count 0..{n - 1} (more than one sequence in the line?): "
                     "shown as one sequence")
    texts, as_ids = decode(ids, state, where, problems)
    entropy = _floats(cols["entropy"])
    inference, trainer = _floats(cols["inference_logprobs"]), _floats(cols["trainer_logprobs"])
    channels: dict[str, list | None] = {
        "mismatch_kl": _floats(cols["mismatch_kl"]),
        "mismatch": None if inference is None or trainer is None else
        [None if a is None or b is None else abs(a - b) for a, b in zip(inference, trainer)],
        "surprisal": None if inference is None else [None if v is None else -v for v in inference],
        "advantage": _floats(cols["advantages"]),
        "importance_ratio": _floats(cols["importance_ratio"]),
    }
    channels = {k: v for k, v in channels.items() if v is not None}
    traj = Trajectory(index=0)
    runs = _runs(mask)
    model_runs = [(a, b) for a, b, m in runs if m]
    first = model_runs[0][0] if model_runs else n
    traj.prompt = ("".join(texts[:first]) if not as_ids else " ".join(texts[:first])) if first else ""

    def tokens(a: int, b: int) -> tuple[Tokens, dict]:
        t = Tokens(texts=texts[a:b], flags=[False] * (b - a),
                   scores=entropy[a:b] if entropy is not None else [None] * (b - a), ids=as_ids)
        return t, {k: v[a:b] for k, v in channels.items()}

    if model_runs and model_runs[-1][1] == n and len(model_runs) == 1:
        traj.tokens, traj.token_values = tokens(first, n)
    elif model_runs:  # model turns with tokens between them that the model did not sample
        joined = Tokens(ids=as_ids)
        values: dict[str, list] = {k: [] for k in channels}
        for a, b, m in runs:
            if not m:
                role = "prompt" if a == 0 else "context"
                traj.turns.append(Turn(role=role, text=("".join if not as_ids else " ".join)(texts[a:b])))
                continue
            t, v = tokens(a, b)
            traj.turns.append(Turn(role="model", tokens=t, token_values=v))
            joined.texts += t.texts
            joined.flags += t.flags
            joined.scores += t.scores
            for k in values:
                values[k] += v[k]
        traj.tokens, traj.token_values = joined, values
    if traj.tokens is not None:
        traj.response_length = len(traj.tokens)
        traj.pure_generated_text = "".join(traj.tokens.texts) if not as_ids else None
        adv = channels.get("advantage") or []
        finite = [v for a, b in model_runs for v in adv[a:b] if v is not None and math.isfinite(v)]
        traj.advantage = sum(finite) / len(finite) if finite else None
    meta: dict[str, Any] = {}
    for key in ("step", "rank", "micro_step", "micro_sequence_idx", "export_sequence_idx", "env_name",
                "schema_version"):
        if key in record:
            value = record[key]
            meta[key] = value if value is None or isinstance(value, (str, int, float, bool)) else repr(value)
    meta["tokens"] = n
    meta["loss tokens"] = sum(b - a for a, b, m in runs if m)
    for key in SUMMARISED_FLAGS:
        values = cols[key]
        if values is None or values.count(None) == n:
            meta[key] = "not computed (null)" if key in record else "absent"
        else:
            meta[key] = f"{values.count(True)} of {n} tokens"
    for key in SUMMARISED_NUMBERS:
        values = cols[key]
        if values is not None and values.count(None) == n:
            meta[key] = "null (not computed, or the default)"
        elif values is not None:
            meta[key] = _range_text(values, n)
    extra = [k for k in record if k not in ALIGNED and k != "token_ids" and k not in meta]
    for key in extra:
        value = record[key]
        meta[key] = value if value is None or isinstance(value, (str, int, float, bool)) else repr(value)[:200]
    traj.metadata = meta
    return traj


_NONZERO = bytes([0] + [1] * 255)


def _runs(mask: list) -> list[tuple[int, int, bool]]:
    """(start, end, is loss) of each run of equal loss_mask values (found by a regular expression
    over the mask as bytes, not token by token)."""
    try:
        flags = bytes(mask).translate(_NONZERO)  # booleans (and small integers) at C speed
    except (TypeError, ValueError):
        flags = bytes(1 if m else 0 for m in mask)
    return [(m.start(), m.end(), m.group()[:1] == b"\x01") for m in re.finditer(rb"\x01+|\x00+", flags)]


def _range_text(values: list, n: int) -> str:
    """mean, min and max of a list's finite numbers (and how many are null)."""
    if not values:
        return "empty"
    if None not in values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values[:1]):
        try:
            total = sum(values)
        except TypeError:
            total = math.nan
        if math.isfinite(total):
            return f"mean {total / n:.4g}, min {min(values):.4g}, max {max(values):.4g}"
    finite = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if not finite:
        return "all null"
    return (f"mean {sum(finite) / len(finite):.4g}, min {min(finite):.4g}, max {max(finite):.4g}"
            f"{f' ({n - len(finite)} null)' if len(finite) < n else ''}")
