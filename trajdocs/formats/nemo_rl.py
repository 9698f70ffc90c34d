"""NeMo-RL step files: `<log_dir>/train_data_step<N>.jsonl` and `val_data_step<N>.jsonl`.

Facts from NeMo-RL's code (NVIDIA-NeMo/RL 7ea279ab):
- `Logger.log_batched_dict_as_jsonl` (nemo_rl/utils/logger.py:1071-1098) writes one line per
  sample: the batch sliced one sample at a time (`BatchedDataDict.slice`,
  nemo_rl/distributed/batched_data_dict.py:885-906), so every value is wrapped in a one-element
  list, plus `"idx": i`; `json.dumps(..., default=str)`: ASCII-escaped, NaN / Infinity as those
  words. The file is opened with "w": one file per step.
- Training (grpo.py:3632-3656; async: 5258-5281): `train_data_step{N}.jsonl`, N = the step
  just trained, from 1. Keys: `agent_ref` (when present), `content` (the message strings of the
  sample's message log, no roles: the templated prompt message(s), then for each generation turn
  the response decoded without special tokens and the environment's feedback), `rewards`,
  `filtered_rewards` (dynamic sampling), `input_lengths`, `token_ids`, `token_loss_mask`,
  `sample_loss_mask`, `advantages`, `generation_logprobs`, `prev_logprobs`. `env.should_log_nemo_gym_responses`
  turns the file off (grpo.py:2174-2190).
- `token_ids` are all messages' tokens in order (prompt, response, the feedback tokenised after
  it: rollouts.py:981-1019), right-padded to the batch's longest sequence (rounded up to
  `make_sequence_length_divisible_by`) with the tokenizer's pad token; the per-token lists are
  padded with 0 (llm_message_utils.py:257-430). `input_lengths` is the length before padding:
  tokens from there on are padding and are not shown.
- `token_loss_mask` is 1 exactly on the tokens of generated assistant messages (grpo.py:1910-1940):
  those are the model's; a run of them is one model turn.
- All per-token lists are aligned with `token_ids`: position t holds token t's value.
  `generation_logprobs[t]` is the inference engine's log-prob of token t (0 on tokens it did not
  generate; rollouts.py:515-523); `prev_logprobs[t]` the trainer's log-prob of token t given the
  tokens before it, position 0 a 0 placeholder (the logits are shifted by one and a 0 prepended:
  models/megatron/train.py:668-671, dtensor_policy_worker.py:1281-1292), all zeros when the
  trainer's pass is skipped (`force_on_policy_ratio`, grpo.py:3238-3249); the loss compares the two
  from position 1 on (grpo.py:2540-2542). `advantages` are the sample's advantage expanded over
  every position for GRPO (advantage_estimator.py:69-98), per token for other estimators.
- Validation (grpo.py:4015-4021): `val_data_step{N}.jsonl`, N = 0 for the check before training
  (`val_at_start`), then the step it follows: `content` as the message log's {role, content}
  messages, `rewards`. No token ids.

Shown: training samples as a conversation: the prompt message(s), each model turn tokenised (its
ids under the loss mask, decoded with the `tokenizer` option, or as ids without one) with
per-token surprisal (−generation_logprob), mismatch (|generation_logprobs − prev_logprobs|, the
inference-vs-trainer mismatch) and advantage, each feedback message as text. `content` is matched
to the mask's runs from its end: the last 2 × (model turns) strings are the responses and the
feedback after each, the ones before the prompt. Reward = `rewards`.
"""

from __future__ import annotations

import re
from itertools import groupby
from typing import Any

from ..model import Tokens, Trajectory, Turn
from .common import Problems, ReadContext, apply_rule, as_text, kind, metadata_except, per_token_list
from .token_ids import Decoder, finite_mean, is_ids, jsonl_records, number_or_none

