"""Read step files of every supported format into the data model, never raising on bad input."""

from __future__ import annotations

import json
import math
import os
import re
import stat
from itertools import repeat
from operator import is_, itemgetter
from dataclasses import dataclass
from typing import Any

import orjson

from .model import ListSummary, MetaValue, StepData, Tokens, Trajectory
from .text import counted

FORMATS = ("auto", "lightrft", "verl")
MAX_PROBLEMS = 20
MAX_META_FIELDS = 200
MAX_META_DEPTH = 4
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


class Problems(list):
    """Located problem messages, capped so one broken file cannot flood the log."""

    def add(self, message: str) -> None:
        if len(self) < MAX_PROBLEMS:
            self.append(message)
        elif len(self) == MAX_PROBLEMS:
            self.append("further problems not listed")


def _int_literal(digits: str) -> int | str:
    """An integer beyond any float (which no statistic can use, and which Python cannot even print
    past 4300 digits) stays its digits, shown as written."""
    return int(digits) if len(digits) <= 300 else digits


def loads(data: bytes | str) -> Any:
    """orjson, falling back to the stdlib for the NaN/Infinity literals Python's json writes (and
    integers beyond 64 bits)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data, parse_int=_int_literal)
        except RecursionError:
            raise ValueError("objects nested too deeply to read") from None


def _decode_error(err: Exception, data: bytes) -> str:
    if isinstance(err, json.JSONDecodeError):
        where = f"line {err.lineno} column {err.colno}"
        if err.pos >= len(err.doc.rstrip()):
            return f"invalid JSON: unexpected end of file at {where} (the file may still be being written)"
        return f"invalid JSON at {where}: {err.msg}"
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text (byte {err.start})"
    return f"cannot parse: {err}"


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _first_bad_byte(data: bytes) -> str:
    """Where the first byte that is not UTF-8 sits, for a message ("byte 55, line 3")."""
    try:
        data.decode("utf-8")
        return ""
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        return f"byte {err.start} (line {line})"


def _with_replacement(data: bytes, problems: Problems):  # type: ignore[no-untyped-def]
    """A document whose bytes are not all UTF-8, read with each bad byte as U+FFFD (a problem
    names the first); None when it is no JSON even so. Only after strict decoding failed."""
    try:
        doc = loads(data.decode("utf-8", "replace"))
    except ValueError:
        return None
    problems.add(f"{_first_bad_byte(data)} and any further bytes that are not UTF-8 text are shown as "
                 "\ufffd (U+FFFD)")
    return doc


def detect_format(path: str) -> str:
    return "verl" if path.endswith(".jsonl") else "lightrft"


MAX_FILE_BYTES = 2 * 2 ** 30  # default cap on a step file's size (the `max_file_mb` option)


def read_step(path: str, fmt: str = "auto", max_bytes: int = MAX_FILE_BYTES,
              rule: "CorrectRule | None" = None) -> StepData:
    """Never raises: whatever goes wrong becomes a problem or the reason the file is unreadable.
    Only regular files of at most `max_bytes` are read (a FIFO would wait forever, a link to
    /dev/zero never end). `rule` (the `correct` option) decides the correct / incorrect badges
    where set."""
    try:
        return _read_step(path, fmt, max_bytes, rule)
    except Exception as err:  # noqa: BLE001 - one odd file must not stop the build
        return StepData(unreadable=f"could not be read ({type(err).__name__}: {err})")


def read_regular_file(path: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most `max_bytes`; ValueError (saying why) for anything
    else, found without waiting (a FIFO opens without blocking) or reading past the cap."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file (a FIFO, device or socket): not read")
        if st.st_size > max_bytes:
            raise ValueError(f"{st.st_size / 2 ** 20:,.0f} MB, over the {max_bytes / 2 ** 20:,.0f} MB "
                             "size cap (the trajdocs option `max_file_mb`): not read")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"grew past the {max_bytes / 2 ** 20:,.0f} MB size cap (the trajdocs option "
                         "`max_file_mb`) while being read: not read")
    return data


def _read_step(path: str, fmt: str, max_bytes: int = MAX_FILE_BYTES, rule: "CorrectRule | None" = None) -> StepData:
    result = StepData()
    try:
        data = read_regular_file(path, max_bytes)
    except OSError as err:
        result.unreadable = f"cannot read file: {err.strerror or err}"
        return result
    except ValueError as err:
        result.unreadable = str(err)
        return result
    if not data.strip():
        result.unreadable = "empty file (the trainer may not have written it yet)"
        return result
    if fmt == "auto":
        fmt = detect_format(path)
    problems = Problems()
    if fmt == "verl":
        result.trajectories = _read_verl(data, problems, rule)
    else:
        try:
            doc = loads_lightrft(data)
        except (ValueError, UnicodeDecodeError) as err:
            doc = _with_replacement(data, problems) if isinstance(err, UnicodeDecodeError) else None
            if doc is None:
                result.unreadable = _decode_error(err, data)
                return result
        result.trajectories = _read_lightrft(doc, problems, rule)
    _check_images(result.trajectories, os.path.dirname(path), problems)
    result.problems = list(problems)
    return result


# --- LightRFT -------------------------------------------------------------------------------

GEN_OPEN = b'\n    "generated_tokens": [\n'  # a trajectory's keys in json.dump(indent=2) output
PURE_OPEN = b'\n    "pure_generated_tokens": [\n'
FIRST_END = b"\n      }"  # end of an array's first object
GEN_END = b"\n    ],"
COPY_TAG = "trajdocs-copy-"
WRAP_HEAD, WRAP_TAIL = b'[\n  {\n    "k": [', b"\n    ]\n  }\n]"  # a list at a trajectory's key depth


def loads_lightrft(data: bytes) -> Any:
    """Parse a LightRFT step file. Guarantee: the result equals `loads(data)` (its plain twin,
    which tests compare it with), and it raises where `loads` raises.

    Shortcut: LightRFT's saver writes `generated_tokens` as its first entry followed by a copy
    of `pure_generated_tokens`, which comes right after it: a third of the file. Where a
    trajectory has both, in that order, `generated_tokens` loses all but its first entry and a
    placeholder before parsing, and is rebuilt as `[first] + pure_generated_tokens` after; but
    only when the cut is proven: each placeholder must come back, in order, as the second and
    last entry of a trajectory's `generated_tokens` (so the bytes before the cut are its first
    entry and the array closes right after), and the bytes cut must equal orjson's indent-2
    serialisation of that trajectory's parsed `pure_generated_tokens` entries (the layout of
    Python's json.dump with indent=2), byte for byte. Whenever that fails for any trajectory (other indentation,
    ensure_ascii escapes, a float orjson writes differently, NaN, arrays that differ), the whole
    file is parsed plainly."""
    cuts = _cuts(data) if data.startswith(b"[\n  {") else []
    if not cuts:
        return loads(data)
    tag = COPY_TAG + os.urandom(8).hex()
    parts, pos = [], 0
    for number, (start, end) in enumerate(cuts):
        parts += [data[pos:start], f', "{tag}-{number}"'.encode()]
        pos = end
    parts.append(data[pos:])
    cut = b"".join(parts)
    try:
        doc, exact = orjson.loads(cut), True
    except orjson.JSONDecodeError:
        try:
            doc, exact = loads(cut), False  # the stdlib's NaN has no exact orjson serialisation
        except (ValueError, UnicodeDecodeError):
            return loads(data)
    return doc if _restore(doc, data, cuts, tag, exact) else loads(data)


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


def _restore(doc: Any, data: bytes, cuts: list[tuple[int, int]], tag: str, exact: bool) -> bool:
    """Rebuild each cut `generated_tokens` as [first] + pure_generated_tokens; true only if every
    placeholder came back, in order, as the last of a trajectory's two `generated_tokens`, and
    the bytes cut are exactly "," and that trajectory's pure_generated_tokens entries serialised."""
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
        # closes the array: the cut bytes must be "," and pure_generated_tokens' entries exactly,
        # serialised at the depth they have in the file
        try:
            rest = orjson.dumps([{"k": pure}], option=orjson.OPT_INDENT_2)[len(WRAP_HEAD):-len(WRAP_TAIL)]
        except (TypeError, orjson.JSONEncodeError):
            return False
        if not exact and (b": null" in rest or b" null," in rest or b" null\n" in rest or rest.endswith(b" null")):
            return False  # orjson writes NaN and infinities as null: no proof
        start, end = cuts[found]
        if end - start - 1 != len(rest) or not data.startswith(rest, start + 1):
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
            problems.add(f"top level is an object with keys {_keys(doc)}, expected a list of trajectories")
            return []
    if not isinstance(doc, list):
        problems.add(f"top level is {_kind(doc)}, expected a list of trajectories")
        return []
    if not doc:
        problems.add("the file holds an empty list: no trajectories")
    trajectories, records = [], []
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            problems.add(f"trajectory {i}: is {_kind(item)}, expected an object")
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
            problems.add(f"{where}: {name} is {_kind(value)}, expected text")
            value = _as_text(value)
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
                problems.add(f"{where}: {name} is {_kind(value)}, expected a list of token objects")
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
        problems.add(f"{where}: info is {_kind(info)}, expected an object")
        info = {"info": info}
    info = info or {}
    _check_numbers(obj, NUMERIC_FIELDS, where, "", problems)
    _check_numbers(info, NUMERIC_INFO, where, "info.", problems)
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
    traj.reward = _number(info.get("reward"), obj.get("reward"))
    traj.accuracy = accuracy(info.get("reward_metrics"), info, obj)
    traj.correct = correctness(traj.accuracy)
    if traj.tokens is not None and not traj.tokens.segments:
        for name, key in (("logprob", "action_log_probs"), ("advantage", "advantages")):
            values = _aligned(obj.get(key), len(traj.tokens))
            if values is not None:
                traj.token_values[name] = values
    length = _number(obj.get("response_token_count"), info.get("response_length"))
    if length is not None and math.isfinite(length):
        traj.response_length = int(length)
    elif traj.tokens is not None and not traj.tokens.segments:
        traj.response_length = len(traj.tokens)

    meta = _Meta()
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
    traj.advantage = advantage.mean if isinstance(advantage, ListSummary) else _number(advantage)
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
    return Tokens(texts, flags, scores)


