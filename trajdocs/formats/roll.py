"""ROLL's two dumps.

Facts from ROLL's code (alibaba/ROLL 8eb27cc2):

The logging board (`save_logging_board_dir`, RLVR pipeline; the folder is joined to the file name
by plain string concatenation, so it needs its trailing "/"): `roll/pipeline/rlvr/rlvr_pipeline.py`
- `:642-648`: only with it set, the old log-probs are computed a second time (`old_log_probs2`,
  with their `entropy`); `:728-729`: `save_metrics` is called once per domain batch of a step;
- `:378-447` (`save_metrics`): one file per call, `data_{%Y%m%d_%H%M%S}_{ms:03}.jsonl`, one
  `json.dumps(..., ensure_ascii=False)` object a line with `log_probs2`, `logprobs`,
  `new_response_mask`, `prompt`, `response`, `old_log_probs2_entropy`, `ref_logprobs`,
  `values`, `token_rewards`, `reward`, `step` (`global_step`, from 0) and `response_tokens`;
- `prompt` / `response` are `batch_decode(..., skip_special_tokens=False)` of the `prompts` /
  `responses` tensors: prompts left-padded, responses right-padded to the sequence length with
  the tokenizer's pad token (`roll/utils/functionals.py:1195-1330` `postprocess_generate`; Qwen's
  pad token is `<|endoftext|>`); `response_tokens` are `convert_ids_to_tokens` of the padded
  responses: vocabulary strings (byte-level BPE pieces such as "Ġthe"), not text;
- the per-token lists (`logprobs`, `log_probs2`, `old_log_probs2_entropy`, `ref_logprobs`,
  `new_response_mask`) are rows of the right-padded sequence from the first response token to the
  row's end (`remove_leading_zeros` over `response_mask[:, 1:]`): entry j belongs to response
  token j, the right padding stays; `new_response_mask` is 1 on the response's tokens;
- `token_rewards` and `values` are the same tensor (`token_level_rewards`), whole rows over the
  sequence less its first token (`roll/utils/functionals.py:541-561`, `615-647`): the response
  sits at the row's end minus the padding, the same offset as the lists above;
- `reward` is the response-level reward.

The rollout dump (`rollout_dump_dir`, an absolute path): `rollout_dump_data.step_{N}.jsonl`,
ONE line holding one JSON object of columns, each a list with one entry per sample:
- RLVR (`roll/pipeline/rlvr/utils.py:19-71`): `global_step`, `id`, `source`, `difficulty`,
  `prompt`, `messages`, `ground_truth`, `case_type`, `test_case_function`, `test_cases`, `tag`,
  `domain` (those the data has), `responses` (decoded without special tokens), `scores`,
  `sampling_params` (a JSON string);
- agentic (`roll/pipeline/agentic/utils.py:298-333`, columns from
  `env_manager/agent_native_env_manager.py:374-430`): `trajectory_data` (a JSON string with
  `reward_info.episode_reward` ...), `messages` (a JSON string: the conversation), `tools`,
  `exp_name`, `global_step`; evaluation writes the same file name.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

from ..model import Tokens, Trajectory, Turn
from ..tokenizer import BYTE_DECODER
from .common import Meta, Problems, ReadContext, Unreadable, as_text, loads, number, text_as_written
from .jsonlines import objects

NAME = "roll"
# a board folder given without its trailing "/" puts its name before the file name ("boarddata_...")
PATH = re.compile(r"(?:[^/]*data_\d{8}_\d{6}_\d{3}|rollout_dump_data\.step_(?P<step>\d+))\.jsonl")
SUFFIX = ".jsonl"
NAMES_TEXT = ("ROLL logging boards named data_<YYYYmmdd_HHMMSS>_<ms>.jsonl or rollout dumps named "
              "rollout_dump_data.step_<N>.jsonl")
TOKEN_CHANNELS = ("entropy", "surprisal", "logprob", "ref_logprob", "token_reward")
FIELDS = ("prompt (left padding stripped)", "response_tokens (decoded)", "reward", "step",
          "old_log_probs2_entropy (entropy)", "logprobs", "ref_logprobs", "token_rewards",
          "rollout dumps: prompt, responses, scores, messages (turns), trajectory_data")
BOARD_KEYS = ("response_tokens", "new_response_mask")
_TO_LATIN1 = {ord(ch): b for ch, b in BYTE_DECODER.items()}
_ALPHABET = frozenset(BYTE_DECODER)


def series(match: re.Match) -> str:
    return "roll-dump" if match.group("step") is not None else "roll-board"


# --- steps of a logging board file ---------------------------------------------------------------

def steps_in(data: bytes) -> dict[int, list[tuple[int, int]]]:
    """{step: byte ranges of its lines} of a logging board file, from each line's `step`. A line
    that says no step (broken, half-written, or without the field) goes with the step of the
    line before it (the first step when it comes first), so reading that step reports it."""
    steps: dict[int, list[tuple[int, int]]] = {}
    pending: list[tuple[int, int]] = []  # lines before the first line with a step
    current: int | None = None
    for start, end in _lines(data):
        step = _step_of(data[start:end])
        if step is None and current is None:
            pending.append((start, end))
            continue
        if step is not None:
            current = step
        ranges = steps.setdefault(current, [])
        if pending:
            ranges.append((pending[0][0], pending[-1][1]))
            pending = []
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))
    return steps


def _lines(data: bytes):  # type: ignore[no-untyped-def]
    start, size = 0, len(data)
    while start < size:
        end = data.find(b"\n", start)
        end = size if end < 0 else end + 1
        if data[start:end].strip():
            yield start, end
        start = end


def _step_of(line: bytes) -> int | None:
    try:
        obj = loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    step = obj.get("step") if isinstance(obj, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


# --- reading --------------------------------------------------------------------------------------

def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    trajectories: list[Trajectory] = []
    records = list(objects(data, problems, "ROLL"))
    pad = board_pad([obj for _, obj, _, _ in records])
    for lineno, obj, _, _ in records:
        if any(key in obj for key in BOARD_KEYS):
            trajectories.append(board_trajectory(len(trajectories), obj, pad, problems, f"line {lineno}"))
        elif obj and all(isinstance(v, list) for v in obj.values()):
            trajectories.extend(column_trajectories(len(trajectories), obj, problems, f"line {lineno}"))
        else:
            problems.add(f"line {lineno}: neither a ROLL logging board record (response_tokens, "
                         f"new_response_mask) nor a rollout dump of columns (keys {_keys(obj)})")
    if not trajectories:
        raise Unreadable("; ".join(problems) or "no samples in the file")
    return trajectories


def _keys(obj: dict) -> str:
    keys = list(obj)[:5]
    return ", ".join(map(str, keys)) + (", ..." if len(obj) > 5 else "")


def board_pad(records: list[dict]) -> str | None:
    """The pad token as the records show it: the tokens after a response's end, where
    `new_response_mask` is 0 (ROLL right-pads responses with the tokenizer's pad token, and
    left-pads prompts with the same). None when no record has padding or they disagree."""
    found: set = set()
    for obj in records:
        tokens, mask = obj.get("response_tokens"), obj.get("new_response_mask")
        if isinstance(tokens, list) and isinstance(mask, list):
            found.update(tokens[response_tokens_count(mask):])
    return found.pop() if len(found) == 1 and isinstance(next(iter(found)), str) else None


def response_tokens_count(mask: list) -> int:
    """How many response tokens `new_response_mask` marks: its leading run of 1s."""
    n = mask.index(0) if 0 in mask else len(mask)
    while mask[:n].count(1) != n:  # another value inside the run: cut before it
        n = next(i for i, v in enumerate(mask[:n]) if v != 1)
    return n


def token_texts(pieces: list) -> list[str] | None:
    """Each vocabulary string of byte-level BPE (`convert_ids_to_tokens`) as its text: the bytes
    it stands for, UTF-8 decoded across token boundaries (a character split over tokens shown
    whole on its last token, "" on the ones before). None when a piece is no string or holds a
    character outside the byte alphabet (then the pieces are not byte-level BPE)."""
    if not all(isinstance(p, str) for p in pieces) or not _ALPHABET.issuperset("".join(pieces)):
        return None
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    texts = [decoder.decode(p.translate(_TO_LATIN1).encode("latin-1")) for p in pieces]
    tail = decoder.decode(b"", final=True)
    if tail and texts:
        texts[-1] += tail
    return texts


def strip_left_pad(prompt: str, pad: str | None) -> tuple[str, int]:
    """The prompt less the run of pad tokens it starts with (the left padding), and how many."""
    if not pad:
        return prompt, 0
    n = 0
    while prompt.startswith(pad, n * len(pad)):
        n += 1
    return prompt[n * len(pad):], n


def board_trajectory(index: int, obj: dict, pad: str | None, problems: Problems, where: str) -> Trajectory:
    traj = Trajectory(index=index)
    prompt = obj.get("prompt")
    if isinstance(prompt, str):
        traj.prompt, stripped = strip_left_pad(prompt, pad)
    else:
        traj.prompt, stripped = (None if prompt is None else as_text(prompt)), 0
    traj.reward = number(obj.get("reward"))
    pieces, mask = obj.get("response_tokens"), obj.get("new_response_mask")
    meta = Meta()
    meta.add("step", obj.get("step"))
    meta.add("reward", obj.get("reward"))
    if stripped:
        meta.add("prompt left padding (not shown)", f"{stripped} × {pad}")
    if not isinstance(pieces, list) or not isinstance(mask, list):
        problems.add(f"{where}: response_tokens or new_response_mask is not a list: response shown as written")
        response = obj.get("response")
        traj.pure_generated_text = text_as_written(response)
        traj.metadata = meta.fields
        return traj
    n = response_tokens_count(mask)
    if n > len(pieces):
        problems.add(f"{where}: new_response_mask marks {n} tokens, response_tokens has {len(pieces)}")
        n = len(pieces)
    if 1 in mask[n:]:
        problems.add(f"{where}: new_response_mask is not one run of 1s from the start: "
                     f"the first {n} tokens shown")
    texts = token_texts(pieces[:n])
    response = obj.get("response")
    if texts is not None and isinstance(response, str) and not response.startswith("".join(texts)):
        texts = None
    if texts is None:
        problems.add(f"{where}: response_tokens are not byte-level BPE pieces of the response text: "
                     "shown as written")
        texts = [p if isinstance(p, str) else as_text(p) for p in pieces[:n]]
    entropy = _aligned(obj.get("old_log_probs2_entropy"), n, 0)
    traj.tokens = Tokens(texts=texts, flags=[False] * n,
                         scores=entropy if entropy is not None else [None] * n)
    traj.pure_generated_text = "".join(texts)
    traj.response_length = n
    logprobs = _aligned(obj.get("logprobs"), n, 0)
    if logprobs is not None:
        traj.token_values["logprob"] = logprobs
        traj.token_values["surprisal"] = [-v for v in logprobs]
    ref = _aligned(obj.get("ref_logprobs"), n, 0)
    if ref is not None:
        traj.token_values["ref_logprob"] = ref
    row = obj.get("logprobs")
    offset = None
    rewards = obj.get("token_rewards")
    if isinstance(row, list) and isinstance(rewards, list) and len(rewards) >= len(row):
        offset = len(rewards) - len(row)  # the response starts where the lists above start
        token_rewards = _aligned(rewards, n, offset)
        if token_rewards is not None:
            traj.token_values["token_reward"] = token_rewards
    missing = [key for key, got in (("old_log_probs2_entropy", entropy), ("logprobs", logprobs),
                                    ("ref_logprobs", ref), ("token_rewards", traj.token_values.get("token_reward")))
               if got is None and key in obj]
    if missing and n:
        problems.add(f"{where}: {', '.join(missing)} not numbers for each of the {n} response tokens: not shown")
    for key in ("log_probs2", "values"):
        values = _aligned(obj.get(key), n, offset if key == "values" and offset is not None else 0)
        meta.add(key, values if values is not None else obj.get(key))
    for key, value in obj.items():
        if key not in ("prompt", "response", "response_tokens", "new_response_mask", "old_log_probs2_entropy",
                       "logprobs", "ref_logprobs", "token_rewards", "log_probs2", "values", "step", "reward"):
            meta.add(str(key), value)
    traj.metadata = meta.fields
    return traj


def _aligned(values: Any, n: int, offset: int) -> list | None:
    """values[offset:offset + n] when they are all numbers; else None."""
    if not isinstance(values, list) or len(values) < offset + n:
        return None
    part = values[offset:offset + n]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in part):
        return part
    return None


# --- rollout dumps: one line of columns -----------------------------------------------------------

TEXT_COLUMNS = ("prompt", "responses", "messages", "trajectory_data")


def column_trajectories(first: int, columns: dict, problems: Problems, where: str) -> list[Trajectory]:
    """One sample per row of the columns (ROLL writes every column with one entry a sample)."""
    lengths = {len(v) for v in columns.values()}
    rows = max(lengths)
    if len(lengths) > 1:
        short = [k for k, v in columns.items() if len(v) < rows]
        problems.add(f"{where}: columns of different lengths ({', '.join(short[:5])} shorter than {rows}): "
                     "missing entries shown as absent")
    out = []
    for i in range(rows):
        row = {k: v[i] for k, v in columns.items() if i < len(v)}
        out.append(column_trajectory(first + i, row, problems, f"{where} sample {i}"))
    return out


def column_trajectory(index: int, row: dict, problems: Problems, where: str) -> Trajectory:
    traj = Trajectory(index=index)
    meta = Meta()
    prompt, response = row.get("prompt"), row.get("responses")
    traj.prompt = text_as_written(prompt)
    traj.pure_generated_text = text_as_written(response)
    traj.reward = number(row.get("scores"))
    traj.group = str(row["id"]) if row.get("id") is not None else None
    messages = _json_text(row.get("messages"), problems, where, "messages")
    if isinstance(messages, list) and "responses" not in row:  # agentic: the conversation is the sample
        traj.turns = [Turn(role=str(m.get("role")), text=m.get("content") if isinstance(m.get("content"), str)
                           else as_text(m.get("content")))
                      for m in messages if isinstance(m, dict)]
        users = [t.text for t in traj.turns if t.role == "user"]
        models = [t.text for t in traj.turns if t.role == "assistant"]
        traj.prompt = traj.prompt if traj.prompt is not None else (users[0] if users else None)
        traj.pure_generated_text = models[-1] if models else None
    elif messages is not None:
        meta.add("messages", messages if isinstance(messages, str) else as_text(messages))
        if traj.prompt is None:
            traj.prompt = as_text(messages)
    data = _json_text(row.get("trajectory_data"), problems, where, "trajectory_data")
    if isinstance(data, dict):
        info = data.get("reward_info")
        if traj.reward is None and isinstance(info, dict):
            traj.reward = number(info.get("episode_reward"))
        env = data.get("env_info")
        if traj.group is None and isinstance(env, dict) and env.get("group_id") is not None:
            traj.group = f"{env.get('tag')}/{env.get('group_id')}"
        meta.add("trajectory_data", data)
    for key, value in row.items():
        if key in ("prompt", "responses", "messages", "trajectory_data"):
            continue
        if key in ("sampling_params", "tools") and isinstance(value, str):
            parsed = _json_text(value, problems, where, key)
            meta.add(key, parsed if parsed is not None else value)
        else:
            meta.add(str(key), value)
    traj.metadata = meta.fields
    return traj


def _json_text(value: Any, problems: Problems, where: str, key: str) -> Any:
    """A column ROLL writes as a JSON string, parsed; None when absent; as written when no JSON."""
    if value is None or not isinstance(value, str):
        return value
    try:
        return loads(value)
    except ValueError:
        problems.add(f"{where}: {key} is not the JSON text ROLL writes: shown as written")
        return value
