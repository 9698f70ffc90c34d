"""LightRFT step files (`TrajectorySaver`): a JSON list of trajectories, with per-token arrays
(`generated_tokens` / `pure_generated_tokens`: text, high_entropy, entropy_score) or, from the
older saver, `<HIGH_ENTROPY>...</HIGH_ENTROPY>` markers inside the response text."""

from __future__ import annotations

import math
import os
import re
from itertools import repeat
from operator import is_, itemgetter
from typing import Any

import orjson

from ..model import ListSummary, Tokens, Trajectory
from .common import (ReadContext, CorrectRule, Meta, Problems, Unreadable, accuracy, aligned, apply_rule, as_text,
                     check_numbers, correctness, decode_error, keys_text, kind, loads, number, with_replacement)

NAME = "lightrft"
# <prefix>_step_<N>.json (prefix defaults to "trajectories"). \Z, not $: a name ending in a
# newline is not the name without it; a prefix may hold any character.
PATH = re.compile(r"(?:(?P<prefix>[^/]+)_)?step_(?P<step>\d+)\.json", re.S)
SUFFIX = ".json"
NAMES_TEXT = ("LightRFT files named <prefix>_step_<N>.json (e.g. "
              "<experiment>/trajectories/trajectories_step_5.json)")
TOKEN_CHANNELS = ("text", "high_entropy", "entropy_score", "logprob (action_log_probs)", "advantage (advantages)")
FIELDS = ("full_sequence", "generated_text", "pure_generated_text", "prompt (from full_sequence)",
          "reward (info.reward)", "accuracy (info.reward_metrics)", "response_length", "images", "metadata")


def series(match: re.Match) -> str:
    """Files of one folder with different prefixes are different experiments."""
    return "json:" + (match.group("prefix") or "")


def read(data: bytes, problems: Problems, ctx: ReadContext) -> list[Trajectory]:
    """The trajectories of one file's bytes; `Unreadable` when they are no JSON at all."""
    try:
        doc = loads_lightrft(data)
    except (ValueError, UnicodeDecodeError) as err:
        doc = with_replacement(data, problems) if isinstance(err, UnicodeDecodeError) else None
        if doc is None:
            raise Unreadable(decode_error(err, data)) from None
    return _read_lightrft(doc, problems, ctx.rule)


MARKER = re.compile(r"<HIGH_ENTROPY>(.*?)</HIGH_ENTROPY>", re.S)
BASE64 = re.compile(r"(?:data:image/[a-z+.-]+;base64,)?[A-Za-z0-9+/=\s]+")
NUMERIC_FIELDS = ("global_step", "experience_index", "sample_in_exp", "policy_entropy", "repeat_score",
                  "reflection_pattern_score", "response_token_count")
NUMERIC_INFO = ("reward", "response_length", "total_length", "kl")
TEXT_FIELDS = ("full_sequence", "generated_text", "pure_generated_text",
               "generated_tokens", "pure_generated_tokens", "image_paths", "images_base64")
META_FIRST = ("global_step", "experience_index", "sample_in_exp", "label", "reference",
              "advantages", "return", "values", "action_log_probs", "policy_entropy",
              "repeat_score", "reflection_pattern_score", "response_token_count")

# --- the parse shortcut ---------------------------------------------------------------------

GEN_OPEN = b'\n    "generated_tokens": [\n'  # a trajectory's keys in json.dump(indent=2) output
PURE_OPEN = b'\n    "pure_generated_tokens": [\n'
FIRST_END = b"\n      }"  # end of an array's first object
GEN_END = b"\n    ],"
COPY_TAG = "trajdocs-copy-"
PURE_CLOSE = b"\n    ]"  # end of pure_generated_tokens' entries, at a trajectory's key depth