def saver_tokens(gen: list, where: str, problems: Problems) -> tuple[Tokens, str]:
    """`generated_tokens` as LightRFT's saver writes it -> (response tokens, last prompt token).

    Entry j holds the text of the sequence's token at prompt length - 1 + j (entry 0: the last
    prompt token, then the response) but the flag and score of action j, the entropy of the
    distribution that chose response token j (trajectory_saver.py pairs `action_entropy[j]` with
    the state token before action j). So response token j is entry j + 1's text with entry j's
    flag and score, and the last entry's flag and score belong to the final token (the end of
    sequence), whose text the saver does not write: it becomes an empty last token (`end`)."""
    tokens = parse_tokens(gen, f"{where}: generated_tokens", problems)
    return Tokens(tokens.texts[1:] + [""], tokens.flags, tokens.scores, end=True), tokens.texts[0]


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
                text = "" if text is None else _as_text(text)
            score = item.get("entropy_score")
            texts.append(text)
            flags.append(item.get("high_entropy") is True)
            numeric = isinstance(score, (int, float)) and not isinstance(score, bool)
            if score is not None and not numeric:
                odd_scores += 1
            scores.append(float(score) if numeric else None)
        else:
            odd += 1
            texts.append(item if isinstance(item, str) else _as_text(item))
            flags.append(False)
            scores.append(None)
    if odd:
        problems.add(f"{where}: {odd} of {len(items)} entries are not token objects with a text")
    if odd_scores:
        problems.add(f"{where}: {odd_scores} entropy_score values are not numbers, ignored")
    return Tokens(texts, flags, scores)


