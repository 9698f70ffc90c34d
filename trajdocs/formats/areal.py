"""AReaL trajectory dumps (`rollout.dump_to_file: true`, with `fileroot`, `experiment_name`,
`trial_name` and `tokenizer_path` set).

Facts from AReaL's code (inclusionAI/AReaL 4aef98d8):
- `areal/infra/workflow_executor.py:818-832` (`_get_dump_dir`): the folder is
  `StatsLogger.get_log_path(...)` = `{fileroot}/logs/{user}/{experiment_name}/{trial_name}`
  (`areal/utils/stats_logger.py:179`), then `rollout/` for training rollouts and
  `eval-rollout/` for evaluation ones;
- `:834-921` (`_dump_trajectory`): per finished task, `{dump dir}/{tail_version}/{task_id}.jsonl`,
  opened for appending, one `json.dumps(record)` a line (ASCII-escaped; a NaN reward would be
  written `NaN`) with `task_id`, `sample_idx` (row in the task's batch), `seqlen`, `prompt_len`,
  `head_version`, `tail_version`, `reward`, `prompt` and `completion`, both decoded with
  `skip_special_tokens=False` (special tokens kept); rows whose last token is not a completion
  token are skipped (no empty completions are written);
- `tail_version` / `head_version` are the largest / smallest of the per-token weight versions;
  AReaL's own workflows give prompt tokens version -1 (`areal/workflow/rlvr.py:168`,
  `multi_turn.py:106`), so `head_version` is -1 there. The version counts weight updates: after
  training step `global_step` (from 0) the new version is `global_step + 1`
  (`areal/trainer/rl_trainer.py:731-740`). So the folder number is the version of the weights
  that wrote a sample's last token: with synchronous training the rollouts of step N, with
  asynchronous training (off-policy rollouts) not exactly one step. Pages call it a version.
- One task's samples (a GRPO group: `group_size` runs of one prompt) share a `task_id`: the group.
"""

from __future__ import annotations

import re

from ..model import Trajectory
from .common import Problems, ReadContext, Unreadable, accuracy, apply_rule, correctness, metadata_except, number
from .jsonlines import objects, text_field

NAME = "areal"
PATH = re.compile(r"(?P<view>rollout|eval-rollout)/(?P<step>\d+)/(?P<part>\d+)\.jsonl")
SUFFIX = ".jsonl"
NAMES_TEXT = "AReaL dumps named rollout/<version>/<task_id>.jsonl or eval-rollout/<version>/<task_id>.jsonl"
STEP_WORD = "Version"  # the folder number is a weight version, not a step (see above)
TOKEN_CHANNELS = ()
FIELDS = ("prompt (special tokens kept)", "completion (response, special tokens kept)", "reward",
          "task_id (group)", "sample_idx, seqlen, prompt_len, head_version, tail_version (metadata)")
TEXT_KEYS = ("prompt", "completion")


def series(match: re.Match) -> str:
    return "areal"


def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    trajectories, records = [], []
    for lineno, obj, _, _ in objects(data, problems, "AReaL"):
        traj = Trajectory(index=len(trajectories))
        traj.prompt = text_field(obj, "prompt")
        traj.pure_generated_text = text_field(obj, "completion")
        if traj.pure_generated_text is None:
            problems.add(f"line {lineno}: no completion field")
        traj.reward = number(obj.get("reward"))
        traj.accuracy = accuracy(None, obj)
        traj.correct = correctness(traj.accuracy)
        task = obj.get("task_id")
        traj.group = None if task is None else str(task)
        traj.metadata = metadata_except(obj, TEXT_KEYS)
        trajectories.append(traj)
        records.append(obj)
    if not trajectories:
        raise Unreadable("; ".join(problems) or "no samples in the file")
    if ctx.rule is not None:
        apply_rule(trajectories, records, ctx.rule, problems)
    return trajectories
