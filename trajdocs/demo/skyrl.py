"""SkyRL evaluation dumps, written as `dump_per_dataset_eval_results` writes them (see
`trajdocs/formats/skyrl.py` for the facts and where they are in SkyRL's code): every evaluation
(global step 0 before training, then every `eval_interval` steps and the last) gets
`{export_path}/dumped_evals/global_step_{N}_evals/` with one JSONL file per data source ("/"
replaced by "_") and `aggregated_results.jsonl`; the training batch dump is a pickle (one is
written when asked, as a file trajdocs must not read)."""

from __future__ import annotations

import json
import os

from . import Writer  # (defined before the package imports its writer modules)

DATA_SOURCES = ("openai/gsm8k", "math500")


def write(folder: str, name: str, opts, codec, rng) -> list[str]:  # type: ignore[no-untyped-def]
    from . import PROBLEMS, f32, rollout
    export = os.path.join(folder, name)
    written: list[str] = []
    n = max(1, opts.group_size)  # eval_n_samples_per_prompt
    evals = sorted({0, *range(4, opts.steps + 1, 4), opts.steps})
    for step in evals:
        out = os.path.join(export, "dumped_evals", f"global_step_{step}_evals")
        os.makedirs(out, exist_ok=True)
        metrics: dict = {}
        for d, source in enumerate(DATA_SOURCES):
            lines, scores = [], []
            for p in range(max(1, opts.trajectories // (n * len(DATA_SOURCES)))):
                problem = (p * 3 + d * 2) % len(PROBLEMS)
                a, b = 12 + (problem * 5 + p) % 40, 3 + (problem + d) % 7
                answer = PROBLEMS[problem][1](a, b)
                for _ in range(n):
                    r = rollout(rng, codec, opts, PROBLEMS[problem][0].format(a=a, b=b), answer,
                                min(0.9, 0.2 + 0.5 * step / max(1, opts.steps)), 1.0)
                    score = f32(r.accuracy)
                    scores.append(score)
                    stop = "stop" if r.response_ids[-1] == codec.eos else "length"
                    extras = {"data_source": source, "reward_spec": {"method": "rule", "ground_truth": str(answer)},
                              "extra_info": {"split": "test", "index": p}}
                    entry = {"input_prompt": codec.decode(r.prompt_ids, skip_special=False),
                             "output_response": codec.decode(r.response_ids, skip_special=False),
                             "score": score, "stop_reason": stop, "env_class": "gsm8k", "env_extras": extras,
                             "data_source": source}
                    lines.append(json.dumps(entry, ensure_ascii=False) + "\n")
            path = os.path.join(out, source.replace("/", "_") + ".jsonl")
            with open(path, "w", encoding="utf-8") as f:
                f.writelines(lines)
            written.append(path)
            metrics[f"eval/{source.replace('/', '_')}/avg_score"] = sum(scores) / len(scores)
        metrics["eval/all/avg_score"] = sum(metrics.values()) / len(metrics)
        with open(os.path.join(out, "aggregated_results.jsonl"), "w", encoding="utf-8") as f:
            f.write(json.dumps(metrics, ensure_ascii=False) + "\n")
    return written


WRITERS = {"skyrl": Writer("SkyRL dumped_evals/ evaluation dumps (trainer.dump_eval_results)", "skyrl-gsm8k-grpo",
                           write)}