def tokens_from_markers(text: str) -> Tokens:
    """Older saver: `<HIGH_ENTROPY>tok</HIGH_ENTROPY>` inline; unmarked runs become one segment each."""
    tokens = Tokens(segments=True)
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


# --- verl -----------------------------------------------------------------------------------

def _read_verl(data: bytes, problems: Problems, rule: "CorrectRule | None" = None) -> list[Trajectory]:
    trajectories, records = [], []
    if data[:2] in UTF16_BOMS:  # a UTF-16 file (re-saved by an editor): verl writes UTF-8
        try:
            data = data.decode("utf-16").encode("utf-8", "surrogatepass")
            problems.add("the file is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8 as "
                         "verl writes it: read as UTF-16")
        except UnicodeDecodeError:
            pass  # then each line says what is wrong with it
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = loads(line)
        except (ValueError, UnicodeDecodeError) as err:
            if line.lstrip()[:2] in UTF16_BOMS or line.lstrip()[:1] == b"\x00":
                problems.add(f"line {lineno}: UTF-16 text (a UTF-16 byte-order mark or zero bytes), not UTF-8 "
                             "as verl writes it: not read; save the file as UTF-8")
                continue
            if isinstance(err, UnicodeDecodeError) or _first_bad_byte(line):
                try:
                    obj = loads(line.decode("utf-8", "replace"))
                except ValueError:
                    obj = None
                if isinstance(obj, dict):
                    problems.add(f"line {lineno}: {_first_bad_byte(line).split(' (')[0]} of the line and any "
                                 "further bytes that are not UTF-8 text are shown as \ufffd (U+FFFD)")
                    trajectories.append(verl_trajectory(len(trajectories), obj, problems))
                    records.append(obj)
                    continue
            last = lineno == data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
            hint = " (the file may still be being written)" if last and not data.endswith(b"\n") else ""
            detail = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
            problems.add(f"line {lineno}: invalid JSON: {detail}{hint}")
            continue
        if not isinstance(obj, dict):
            problems.add(f"line {lineno}: is {_kind(obj)}, expected an object")
            continue
        trajectories.append(verl_trajectory(len(trajectories), obj, problems))
        records.append(obj)
    if not trajectories and not problems:
        problems.add("no samples in the file")
    if rule is not None:
        apply_rule(trajectories, records, rule, problems)
    return trajectories