def loads_lightrft(data: bytes) -> Any:
    """Parse a LightRFT step file. Guarantee: the result equals `loads(data)` (its plain twin,
    which tests compare it with), and it raises where `loads` raises.

    Shortcut: LightRFT's saver writes `generated_tokens` as its first entry followed by a copy
    of `pure_generated_tokens`, which comes right after it: a third of the file. Where a
    trajectory has both, in that order, `generated_tokens` loses all but its first entry and a
    placeholder before parsing, and is rebuilt as `[first] + pure_generated_tokens` after; but
    only when the cut is proven: each placeholder must come back, in order, as the second and
    last entry of a trajectory's `generated_tokens` (so the bytes before the cut are its first
    entry and the array closes right after), and the bytes cut (less their leading comma) must
    be, byte for byte, the bytes of that trajectory's `pure_generated_tokens` entries in the file,
    which close right after them. Both arrays sit at the same depth of the same object, so the
    same bytes parse to the same entries, whatever the indentation, escapes or numbers inside
    them. Whenever that fails for any trajectory, the whole file is parsed plainly."""
    cuts = _cuts(data) if data.startswith(b"[\n  {") else []
    if not cuts:
        return loads(data)
    tag = COPY_TAG + os.urandom(8).hex()
    parts, pos = [], 0
    for number, (start, end) in enumerate(cuts):
        parts += [data[pos:start], f', "{tag}-{number}"'.encode()]
        pos = end
    parts.append(data[pos:])
    try:
        doc = loads(b"".join(parts))
    except (ValueError, UnicodeDecodeError):
        return loads(data)
    return doc if _restore(doc, data, cuts, tag) else loads(data)


