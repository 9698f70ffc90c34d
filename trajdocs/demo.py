"""Synthetic LightRFT-style runs: realistic in shape, clearly labelled, deterministic per seed.

Nothing here comes from a real model: text is assembled from templates, entropies are drawn
so that sentence starts, numbers and reflection words ("Wait", "Alternatively") fork more often.
"""

from __future__ import annotations

import math
import os
import random
import re
from dataclasses import dataclass

import orjson

PROBLEMS = [
    ("Natalia sold clips to {a} of her friends in April, and then she sold half as many clips in May. "
     "How many clips did Natalia sell altogether in April and May?", lambda a, b: a + a // 2),
    ("A baker makes {a} loaves each morning and {b} each afternoon. How many loaves does the baker make in a week?",
     lambda a, b: 7 * (a + b)),
    ("Tom has {a} marbles. He gives {b} to his sister and then buys twice as many as he has left. "
     "How many marbles does Tom have now?", lambda a, b: 3 * (a - b)),
    ("A train travels {a} km per hour for {b} hours. How far does it travel?", lambda a, b: a * b),
    ("Lena reads {a} pages a day. Her book has {b} pages more than {a} times 10. How many days does she need?",
     lambda a, b: math.ceil((10 * a + b) / a)),
    ("一个班有 {a} 名学生，其中 {b} 名是女生。男生有多少名？", lambda a, b: a - b),
    ("A café sells {a} croissants at 3 € each and {b} crêpes at 5 € each. What is the total revenue in €?",
     lambda a, b: 3 * a + 5 * b),
    ("The sum of two numbers is {a} and their difference is {b}. What is the larger number?",
     lambda a, b: (a + b) // 2),
]
OPENERS = ["Let me work through this step by step.", "Okay, let's think about this carefully.",
           "First, I need to understand what the question is asking."]
STEPS = ["We know that {x} × {y} = {xy}.", "So the first part gives {x} + {y} = {s}.",
         "Next, {s} − {y} = {x}, which matches.", "That means the total is {s}.",
         "Let me compute {x} ÷ 1 = {x} to keep the units straight.",
         "The question says \"{y} more\", so we add {y} to get {s}.",
         "Breaking it down: {x} for the first part and {y} for the second.",
         "Hmm, the numbers are small enough to check by hand: {x}, then {s}."]
REFLECTIONS = ["Wait, let me double-check that.", "Alternatively, we could set up an equation.",
               "Hmm, but is that right? Let me verify.", "Wait — I think I misread the problem.",
               "Let me re-check the arithmetic: {x} + {y} = {s}. ✅"]
CLOSERS = ["Therefore, the answer is \\boxed{{{ans}}}.", "So the final answer is \\boxed{{{ans}}}.",
           "Thus the result is \\boxed{{{ans}}} ≈ {ans}.0"]
TOKEN_PIECE = re.compile(r" ?[A-Za-zÀ-ÿ]+| ?\d| ?[^\sA-Za-zÀ-ÿ\d]|\n+| +")
FORKING = {"Wait", "Alternatively", "Hmm", "But", "So", "Therefore", "Let", "First", "Next", "Thus", "However"}
SYSTEM = "<|im_start|>system\nYou are a helpful assistant. Think step by step.<|im_end|>\n"


@dataclass
class DemoOptions:
    experiments: int = 2
    steps: int = 12
    interval: int = 5
    trajectories: int = 8
    group_size: int = 4
    min_tokens: int = 200
    max_tokens: int = 600
    ratio: float = 0.2
    all_scores: bool = False
    token_lists: bool = True
    seed: int = 0
    names: tuple[str, ...] = ()  # experiment folder names; defaults below


def tokenize(text: str) -> list[str]:
    """BPE-like pieces: words with their leading space, long words split, one digit per token."""
    pieces = []
    for piece in TOKEN_PIECE.findall(text):
        word = piece.strip(" ")
        if len(word) > 7 and word.isalpha():
            cut = len(piece) // 2
            pieces.extend([piece[:cut], piece[cut:]])
        else:
            pieces.append(piece)
    return pieces


def _response(rng: random.Random, problem: int, a: int, b: int, correct: bool, target: int) -> tuple[str, int]:
    answer = PROBLEMS[problem][1](a, b)
    shown = answer if correct else answer + rng.choice([-10, -2, -1, 1, 3, 12])
    x, y = rng.randint(2, 60), rng.randint(2, 40)
    parts = ["<think>\n", rng.choice(OPENERS)]
    while len(tokenize("".join(parts))) < target - 20:
        template = rng.choice(REFLECTIONS) if rng.random() < 0.22 else rng.choice(STEPS)
        sep = "\n\n" if rng.random() < 0.3 else " "
        parts.append(sep + template.format(x=x, y=y, xy=x * y, s=x + y))
        x, y = y + rng.randint(1, 9), rng.randint(2, 40)
    parts.append("\n</think>\n\n" + rng.choice(CLOSERS).format(ans=shown))
    return "".join(parts), answer


def _entropies(rng: random.Random, tokens: list[str], temperature: float) -> list[float]:
    scores, previous = [], ""
    for tok in tokens:
        word = tok.strip()
        base = rng.lognormvariate(-2.2, 1.0)
        if word in FORKING or previous.endswith((".", "\n")):
            base += rng.uniform(0.8, 2.6)
        elif word.isdigit():
            base += rng.uniform(0.2, 1.4)
        scores.append(round(min(base * temperature, 9.5), 4))
        previous = tok
    return scores


def trajectory(rng: random.Random, step: int, exp_index: int, sample: int, problem: int,
               a: int, b: int, p_correct: float, temperature: float, opts: DemoOptions) -> dict:
    correct = rng.random() < p_correct
    target = rng.randint(opts.min_tokens, opts.max_tokens)
    response, answer = _response(rng, problem, a, b, correct, target)
    question = PROBLEMS[problem][0].format(a=a, b=b)
    prompt = f"{SYSTEM}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    tokens = tokenize(response)
    scores = _entropies(rng, tokens, temperature)
    k = max(1, int(len(tokens) * opts.ratio))
    flagged = set(sorted(range(len(tokens)), key=lambda i: -scores[i])[:k])

    def token(i: int, text: str) -> dict:
        obj: dict = {"text": text, "high_entropy": i in flagged}
        if i in flagged or opts.all_scores:
            obj["entropy_score"] = scores[i]
        return obj

    # LightRFT's saver pairs each action's flag and score with the token before it: entry j of
    # generated_tokens has the text of response token j - 1 (entry 0: the prompt's last token)
    # and response token j's flag and score; the last entry has the end of sequence's
    end = {"text": "", "high_entropy": False, **({"entropy_score": 0.0} if opts.all_scores else {})}
    marks = [token(i, t) for i, t in enumerate(tokens)] + [end]
    generated = [{"text": text, **{k: v for k, v in mark.items() if k != "text"}}
                 for text, mark in zip(["\n"] + tokens, marks)]
    reflections = {w: response.count(w) for w in ("Wait", "Alternatively", "Hmm", "re-check")}
    reward = 1.0 if correct else 0.0
    record = {
        "global_step": step,
        "experience_index": exp_index,
        "sample_in_exp": sample,
        "full_sequence": prompt + response + "<|im_end|>",
        "generated_text": "\n" + response,
        "pure_generated_text": response,
        "generated_tokens": generated,
        "pure_generated_tokens": generated[1:],
        "label": "synthetic_math_rule",
        "reference": str(answer),
        "repeat_score": round(rng.uniform(0.0, 0.25), 4),
        "reflection_pattern_score": sum(reflections.values()),
        "reflection_pattern_details": reflections,
        "policy_entropy": round(sum(scores) / len(scores), 4),
        "response_token_count": len(tokens),
        "info": {
            "reward": reward,
            "response_length": len(tokens),
            "total_length": len(tokens) + len(tokenize(prompt)),
            "kl": round(rng.uniform(0.0, 0.02) * step / 10, 5),
            "reward_metrics": {"accuracy": reward, "format": 1.0 if rng.random() < 0.95 else 0.0},
        },
        "has_images": False,
        "num_images": 0,
        "image_paths": None,
        "images_base64": None,
    }
    if opts.token_lists:
        # one per action: the response tokens and the end of sequence
        record["action_log_probs"] = [round(-s * rng.uniform(0.3, 0.7) - rng.uniform(0, 0.05), 4) for s in scores + [0.0]]
    return record


def _group_advantages(group: list[dict], token_lists: bool) -> None:
    rewards = [t["info"]["reward"] for t in group]
    mean = sum(rewards) / len(rewards)
    std = (sum((r - mean) ** 2 for r in rewards) / len(rewards)) ** 0.5
    for t, r in zip(group, rewards):
        adv = round((r - mean) / (std + 1e-6), 4)
        n = t["response_token_count"] + 1  # one per action: the response tokens and the end of sequence
        t["advantages"] = [adv] * n if token_lists else adv
        t["return"] = [adv] * n if token_lists else adv


def write_demo(folder: str, opts: DemoOptions) -> list[str]:
    """Write `opts.experiments` runs under `folder`; returns the step files written."""
    names = ["synthetic-grpo-baseline", "synthetic-grpo-forking-tokens", "synthetic-grpo-long-context",
             "synthetic-ppo-critic"]
    written = []
    for e in range(opts.experiments):
        chosen = opts.names or names
        name = chosen[e] if e < len(chosen) else f"synthetic-run-{e + 1}"
        out = os.path.join(folder, name, "trajectories")
        os.makedirs(out, exist_ok=True)
        rng = random.Random(f"{opts.seed}-{e}-{name}")
        for s in range(1, opts.steps + 1):
            step = s * opts.interval
            progress = s / opts.steps
            p_correct = min(0.92, 0.25 + progress * (0.45 + 0.15 * e))
            temperature = 1.25 - 0.45 * progress * (1 - 0.5 * (e % 2))
            records: list[dict] = []
            group_size = max(1, opts.group_size)
            for g in range(math.ceil(opts.trajectories / group_size)):
                problem = (s * 3 + g * 5 + e) % len(PROBLEMS)
                a, b = 10 + (problem * 7 + g) % 50, 2 + (problem * 3) % 9
                group = [trajectory(rng, step, g, i, problem, a, b, p_correct, temperature, opts)
                         for i in range(min(group_size, opts.trajectories - len(records)))]
                _group_advantages(group, opts.token_lists)
                records.extend(group)
            path = os.path.join(out, f"trajectories_step_{step}.json")
            with open(path, "wb") as f:
                f.write(orjson.dumps(records, option=orjson.OPT_INDENT_2))
            written.append(path)
    return written
