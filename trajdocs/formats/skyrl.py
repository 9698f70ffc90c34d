"""SkyRL evaluation dumps (`trainer.dump_eval_results`, on by default).

Facts from SkyRL's code (NovaSky-AI/SkyRL a9564572):
- `skyrl/train/evaluate.py:146-163` (and `:304-321` for step-wise evaluation): every evaluation
  writes `{trainer.export_path}/dumped_evals/global_step_{N}_evals/` (`eval_only/` when run
  outside training); `global_step` 0 is the evaluation before training
  (`skyrl/train/trainer.py:236-237`);
- `skyrl/train/utils/trainer_utils.py:324-372` (`dump_per_dataset_eval_results`): one
  `{data_source}.jsonl` per data source ("/" replaced by "_", "unknown" when none), one
  `json.dumps(entry, ensure_ascii=False)` a line with `input_prompt` and `output_response`
  (`tokenizer.decode` of the ids: special tokens kept), `score` (a float, or a list of per-token
  rewards when the environment gives token-level rewards), `stop_reason`, `env_class`,
  `env_extras` and `data_source`; plus `aggregated_results.jsonl`, one line of metrics (not
  samples: not a step file);
- the training batch dumps (`trainer.dump_data_batch`,
  `dumped_data/global_step_{N}_training_input.pkl`) are pickled torch tensors: not read.
"""

from __future__ import annotations

import math
import re

from ..model import Trajectory
from .common import Problems, ReadContext, Unreadable, accuracy, apply_rule, correctness, metadata_except, number
from .jsonlines import objects, text_field

NAME = "skyrl"
PATH = re.compile(r"dumped_(?P<view>eval)s/global_step_(?P<step>\d+)_evals/"
                  r"(?P<part>(?!aggregated_results\.jsonl\Z)[^/]+)\.jsonl")
SUFFIX = ".jsonl"
NAMES_TEXT = "SkyRL eval dumps named dumped_evals/global_step_<N>_evals/<data_source>.jsonl"
TOKEN_CHANNELS = ()
FIELDS = ("input_prompt (special tokens kept)", "output_response (response, special tokens kept)",
          "score (reward; per-token rewards summed)", "stop_reason, env_class, env_extras, data_source (metadata)")
TEXT_KEYS = ("input_prompt", "output_response")
NOT_READ = ((re.compile(r"(?:\A|/)dumped_data/global_step_\d+_training_input\.pkl\Z"),
             "a SkyRL training batch dump (pickled torch tensors): trajdocs reads SkyRL's eval dumps "
             "(dumped_evals/global_step_<N>_evals/*.jsonl), not these"),)


def series(match: re.Match) -> str:
    return "skyrl"


def score(value: object) -> float | None:
    """The sample's reward: the score, or for token-level rewards (a list) their sum, as SkyRL's
    `avg_score` counts them (`skyrl/train/generators/utils.py:201-204`)."""
    if isinstance(value, list):
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            total = float(sum(value))
            return total if not math.isnan(total) else None
        return None
    return number(value)


def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    trajectories, records = [], []
    for lineno, obj, _, _ in objects(data, problems, "SkyRL"):
        traj = Trajectory(index=len(trajectories))
        traj.prompt = text_field(obj, "input_prompt")
        traj.pure_generated_text = text_field(obj, "output_response")
        if traj.pure_generated_text is None:
            problems.add(f"line {lineno}: no output_response field")
        traj.reward = score(obj.get("score"))
        extras = obj.get("env_extras")
        traj.accuracy = accuracy(None, obj)
        traj.correct = correctness(traj.accuracy)
        traj.metadata = metadata_except(obj, TEXT_KEYS)
        if extras is not None and not isinstance(extras, dict):
            problems.add(f"line {lineno}: env_extras is not an object")
        trajectories.append(traj)
        records.append(obj)
    if not trajectories:
        raise Unreadable("; ".join(problems) or "no samples in the file")
    if ctx.rule is not None:
        apply_rule(trajectories, records, ctx.rule, problems)
    return trajectories
