"""TRL GRPOTrainer completion logs as `log_completions=True` writes them (see `formats/trl.py` for
the facts and source lines): `<output_dir>/completions/completions_{step:05d}.parquet` every
`logging_steps` (here `--interval`) steps, each holding the last generation batch: `step`,
`prompt` and `completion` (decoded without special tokens), one float column per reward function
(`accuracy_reward`, `format_reward`; NaN where a function returned None, stored as null as pandas
stores NaN), a `log_extra` column (`pred`), and `advantage` (TRL's group-normalised advantage of
the weighted sum with all weights 1, float32 values; 0 for a sample no function scored).

TRL writes with `pandas.DataFrame(...).to_parquet(path)`, and so does this writer where pandas is
installed. Without pandas the table is written with pyarrow in the schema pandas (2.x) gives such
a frame: int64, string and double columns, null for NaN, the `pandas` schema metadata with a range
index, no index column."""

from __future__ import annotations

import json
import math
import os

from . import Writer

REWARDS = ("accuracy_reward", "format_reward")


def write(folder: str, name: str, opts, codec, rng) -> list[str]:  # type: ignore[no-untyped-def]
    from . import PROBLEMS, f32, rollout  # the package is loaded by now (this module is loaded inside it)

    out = os.path.join(folder, name, "completions")
    os.makedirs(out, exist_ok=True)
    written = []
    group_size = max(1, opts.group_size)
    for s in range(1, opts.steps + 1):
        step = s * opts.interval
        progress = s / max(1, opts.steps)
        rows: list[dict] = []
        for g in range(math.ceil(opts.trajectories / group_size)):
            problem = (s * 5 + g * 3) % len(PROBLEMS)
            a, b = 12 + (problem * 5 + g + s) % 40, 3 + (problem + s) % 7
            question = PROBLEMS[problem][0].format(a=a, b=b)
            for k in range(min(group_size, opts.trajectories - len(rows))):
                r = rollout(rng, codec, opts, question, PROBLEMS[problem][1](a, b), min(0.9, 0.2 + progress * 0.5), 1.0)
                accuracy = 1.0 if r.accuracy > 0 else 0.0
                format_ok: float | None = 1.0 if r.format_ok > 0 else 0.0
                if s % max(1, opts.special_every) == 0 and g == 0 and k == 0:
                    accuracy, format_ok = math.nan, None  # no function scored it: NaN, advantage 0
                elif rng.random() < 0.15:
                    format_ok = None  # the format function returned None: NaN
                rows.append({"prompt": codec.decode(r.prompt_ids), "completion": codec.decode(r.response_ids),
                             "accuracy_reward": accuracy, "format_reward": math.nan if format_ok is None else format_ok,
                             "pred": r.pred, "group": g})
        advantages = group_advantages(rows, f32)
        table = {"step": [step] * len(rows), "prompt": [r["prompt"] for r in rows],
                 "completion": [r["completion"] for r in rows]}
        for reward in REWARDS:
            table[reward] = [r[reward] for r in rows]
        table["pred"] = [r["pred"] for r in rows]
        table["advantage"] = advantages
        path = os.path.join(out, f"completions_{step:05d}.parquet")
        write_frame(path, table)
        written.append(path)
    return written


def group_advantages(rows: list[dict], f32) -> list[float]:  # type: ignore[no-untyped-def]
    """sum_then_normalize with scale_rewards "group": (reward - group nanmean) / (group nanstd + 1e-4),
    reward = nansum of the columns (NaN when all are NaN), NaN advantages -> 0; float32 values."""
    totals = []
    for r in rows:
        values = [r[k] for k in REWARDS if not math.isnan(r[k])]
        totals.append(sum(values) if values else math.nan)
    out = []
    for i, r in enumerate(rows):
        members = [totals[j] for j, other in enumerate(rows) if other["group"] == r["group"] and not math.isnan(totals[j])]
        mean = sum(members) / len(members) if members else math.nan
        std = math.sqrt(sum((v - mean) ** 2 for v in members) / (len(members) - 1)) if len(members) > 1 else math.nan
        value = (totals[i] - mean) / (std + 1e-4)
        out.append(0.0 if math.isnan(value) else f32(value))
    return out


def write_frame(path: str, table: dict) -> None:
    """`pandas.DataFrame(table).to_parquet(path)`; without pandas, what it writes (module docstring)."""
    try:
        import pandas
    except ImportError:
        pandas = None
    if pandas is not None:
        pandas.DataFrame(table).to_parquet(path)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, fields, columns = [], [], []
    for key, values in table.items():
        if all(isinstance(v, str) for v in values):
            kind, pandas_type, numpy_type = pa.string(), "unicode", "object"
        elif all(isinstance(v, int) for v in values):
            kind, pandas_type, numpy_type = pa.int64(), "int64", "int64"
        else:
            kind, pandas_type, numpy_type = pa.float64(), "float64", "float64"
            values = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
        arrays.append(pa.array(values, type=kind))
        fields.append(pa.field(key, kind))
        columns.append({"name": key, "field_name": key, "pandas_type": pandas_type, "numpy_type": numpy_type,
                        "metadata": None})
    n = len(next(iter(table.values())))
    meta = {"index_columns": [{"kind": "range", "name": None, "start": 0, "stop": n, "step": 1}],
            "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                                "metadata": {"encoding": "UTF-8"}}],
            "columns": columns, "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": "2.2.3"}
    schema = pa.schema(fields, metadata={b"pandas": json.dumps(meta).encode()})
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)


WRITERS = {"trl": Writer("TRL GRPOTrainer completions/completions_<step>.parquet (log_completions=True)",
                         "trl-grpo-gsm8k", write)}