def verl_trajectory(index: int, obj: dict, problems: Problems) -> Trajectory:
    traj = Trajectory(index=index)
    prompt, output = obj.get("input"), obj.get("output")
    traj.prompt = prompt if prompt is None or isinstance(prompt, str) else _as_text(prompt)
    traj.pure_generated_text = output if output is None or isinstance(output, str) else _as_text(output)
    if output is None:
        problems.add(f"sample {index}: no output field")
    traj.reward = _number(obj.get("score"), obj.get("reward"))
    traj.accuracy = accuracy(None, obj)
    traj.correct = correctness(traj.accuracy)
    meta = _Meta()
    for key, value in obj.items():
        if key not in ("input", "output"):
            meta.add(str(key), value)
    traj.metadata = meta.fields
    return traj


# --- helpers --------------------------------------------------------------------------------

def _check_numbers(obj: dict, keys: tuple[str, ...], where: str, prefix: str, problems: Problems) -> None:
    for key in keys:
        value = obj.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, list))):
            problems.add(f"{where}: {prefix}{key} is {_kind(value)}, expected a number")


def _check_images(trajectories: list[Trajectory], folder: str, problems: Problems) -> None:
    """Keep only image paths that stay inside the step file's folder and exist."""
    for traj in trajectories:
        kept = []
        for rel in traj.image_files:
            norm = os.path.normpath(rel.replace("\\", "/"))
            if os.path.isabs(norm) or norm.startswith(".."):
                problems.add(f"trajectory {traj.index}: image path {rel!r} leaves the run folder, not shown")
            elif not os.path.isfile(os.path.join(folder, norm)):
                problems.add(f"trajectory {traj.index}: image {rel!r} not found")
            else:
                kept.append(norm.replace(os.sep, "/"))
        traj.image_files = kept


class _Meta:
    """Flattens nested metadata into dotted keys; numeric lists become summaries."""

    def __init__(self) -> None:
        self.fields: dict[str, MetaValue] = {}
        self.dropped = 0

    def add(self, key: str, value: Any, depth: int = 0) -> None:
        if isinstance(value, dict):
            if not value:
                self._put(key, "{}")
            elif depth >= MAX_META_DEPTH:
                self._put(key, _as_text(value))
            else:
                for k, v in value.items():
                    self.add(f"{key}.{k}", v, depth + 1)
        elif isinstance(value, list):
            self._put(key, summarize_list(value))
        else:
            self._put(key, value)

    def _put(self, key: str, value: MetaValue) -> None:
        if len(self.fields) < MAX_META_FIELDS:
            self.fields[key] = value
        else:
            self.dropped += 1
            self.fields["…"] = f"{self.dropped} more fields not shown"


SHORT_LIST = 8  # numeric lists up to this long are shown value by value


