"""open-instruct rollout traces (`--save_traces` with `--rollouts_save_path`):
`{rollouts_save_path}/{run_name}_rollouts_{shard:06d}.jsonl`.

Facts from open-instruct's code (allenai/open-instruct e6c3044a):
- `save_rollouts_to_disk` / `_save_rollouts` (open_instruct/rl_utils.py:88-160), called once per
  training step (data_loader.py:1486-1497): the step's samples appended (mode "a") to shard
  `total_samples_written // 10000` (`ROLLOUT_SHARD_SIZE`, rl_utils.py:19): a shard holds many
  steps, a step's samples go to the shard chosen when it starts. Writes happen on a thread pool
  (rl_utils.py:18). One `json.dumps(asdict(RolloutRecord))` a line (rl_utils.py:29-43):
  ASCII-escaped, NaN as `NaN`, keys in this order: `step`, `sample_idx`, `prompt_idx` (sample
  index // samples per prompt: the group), `prompt_tokens`, `response_tokens` (token ids; tool
  output tokens are part of the response, vllm_utils.py:1100-1116), `reward`, `advantage`,
  `finish_reason`, `dataset`, `ground_truth`, `request_info` (tool calls, or null), `logprobs`
  (the inference engine's log-prob of each response token, 0.0 on tool output tokens, or null;
  an empty response is written as the EOS id with a NaN log-prob, vllm_utils.py:1137-1141).
- `{run_name}_metadata.jsonl` (rl_utils.py:46-67): one line, `run_name`, `git_commit`,
  `model_name`, `timestamp`; not a step file.

The steps come from the records' `step` (`steps_in`): one step page per step, whichever shards
hold it. Shown: each response tokenised (with the `tokenizer` option, else ids), surprisal
(−logprobs) per token, the prompt decoded, reward, advantage, group = `prompt_idx`.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

from ..model import Trajectory
from .common import Meta, Problems, ReadContext, apply_rule, as_text, kind, loads, metadata_except, read_regular_file
from .token_ids import Decoder, is_ids, jsonl_records, number_or_none

NAME = "open-instruct"
PATH = re.compile(r"(?P<run>[^/]+)_rollouts_\d{6,}\.jsonl")
SUFFIX = ".jsonl"
NAMES_TEXT = "open-instruct traces named <run>_rollouts_<shard>.jsonl (e.g. grpo__1__1733_rollouts_000000.jsonl)"
TOKEN_IDS = True  # token ids: text comes from the `tokenizer` option
TOKEN_CHANNELS = ("response_tokens (as text with the tokenizer option)", "surprisal (−logprobs)")
FIELDS = ("prompt_tokens (prompt, decoded)", "reward", "advantage", "prompt_idx (group)",
          "metadata (step, sample_idx, finish_reason, dataset, ground_truth, request_info)")
NOT_META = {"prompt_tokens", "response_tokens", "reward", "advantage", "logprobs"}


def series(match: re.Match) -> str:
    """Each run name is its own experiment."""
    return "open-instruct:" + match.group("run")


def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    """The samples of one step's lines, line by line: a bad line is a problem, never the file.
    The run's metadata file, when it is there, adds its fields to each sample's metadata."""
    decoder = Decoder(ctx.tokenizer, problems)
    trajectories, records = [], []
    run = run_metadata(ctx.path, problems)
    for lineno, obj in jsonl_records(data, problems, "open-instruct", ctx.first_line):
        traj = trajectory(len(trajectories), obj, f"line {lineno}", decoder, problems)
        for key, value in run.items():
            traj.metadata.setdefault(key, value)
        trajectories.append(traj)
        records.append(obj)
    if not trajectories and not problems:
        problems.add("no samples in the file")
    if ctx.rule is not None:
        apply_rule(trajectories, records, ctx.rule, problems)
    return trajectories


def trajectory(index: int, obj: dict, where: str, decoder: Decoder, problems: Problems) -> Trajectory:
    traj = Trajectory(index=index, reward=number_or_none(obj.get("reward")),
                      advantage=number_or_none(obj.get("advantage")))
    prompt, response = obj.get("prompt_tokens"), obj.get("response_tokens")
    if is_ids(prompt):
        traj.prompt = decoder.text(prompt, f"{where}: prompt_tokens")
        if traj.prompt is None:
            traj.prompt = " ".join(map(str, prompt))
    elif prompt is not None:
        problems.add(f"{where}: prompt_tokens is {kind(prompt)}, expected a list of token ids")
    if is_ids(response):
        traj.tokens = decoder.tokens(response, f"{where}: response_tokens")
        traj.response_length = len(response)
        if not traj.tokens.ids:
            traj.pure_generated_text = "".join(traj.tokens.texts)
        logprobs = obj.get("logprobs")
        if isinstance(logprobs, list) and len(logprobs) == len(response):
            traj.token_values["surprisal"] = [-v if type(v) in (float, int) else None for v in logprobs]
        elif logprobs is not None:
            what = f"{len(logprobs)} values" if isinstance(logprobs, list) else kind(logprobs)
            problems.add(f"{where}: logprobs is {what}, not one per response token ({len(response)}): not shown")
    else:
        problems.add(f"{where}: response_tokens is {kind(response)}, expected a list of token ids")
    group = obj.get("prompt_idx")
    if group is not None:
        traj.group = as_text(group)
    traj.metadata = metadata_except(obj, NOT_META)
    return traj


def related_files(path: str) -> list[str]:
    """The run's metadata file beside a shard, `<run>_metadata.jsonl`, whose fields its pages show
    (so it counts in the step's cache key: `cache.step_key`)."""
    m = PATH.search(os.path.basename(path)) if path else None
    return [os.path.join(os.path.dirname(path), f"{m.group('run')}_metadata.jsonl")] if m else []


def run_metadata(path: str, problems: Problems) -> dict:
    """`run.<field>` of `<run>_metadata.jsonl` beside the shard (run_name, git_commit, model_name,
    timestamp); {} when there is none."""
    related = related_files(path)
    if not related:
        return {}
    meta_path = related[0]
    try:
        st = os.stat(meta_path)
    except OSError:
        return {}
    fields, problem = _metadata_file(meta_path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if problem:
        problems.add(problem)
    return fields


@lru_cache(maxsize=16)
def _metadata_file(path: str, size: int, *version: int) -> tuple[dict, str]:
    """The fields of a run's metadata file, remembered per version of the file (size, times, inode)."""
    name = os.path.basename(path)
    if size > 2 ** 20:
        return {}, f"{name}: {size:,} bytes, not the one line open-instruct writes: not read"
    try:
        obj = loads(read_regular_file(path, 2 ** 20).split(b"\n", 1)[0])
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return {}, f"{name}: cannot be read ({getattr(err, 'strerror', None) or err})"
    if not isinstance(obj, dict):
        return {}, f"{name}: is {kind(obj)}, expected an object"
    meta = Meta()
    for key, value in obj.items():
        meta.add(f"run.{key}", value)
    return meta.fields, ""


# --- the steps in a shard -----------------------------------------------------------------------

STEP_PREFIX = re.compile(rb'\{"step": (-?\d{1,18})[,}]')  # (longer numbers: parsed, as the reader does)


def steps_in(data: bytes) -> dict[int, list[tuple[int, int]]]:
    """{step: byte ranges of its lines} of one shard, consecutive lines of a step in one range.

    A line's step is its record's integer `step` when the line is a JSON object; a line that is
    no JSON (a half-written last line) goes by a leading `{"step": N` when it has one; any other
    line goes with the line before it (the first lines: with the first line that has a step), so
    that reading the step reports it. Blank lines belong to no step.

    The shortcut: a line starting `{"step": N,` with `"step"` nowhere else in it has step N
    without parsing it (in JSON text, `"step"` outside a key can only be the string "step", and
    a key right after `{` is the first key; if the line is no JSON the prefix decides anyway).
    Any other line is parsed. Guarantee: the same as `steps_in_plain`, which parses every line."""
    return _collect(data, _line_step_fast)


def steps_in_plain(data: bytes) -> dict[int, list[tuple[int, int]]]:
    """The reference twin of `steps_in`: every line parsed."""
    return _collect(data, _line_step)


def _line_step_fast(line: bytes) -> int | None:
    m = STEP_PREFIX.match(line)
    if m is not None and line.count(b'"step"') == 1:
        return int(m.group(1))
    return _line_step(line)


def _line_step(line: bytes) -> int | None:
    try:
        obj = loads(line)
    except (ValueError, UnicodeDecodeError):
        m = STEP_PREFIX.match(line)
        return int(m.group(1)) if m else None
    step = obj.get("step") if isinstance(obj, dict) else None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _collect(data: bytes, line_step) -> dict[int, list[tuple[int, int]]]:  # type: ignore[no-untyped-def]
    lines: list[tuple[int, int, int | None]] = []  # (start, end, step) of each non-blank line
    start, size = 0, len(data)
    while start < size:
        stop = data.find(b"\n", start)
        end = size if stop < 0 else stop + 1
        line = data[start:end]
        if line.strip():
            lines.append((start, end, line_step(line.rstrip(b"\r\n"))))
        start = end
    known = next((step for _, _, step in lines if step is not None), None)
    if known is None:
        return {}
    steps: dict[int, list[tuple[int, int]]] = {}
    current = known
    for start, end, step in lines:
        current = step if step is not None else current
        ranges = steps.setdefault(current, [])
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))
    return steps