def _cuts(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of `generated_tokens` arrays after their first entry, from the comma to the
    last entry's end, where `pure_generated_tokens` follows (candidates: `_restore` proves them)."""
    cuts, pos = [], 0
    while (key := data.find(GEN_OPEN, pos)) >= 0:
        first = data.find(FIRST_END, key)
        if first < 0:
            break
        start = pos = first + len(FIRST_END)
        if data[start:start + 1] != b",":
            continue  # one entry (immediate end of sequence): nothing repeated
        follower = data.find(PURE_OPEN, start)
        if follower < 0:
            break
        end = follower - len(GEN_END)
        if start < end and data[end:follower] == GEN_END:
            cuts.append((start, end))
            pos = follower
    return cuts


def _restore(doc: Any, data: bytes, cuts: list[tuple[int, int]], tag: str) -> bool:
    """Rebuild each cut `generated_tokens` as [first] + pure_generated_tokens; true only if every
    placeholder came back, in order, as the last of a trajectory's two `generated_tokens`, and
    the bytes cut are "," and then exactly the bytes of that trajectory's pure_generated_tokens
    entries, which the file writes right after the cut (see `loads_lightrft`)."""
    if not isinstance(doc, list):
        return False
    found = 0
    for obj in doc:
        if not isinstance(obj, dict):
            continue
        gen = obj.get("generated_tokens")
        if type(gen) is not list or len(gen) != 2 or type(gen[1]) is not str or not gen[1].startswith(tag):
            continue
        pure = obj.get("pure_generated_tokens")
        if found >= len(cuts) or gen[1] != f"{tag}-{found}" or type(pure) is not list or not pure:
            return False
        # gen[0] was parsed from the very bytes the file has before the cut, and the placeholder
        # closes the array; the pure array opens right after the cut (`_cuts` found PURE_OPEN
        # there) and must hold the same bytes, then close
        start, end = cuts[found]
        entries = end + len(GEN_END) + len(PURE_OPEN) - 1  # the newline after its "["
        length = end - start - 1
        if data[start:start + 1] != b"," or not data.startswith(data[start + 1:end], entries) \
                or not data.startswith(PURE_CLOSE, entries + length):
            return False
        obj["generated_tokens"] = [gen[0]] + pure
        found += 1
    return found == len(cuts)


def _read_lightrft(doc: Any, problems: Problems, rule: "CorrectRule | None" = None) -> list[Trajectory]:
    if isinstance(doc, dict):
        if any(k in doc for k in ("generated_tokens", "pure_generated_text", "generated_text", "global_step")):
            problems.add("top level is one object, expected a list of trajectories: shown as one trajectory")
            doc = [doc]
        else:
            problems.add(f"top level is an object with keys {keys_text(doc)}, expected a list of trajectories")
            return []
    if not isinstance(doc, list):
        problems.add(f"top level is {kind(doc)}, expected a list of trajectories")
        return []
    if not doc:
        problems.add("the file holds an empty list: no trajectories")
    trajectories, records = [], []
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            problems.add(f"trajectory {i}: is {kind(item)}, expected an object")
            continue
        trajectories.append(lightrft_trajectory(i, item, problems))
        records.append(item)
    if rule is not None:
        apply_rule(trajectories, records, rule, problems)
    return trajectories


def lightrft_trajectory(index: int, obj: dict, problems: Problems) -> Trajectory:
    where = f"trajectory {index}"
    traj = Trajectory(index=index)
    for name in ("full_sequence", "generated_text", "pure_generated_text"):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            problems.add(f"{where}: {name} is {kind(value)}, expected text")
            value = as_text(value)
        setattr(traj, name, value)

    pure, gen = obj.get("pure_generated_tokens"), obj.get("generated_tokens")
    if isinstance(gen, list) and gen:
        traj.tokens, traj.prompt_tail = saver_tokens(gen, where, problems)
        if pure is not None and not _same_json(pure, gen[1:]):
            problems.add(f"{where}: pure_generated_tokens is not generated_tokens without its first entry "
                         "(as LightRFT's saver writes it): the tokens are shown from generated_tokens")
    elif isinstance(pure, list):
        traj.tokens = parse_tokens(pure, f"{where}: pure_generated_tokens", problems)
    else:
        for name, value in (("pure_generated_tokens", pure), ("generated_tokens", gen)):
            if value is not None and not isinstance(value, list):
                problems.add(f"{where}: {name} is {kind(value)}, expected a list of token objects")
        marked = traj.pure_generated_text if traj.pure_generated_text is not None else traj.generated_text
        if marked and "<HIGH_ENTROPY>" in marked:
            traj.tokens = tokens_from_markers(marked)
            if traj.pure_generated_text:
                traj.pure_generated_text = MARKER.sub(r"\1", traj.pure_generated_text)
            if traj.generated_text:
                traj.generated_text = MARKER.sub(r"\1", traj.generated_text)

    if traj.full_sequence and traj.pure_generated_text is not None:
        traj.prompt = prompt_of(traj.full_sequence, traj.pure_generated_text)

    if traj.tokens is None and traj.pure_generated_text is None and traj.generated_text is None:
        problems.add(f"{where}: no response (none of pure_generated_tokens, generated_tokens, "
                     "pure_generated_text, generated_text)")
    info = obj.get("info")
    if info is not None and not isinstance(info, dict):
        problems.add(f"{where}: info is {kind(info)}, expected an object")
        info = {"info": info}
    info = info or {}
    check_numbers(obj, NUMERIC_FIELDS, where, "", problems)
    check_numbers(info, NUMERIC_INFO, where, "info.", problems)
    paths, inline = obj.get("image_paths"), obj.get("images_base64")
    if paths is not None:
        if isinstance(paths, list) and all(isinstance(p, str) for p in paths):
            traj.image_files = list(paths)
        else:
            problems.add(f"{where}: image_paths is not a list of paths")
    if inline is not None:
        if isinstance(inline, list) and all(isinstance(p, str) for p in inline):
            bad = [i for i, p in enumerate(inline) if not BASE64.fullmatch(p)]
            if bad:
                problems.add(f"{where}: images_base64[{bad[0]}] is not base64 data, not shown")
            traj.image_data = [p for i, p in enumerate(inline) if i not in bad]
        else:
            problems.add(f"{where}: images_base64 is not a list of base64 strings")
    traj.reward = number(info.get("reward"), obj.get("reward"))
    traj.accuracy = accuracy(info.get("reward_metrics"), info, obj)
    traj.correct = correctness(traj.accuracy)
    if traj.tokens is not None and not traj.tokens.segments:
        for name, key in (("logprob", "action_log_probs"), ("advantage", "advantages")):
            values = aligned(obj.get(key), len(traj.tokens))
            if values is not None:
                traj.token_values[name] = values
    length = number(obj.get("response_token_count"), info.get("response_length"))
    if length is not None and math.isfinite(length):
        traj.response_length = int(length)
    elif traj.tokens is not None and not traj.tokens.segments:
        traj.response_length = len(traj.tokens)

    meta = Meta()
    for key in META_FIRST:
        if key in obj:
            meta.add(key, obj[key])
    for key, value in info.items():
        meta.add(f"info.{key}" if key in obj else str(key), value)
    for key, value in obj.items():
        if key not in TEXT_FIELDS and key not in META_FIRST and key != "info":
            meta.add(str(key), value)
    traj.metadata = meta.fields
    advantage = meta.fields.get("advantages")
    traj.advantage = advantage.mean if isinstance(advantage, ListSummary) else number(advantage)
    return traj


def parse_tokens(items: list, where: str, problems: Problems) -> Tokens:
    """Token objects -> Tokens. Odd entries are kept as text with a problem noted, never dropped."""
    try:  # fast path, loops in C: well-formed token objects, as trainers write them
        texts = list(map(itemgetter("text"), items))
        flags = list(map(is_, map(dict.get, items, repeat("high_entropy")), repeat(True)))
        scores = list(map(dict.get, items, repeat("entropy_score")))
    except (TypeError, KeyError):
        return _parse_odd_tokens(items, where, problems)
    if not set(map(type, texts)) <= {str} or not set(map(type, scores)) <= {float, type(None)}:
        return _parse_odd_tokens(items, where, problems)
    return Tokens(texts, flags, scores, flagged=True)


def saver_tokens(gen: list, where: str, problems: Problems) -> tuple[Tokens, str]:
    """`generated_tokens` as LightRFT's saver writes it -> (response tokens, last prompt token).

    Entry j holds the text of the sequence's token at prompt length - 1 + j (entry 0: the last
    prompt token, then the response) but the flag and score of action j, the entropy of the
    distribution that chose response token j (trajectory_saver.py pairs `action_entropy[j]` with
    the state token before action j). So response token j is entry j + 1's text with entry j's
    flag and score, and the last entry's flag and score belong to the final token (the end of
    sequence), whose text the saver does not write: it becomes an empty last token (`end`)."""
    tokens = parse_tokens(gen, f"{where}: generated_tokens", problems)
    return Tokens(tokens.texts[1:] + [""], tokens.flags, tokens.scores, end=True, flagged=True), tokens.texts[0]


def _same_json(a: Any, b: Any) -> bool:
    if a == b:
        return True
    try:  # NaN is not equal to itself: compare as written
        return orjson.dumps(a) == orjson.dumps(b)
    except (TypeError, orjson.JSONEncodeError):
        return False


UNKNOWN_RUN = re.compile("\ufffd+")
END_OF_TEXT = r"(?:<[^<>\s]{1,40}>|\s)*\Z"  # special tokens (end of sequence, padding) after a response
AFTER_RESPONSE = re.compile(END_OF_TEXT)
SPECIAL_TOKEN = re.compile(r"<\|[^<>\s|]{1,40}\|>")  # <|...|>: decoded as "" with skip_special_tokens
ASSISTANT_STARTS = ("<|im_start|>assistant\n", "<|start_header_id|>assistant<|end_header_id|>\n\n",
                    "<|Assistant|>", "<|assistant|>\n")


def prompt_of(full_sequence: str, response: str) -> str | None:
    """The prompt: `full_sequence` up to where the response starts, or None when that place
    cannot be found for sure. The response must be followed by nothing but special tokens (the
    end of sequence, padding), or start right where the chat template's last assistant header
    ends (LightRFT leaves a response's last token out of its text: with no end of sequence, that
    token's text follows the response in `full_sequence`), also once the `<|...|>` special tokens
    that a decode with skip_special_tokens leaves out of the response are taken out of what
    follows that header. An empty response (an immediate end of sequence) starts where the
    chat template's last assistant header ends. Where the response was joined from tokens decoded
    one by one (marker files), characters split over several byte-level tokens are U+FFFD pieces
    there but whole characters in `full_sequence`: a run of m pieces then stands for 1 to m
    characters, and the place must be unique (or at the end of the assistant header)."""
    if response:
        end = len(full_sequence)
        while (cut := full_sequence.rfind(response, 0, end)) > 0:
            if AFTER_RESPONSE.match(full_sequence, cut + len(response)):
                return full_sequence[:cut]
            end = cut + len(response) - 1
    header = max((full_sequence.rfind(h) + len(h) for h in ASSISTANT_STARTS if h in full_sequence), default=-1)
    if response and header > 0 and (full_sequence.startswith(response, header) or (
            "<|" in full_sequence[header:] and SPECIAL_TOKEN.sub("", full_sequence[header:]).startswith(response))):
        return full_sequence[:header]  # right after the last assistant header; text after it (a cut response's last token)
    if response and "\ufffd" not in response:
        return None
    if not response:
        return full_sequence[:header] if header > 0 and AFTER_RESPONSE.match(full_sequence, header) else None
    pieces, pos = [], 0
    for m in UNKNOWN_RUN.finditer(response):
        pieces += [re.escape(response[pos:m.start()]), f".{{1,{m.end() - m.start()}}}"]
        pos = m.end()
    pieces.append(re.escape(response[pos:]))
    try:
        pattern = re.compile("".join(pieces) + END_OF_TEXT, re.S)
    except (re.error, OverflowError, RecursionError):
        return None
    if header > 0 and pattern.match(full_sequence, header):
        return full_sequence[:header]
    first = pattern.search(full_sequence)
    if first is None or first.start() == 0 or pattern.search(full_sequence, first.start() + 1):
        return None  # not found, or more than one place fits
    return full_sequence[:first.start()]


def _parse_odd_tokens(items: list, where: str, problems: Problems) -> Tokens:
    texts, flags, scores = [], [], []
    odd = odd_scores = 0
    for item in items:
        if isinstance(item, dict):
            text = item.get("text")
            if not isinstance(text, str):
                odd += 1
                text = "" if text is None else as_text(text)
            score = item.get("entropy_score")
            texts.append(text)
            flags.append(item.get("high_entropy") is True)
            numeric = isinstance(score, (int, float)) and not isinstance(score, bool)
            if score is not None and not numeric:
                odd_scores += 1
            scores.append(float(score) if numeric else None)
        else:
            odd += 1
            texts.append(item if isinstance(item, str) else as_text(item))
            flags.append(False)
            scores.append(None)
    if odd:
        problems.add(f"{where}: {odd} of {len(items)} entries are not token objects with a text")
    if odd_scores:
        problems.add(f"{where}: {odd_scores} entropy_score values are not numbers, ignored")
    return Tokens(texts, flags, scores, flagged=True)


def tokens_from_markers(text: str) -> Tokens:
    """Older saver: `<HIGH_ENTROPY>tok</HIGH_ENTROPY>` inline; unmarked runs become one segment each."""
    tokens = Tokens(segments=True, flagged=True)
    pos = 0
    for m in MARKER.finditer(text):
        if m.start() > pos:
            tokens.texts.append(text[pos:m.start()])
            tokens.flags.append(False)
            tokens.scores.append(None)
        tokens.texts.append(m.group(1))
        tokens.flags.append(True)
        tokens.scores.append(None)
        pos = m.end()
    if pos < len(text):
        tokens.texts.append(text[pos:])
        tokens.flags.append(False)
        tokens.scores.append(None)
    return tokens