def summarize_list(values: list) -> MetaValue:
    if len(values) <= 8 and all(v is None or isinstance(v, (str, bool)) for v in values):
        return _as_text(values)
    if values:
        try:
            total = sum(values)  # TypeError for anything but numbers
        except TypeError:
            total = math.nan
        if math.isfinite(total):  # then no value is NaN or infinite
            return ListSummary(len(values), total / len(values), float(min(values)), float(max(values)),
                               values=tuple(values) if len(values) <= SHORT_LIST else ())
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    finite = [v for v in numbers if math.isfinite(v)]
    return ListSummary(
        length=len(values),
        mean=sum(finite) / len(finite) if finite else None,
        min=min(finite) if finite else None,
        max=max(finite) if finite else None,
        non_numeric=len(values) - len(numbers),
    )


ACCURACY_KEYS = ("acc", "accuracy", "correct", "is_correct")


def accuracy(reward_metrics: Any, *sources: Any) -> float | None:
    """This trajectory's accuracy: the first of `acc`, `accuracy`, `correct`, `is_correct` (true /
    false or a number) in `reward_metrics` (where any `accuracy...` name counts too) or in
    `sources`. Only single values: a list (LightRFT writes the whole micro-batch's
    `reward_metrics` on each sample) is not this trajectory's."""
    if isinstance(reward_metrics, dict):
        names = list(ACCURACY_KEYS) + sorted(k for k in reward_metrics if isinstance(k, str)
                                            and k.startswith("accuracy") and k != "accuracy")
        value = _first_scalar(reward_metrics, names)
        if value is not None:
            return value
    for source in sources:
        if isinstance(source, dict):
            value = _first_scalar(source, ACCURACY_KEYS)
            if value is not None:
                return value
    return None


def _first_scalar(source: dict, names) -> float | None:
    for key in names:
        value = source.get(key)
        if isinstance(value, (bool, int, float)) and math.isfinite(value):
            return float(value)
    return None


def correctness(acc: float | None) -> bool | None:
    """Right (1 or true) or wrong (0 or false); any other accuracy is no verdict."""
    return None if acc not in (0.0, 1.0) else acc == 1.0


@dataclass(frozen=True)
class CorrectRule:
    """The `correct` option: a trajectory is correct when the value at `field` (a dotted path
    in the record as written, e.g. `info.reward_metrics.accuracy_reward`) is true, or a number
    at least `min`."""

    field: str
    min: float = 1.0

    def verdict(self, obj: dict) -> tuple[bool | None, str]:
        """(correct or not, "") or (None, why there is no verdict)."""
        value: Any = obj
        for part in self.field.split("."):
            if not isinstance(value, dict) or part not in value:
                return None, "missing"
            value = value[part]
        if isinstance(value, bool):
            return value, ""
        if isinstance(value, (int, float)) and math.isfinite(value):
            return value >= self.min, ""
        return None, _kind(value) if not isinstance(value, float) else "not a finite number"


def apply_rule(trajectories: list[Trajectory], records: list[dict], rule: CorrectRule, problems: Problems) -> None:
    """Badges from the user's rule, replacing what the file's own fields said."""
    misses: dict[str, list[int]] = {}
    for traj, obj in zip(trajectories, records):
        traj.correct, why = rule.verdict(obj)
        traj.accuracy = None if traj.correct is None else float(traj.correct)
        if why:
            misses.setdefault(why, []).append(traj.index)
    for why, indices in misses.items():
        what = why if why in ("missing", "not a finite number") else f"{why}, not true / false or a number"
        problems.add(f"correct rule: {rule.field} is {what} in {counted(len(indices), 'trajectory', 'trajectories')} "
                     f"({', '.join(map(str, indices[:5]))}{', ...' if len(indices) > 5 else ''}): no badge")


def _aligned(values: Any, n: int) -> list | None:
    """A per-token list matched to n response tokens (a leading entry for the last prompt token
    is dropped); None when it is no list or does not match in length."""
    if not isinstance(values, list) or len(values) not in (n, n + 1) or n == 0:
        return None
    return values[len(values) - n:]  # packing them for the page rejects anything but numbers


def _number(*candidates: Any) -> float | None:
    for value in candidates:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            return float(value[-1])  # per-token list: the sequence-level value sits on the last token
    return None


def _as_text(value: Any, limit: int = 10_000) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value) if not isinstance(value, (dict, list)) else f"<{_kind(value)} nested too deeply>"
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _keys(obj: dict) -> str:
    keys = list(obj)[:5]
    return ", ".join(repr(k) for k in keys) + (", ..." if len(obj) > 5 else "")
