"""TRL GRPOTrainer completion logs (`log_completions=True`): one Parquet file per logging step,
`<output_dir>/completions/completions_{step:05d}.parquet`; text only, no per-token data.

Facts (huggingface/trl f2cd5771, trl/trainer/grpo_trainer.py): the folder is made at start
(1173-1174); `log` writes, every `logging_steps` (grpo_config.py 366-383, 972-1003), a pandas
DataFrame of the `_logs` buffers with `to_parquet` (3310-3327): `step` (the global step, every
row), `prompt` and `completion` (`batch_decode(..., skip_special_tokens=True)`: the templated
prompt as text, never a list of messages, in every version that writes Parquet, 2653-2659),
one column per reward function name (its values for each sample: floats, NaN where the function
returned None; pandas stores NaN as null), the `log_extra` columns of reward functions (sorted
by name, any values, 2759-2764), then `advantage` (2757). The buffers are deques of the last
`generation_batch_size` samples (1054-1062); the n completions of a prompt are adjacent. TRL
writes no total reward: the reward it trains on is the sum of the reward columns weighted by
`reward_weights` (a config value not in the file; 528-536, 2683, 2746).

So: every column but prompt and completion is shown as metadata; the trajectory's reward is the
reward function's value when the file has exactly one floating-point column between
`completion` and `advantage` (then it is that function's column), else none (each column is
shown, no sum is made up); samples are grouped by identical prompt.
"""

from __future__ import annotations

import math
import re

from ..model import Trajectory
from .common import CorrectRule, Problems, ReadContext, Unreadable, apply_rule, metadata_except, text_as_written
from .parquet import read_table

NAME = "trl"
PATH = re.compile(r"completions/completions_(?P<step>\d+)\.parquet")
SUFFIX = ".parquet"
NAMES_TEXT = "TRL files named completions/completions_<N>.parquet (e.g. <output_dir>/completions/completions_00010.parquet)"
TOKEN_CHANNELS = ()
FIELDS = ("prompt", "completion (response)", "reward (the one reward function column)", "advantage",
          "reward function and log_extra columns (metadata)", "step")
OWN_COLUMNS = ("step", "prompt", "completion", "advantage")


def series(match: re.Match) -> str:
    return "parquet"


def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    """The completions of one Parquet file's bytes; `Unreadable` when pyarrow is missing or the
    bytes are no complete Parquet file (e.g. still being written)."""
    table = read_table(data)
    names = table.column_names
    if "completion" not in names:
        raise Unreadable(f"no `completion` column: not a TRL completions file (columns: {', '.join(map(repr, names[:12]))})")
    rewards = reward_columns(table)
    reward = rewards[0] if len(rewards) == 1 else None
    records = table.to_pylist()
    trajectories = []
    for index, row in enumerate(records):
        trajectories.append(trl_trajectory(index, row, reward, problems, tuple(rewards) if reward is None else ()))
    if "prompt" not in names:
        problems.add("no `prompt` column: the completions are shown without their prompts")
    if not trajectories:
        problems.add("no completions in the file")
    rule: CorrectRule | None = ctx.rule
    if rule is not None:
        apply_rule(trajectories, records, rule, problems)
    return trajectories


def reward_columns(table) -> list[str]:  # type: ignore[no-untyped-def]
    """The floating-point columns TRL writes between `completion` and `advantage` (the reward
    functions' columns, and log_extra columns that hold floats)."""
    import pyarrow as pa

    names = table.column_names
    start = names.index("completion") + 1
    end = names.index("advantage") if "advantage" in names and names.index("advantage") > start else len(names)
    return [n for n in names[start:end] if n not in OWN_COLUMNS and pa.types.is_floating(table.schema.field(n).type)]


def trl_trajectory(index: int, row: dict, reward: str | None, problems: Problems,
                   rewards: tuple[str, ...] = ()) -> Trajectory:
    traj = Trajectory(index=index)
    prompt, completion = row.get("prompt"), row.get("completion")
    traj.prompt = text_as_written(prompt)
    traj.pure_generated_text = text_as_written(completion)
    if completion is None:
        problems.add(f"row {index}: no completion (null)")
    if reward is not None:
        value = row.get(reward)
        traj.reward = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    else:  # several reward functions and no total in the file: each one shown at the top
        traj.rewards = {name: row.get(name) if isinstance(row.get(name), (int, float)) else None for name in rewards}
    advantage = row.get("advantage")
    if isinstance(advantage, (int, float)) and not isinstance(advantage, bool) and math.isfinite(advantage):
        traj.advantage = float(advantage)
    traj.metadata = metadata_except(row, ("prompt", "completion"))
    return traj