NAME = "nemo-rl"
PATH = re.compile(r"(?P<view>train|val)_data_step(?P<step>\d+)\.jsonl")
SUFFIX = ".jsonl"
NAMES_TEXT = "NeMo-RL files named train_data_step<N>.jsonl or val_data_step<N>.jsonl"
TOKEN_IDS = True  # token ids: text comes from the `tokenizer` option
TOKEN_CHANNELS = ("token_ids (as text with the tokenizer option)", "surprisal (−generation_logprobs)",
                  "mismatch (|generation_logprobs − prev_logprobs|)", "advantage (advantages)")
FIELDS = ("content (prompt, responses, environment feedback)", "rewards", "token_loss_mask (the model's tokens)",
          "input_lengths (padding dropped)", "metadata (idx, input_lengths, sample_loss_mask, ...)")
PER_TOKEN = ("token_ids", "token_loss_mask", "generation_logprobs", "prev_logprobs", "advantages")
NOT_META = {"content", "rewards", *PER_TOKEN}


def series(match: re.Match) -> str:
    return "nemo-rl"


def unwrap(value: Any) -> Any:
    """A value as the writer wrapped it, unwrapped: a one-element list -> its element."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    """The samples of one file's bytes, line by line: a bad line is a problem, never the file."""
    decoder = Decoder(ctx.tokenizer, problems)
    trajectories, records = [], []
    for lineno, obj in jsonl_records(data, problems, "NeMo-RL"):
        record = {key: unwrap(value) for key, value in obj.items()}
        where = f"line {lineno}"
        if "token_ids" in record:
            traj = train_trajectory(len(trajectories), record, where, decoder, problems)
        else:
            traj = val_trajectory(len(trajectories), record, where, problems)
        trajectories.append(traj)
        records.append(record)
    if not trajectories and not problems:
        problems.add("no samples in the file")
    if ctx.rule is not None:
        apply_rule(trajectories, records, ctx.rule, problems)
    return trajectories


def _texts(content: Any) -> list[str] | None:
    if isinstance(content, list) and all(isinstance(s, str) for s in content):
        return content
    return None


def model_runs(mask: list, end: int) -> list[tuple[int, int]]:
    """[start, stop) of each run of tokens whose `token_loss_mask` is set, before `end`."""
    runs, pos = [], 0
    for on, group in groupby(mask[:end], bool):
        size = sum(1 for _ in group)
        if on:
            runs.append((pos, pos + size))
        pos += size
    return runs


def _negated(values: list) -> list:
    return [-v if type(v) in (float, int) else None for v in values]


def _differences(a: list, b: list) -> list:
    return [abs(x - y) if type(x) in (float, int) and type(y) in (float, int) else None for x, y in zip(a, b)]


def _numbers(values: list) -> list:
    return [v if type(v) in (float, int) else None for v in values]


def train_trajectory(index: int, record: dict, where: str, decoder: Decoder, problems: Problems) -> Trajectory:
    traj = Trajectory(index=index, reward=number_or_none(record.get("rewards")))
    ids = record.get("token_ids")
    if not is_ids(ids):
        problems.add(f"{where}: token_ids is {kind(ids)}, expected a list of token ids: no tokens shown")
        ids = []
    n = len(ids)
    length = record.get("input_lengths")
    if isinstance(length, int) and not isinstance(length, bool) and 0 <= length <= n:
        end = length
    else:
        problems.add(f"{where}: input_lengths is {kind(length) if not isinstance(length, int) else length}, "
                     f"expected the sample's length before padding (at most {n}): every token read")
        end = n
    mask = per_token_list(record.get("token_loss_mask"), n, "token_loss_mask", where, problems)
    if mask is None:
        problems.add(f"{where}: no token_loss_mask: which tokens are the model's is not known, none shown")
        mask = []
    gen = per_token_list(record.get("generation_logprobs"), n, "generation_logprobs", where, problems)
    prev = per_token_list(record.get("prev_logprobs"), n, "prev_logprobs", where, problems)
    adv = per_token_list(record.get("advantages"), n, "advantages", where, problems)
    runs = model_runs(mask, end)
    if gen is not None and prev is not None and runs and \
            all(prev[t] == 0 for a, b in runs for t in range(a, b)) and any(gen[t] for a, b in runs for t in range(a, b)):
        problems.add(f"{where}: prev_logprobs are 0 on every model token (NeMo-RL writes zeros when it skips the "
                     "trainer's log-prob pass, force_on_policy_ratio): no mismatch shown")
        prev = None
    model_turns = []
    for a, b in runs:
        values = {}
        if gen is not None:
            values["surprisal"] = _negated(gen[a:b])
        if gen is not None and prev is not None:
            values["mismatch"] = _differences(gen[a:b], prev[a:b])
        if adv is not None:
            values["advantage"] = _numbers(adv[a:b])
        model_turns.append(Turn("assistant", tokens=decoder.tokens(ids[a:b], where), token_values=values))
    traj.turns = _conversation(_texts(record.get("content")), model_turns, where, problems)
    traj.prompt, traj.pure_generated_text = _prompt_and_responses(_texts(record.get("content")), len(model_turns))
    if model_turns:
        traj.tokens, traj.token_values = _joined(model_turns)
        traj.response_length = len(traj.tokens)
    if adv is not None and runs:
        traj.advantage = finite_mean([adv[t] for a, b in runs for t in range(a, b) if type(adv[t]) in (float, int)])
    traj.metadata = metadata_except(record, NOT_META)
    return traj


def _conversation(content: list[str] | None, model_turns: list[Turn], where: str, problems: Problems) -> list[Turn]:
    """The prompt message(s), then each model turn followed by the feedback written after it."""
    m = len(model_turns)
    if content is None:
        problems.add(f"{where}: content is not a list of message strings: only the model's tokens shown")
        return list(model_turns)
    prompts = len(content) - 2 * m
    if prompts < 1:
        problems.add(f"{where}: {len(content)} content messages for {m} model turns (runs of token_loss_mask): "
                     "messages shown first, then the model's tokens")
        return [Turn("message", text=s) for s in content] + model_turns
    turns = [Turn("prompt", text=s) for s in content[:prompts]]
    for j, turn in enumerate(model_turns):
        turns += [turn, Turn("environment", text=content[prompts + 2 * j + 1])]
    return turns


def _prompt_and_responses(content: list[str] | None, m: int) -> tuple[str | None, str | None]:
    if content is None or len(content) - 2 * m < 1:
        return None, None
    prompts = len(content) - 2 * m
    responses = [content[prompts + 2 * j] for j in range(m)]
    return "".join(content[:prompts]), "\n\n".join(responses) if responses else None


def _joined(turns: list[Turn]) -> tuple[Tokens, dict[str, list]]:
    """All model turns' tokens as one response (statistics, search), with their channels."""
    if len(turns) == 1:
        return turns[0].tokens, turns[0].token_values  # type: ignore[return-value]
    tokens = Tokens(ids=turns[0].tokens.ids)  # type: ignore[union-attr]
    values: dict[str, list] = {name: [] for name in turns[0].token_values}
    for turn in turns:
        tokens.texts += turn.tokens.texts  # type: ignore[union-attr]
        tokens.flags += turn.tokens.flags  # type: ignore[union-attr]
        tokens.scores += turn.tokens.scores  # type: ignore[union-attr]
        for name in values:
            values[name] += turn.token_values[name]
    return tokens, values


def val_trajectory(index: int, record: dict, where: str, problems: Problems) -> Trajectory:
    traj = Trajectory(index=index, reward=number_or_none(record.get("rewards")))
    content = record.get("content")
    if not isinstance(content, list):
        problems.add(f"{where}: content is {kind(content)}, expected the sample's messages")
        content = []
    prompt, responses = [], []
    for message in content:
        if isinstance(message, dict):
            role, text = message.get("role"), message.get("content")
            role = role if isinstance(role, str) else as_text(role)
            text = text if isinstance(text, str) else as_text(text)
        else:
            role, text = "message", message if isinstance(message, str) else as_text(message)
        traj.turns.append(Turn(role, text=text))
        if role == "assistant":
            responses.append(text)
        elif not responses:
            prompt.append(text)
    traj.prompt = "".join(prompt) if prompt else None
    traj.pure_generated_text = "\n\n".join(responses) if responses else None
    traj.metadata = metadata_except(record, NOT_META)
    return traj
