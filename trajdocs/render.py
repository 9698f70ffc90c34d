"""HTML fragments for step, experiment and overview pages. Every text from a file goes through `esc`."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import struct
from dataclasses import astuple, dataclass
from html import escape
from itertools import compress, count, repeat
from operator import is_not, or_
from typing import Sequence, Union
from urllib.parse import quote

from .charts import bar_chart
from .formats import CorrectRule, ReadContext
from .tokenizer import NO_TOKENIZER_NOTE
from .model import CHANNELS, Experiment, ListSummary, MetaValue, StepData, StepSummary, Tokens, Trajectory, Turn
from .stats import (HISTOGRAM_WIDTH, TokenStats, finite_mean, group_trajectories, trajectory_stats,
                    trajectory_table)
from .text import (DASH, attr, counted, esc, esc_breakable, fmt_number, fmt_ratio, fmt_stat, name_html, needs_escape,
                   unshowable)

TOGGLES = (  # (key, label, on by default) — the seed viewer's display options
    ("scores", "Entropy score", True),
    ("meta", "All metadata", False),  # off: each trajectory's fields one click away
    ("stats", "Statistics", True),
    ("gen", "generated_text", False),
    ("pure", "pure_generated_text", False),
)


@dataclass(frozen=True)
class RenderOptions:
    per_page: int = 50  # trajectories per step page (a prompt group is never split)
    max_tokens: int = 3000  # tokens shown before "show all"; the rest is in the page, one click away
    asset_base: str = "../"  # from a step page to its experiment folder
    base_dir: str = ""  # paths shown on pages are relative to this folder (mkdocs.yml's)
    max_file_bytes: int = 2 * 2 ** 30  # step files larger than this are not read
    max_text: int = 1_000_000  # characters of one text shown on a page; the full text is downloadable
    correct_field: str = ""  # the `correct` option: badges from this field of each record ...
    correct_min: float = 1.0  # ... true, or a number at least this
    tokenizer: str = ""  # the `tokenizer` option: a tokenizer.json or model folder, to decode token ids
    mapping: str = ""  # the `mapping` option (fields of a generic file), as JSON text

    def key(self) -> str:
        """Every field, in order (so a new option can never be left out of the cache key)."""
        return repr(astuple(self))

    def correct_rule(self) -> Union[CorrectRule, None]:
        return CorrectRule(self.correct_field, self.correct_min) if self.correct_field else None

    def read_context(self) -> ReadContext:
        return ReadContext(self.correct_rule(), self.tokenizer, self.mapping)

    def shown_path(self, path: str) -> str:
        """A file's path as pages show it: never the build machine's absolute path."""
        return os.path.relpath(path, self.base_dir) if self.base_dir else os.path.basename(path)


def fmt_value(value: MetaValue) -> str:
    """Metadata value as escaped HTML."""
    if isinstance(value, ListSummary):
        if value.values:
            shown = ", ".join(fmt_number(v) for v in value.values)
            return f'<span class="td-list">{esc(f"list of {value.length}: {shown}")}</span>'
        parts = [f"list of {value.length}"]
        if value.mean is not None:
            parts.append(f"mean {fmt_number(value.mean)}, min {fmt_number(value.min)}, max {fmt_number(value.max)}")
        if value.non_numeric:
            parts.append(f"{value.non_numeric} non-numeric")
        return f'<span class="td-list">{esc("; ".join(parts))}</span>'
    if value is None:
        return '<span class="td-null">null</span>'
    if isinstance(value, str):
        return f'<span class="td-str">{esc(value)}</span>'
    if isinstance(value, (int, float)):
        return esc(fmt_number(value))
    return esc(str(value))


TOKEN_SEP = "\x1f\x1e"  # joins token texts to escape them in one pass; never inside a token here


TOKEN_CHARS = 1000  # a token text longer than this is cut on pages (a real token has a few characters)


def long_tokens(texts: Sequence[str]) -> dict[int, int]:
    """The tokens pages show cut: position -> full length (none in real files: one pass in C)."""
    if not texts or max(map(len, texts)) <= TOKEN_CHARS:
        return {}
    return {i: len(t) for i, t in enumerate(texts) if len(t) > TOKEN_CHARS}


def long_texts(data: StepData, options: "RenderOptions") -> dict[str, Union[str, dict]]:
    """The texts of a step that pages show cut, by where they are ("trajectory 3 token 17",
    "trajectory 3 pure_generated_text", "trajectory 3 turn 2 text", "trajectory 3 turn 1 token 5",
    ...): tokens longer than TOKEN_CHARS, other texts longer
    than `options.max_text`. Published whole next to the step page; a text equal to one listed
    before (a prompt shared by a group) is {"same as": that place}."""
    out: dict[str, Union[str, dict]] = {}
    first: dict[str, str] = {}
    limit = options.max_text

    def add(place: str, text: str) -> None:
        seen = first.setdefault(text, place)
        out[place] = text if seen == place else {"same as": seen}

    for t in data.trajectories:
        for i in long_tokens(t.tokens.texts) if t.tokens is not None else ():
            add(f"trajectory {t.index} token {i}", t.tokens.texts[i])
        for name in ("prompt", "full_sequence", "generated_text", "pure_generated_text"):
            value = getattr(t, name)
            if value is not None and len(value) > limit and (name != "full_sequence" or t.prompt is None):
                add(f"trajectory {t.index} {name}", value)
        for key, value in t.metadata.items():
            if isinstance(value, str) and len(value) > limit:
                add(f"trajectory {t.index} metadata {key}", value)
        for n, turn in enumerate(t.turns):
            if turn.tokens is not None:
                for i in long_tokens(turn.tokens.texts):
                    add(f"trajectory {t.index} turn {n} token {i}", turn.tokens.texts[i])
            elif turn.text is not None and len(turn.text) > limit:
                add(f"trajectory {t.index} turn {n} text", turn.text)
    return out


def cut_note(shown: int, total: int) -> str:
    return (f'<p class="td-note td-cut">Cut: the first {shown:,} of {total:,} characters are shown; the '
            'whole text is in this step\'s long texts (linked at the top of the page).</p>')


def token_elements(texts: Sequence[str], flags: Sequence[bool], scores: Sequence[Union[float, None]],
                   end: bool = False) -> str:
    """One short <i> per token (restyled upright): class "h" marks a high-entropy token, data-e
    carries a score. A token HTML cannot carry exactly (NUL, lone surrogates) also gets data-raw,
    its JSON-escaped text. A token longer than TOKEN_CHARS shows its first TOKEN_CHARS characters
    and gets data-cut, its full length (see `long_texts`). With `end`, the last one is the
    end-of-sequence token (class td-end, no text).

    Guarantee: the same string as building each element on its own (the plain twin
    `tests/plain.py: token_elements`, which tests compare it with); fast because texts are
    escaped in one pass, the marked tokens found in C, and the elements assembled by slicing."""
    cut = long_tokens(texts)
    if cut:
        texts = [t[:TOKEN_CHARS] if i in cut else t for i, t in enumerate(texts)]
    joined = TOKEN_SEP.join(texts)
    raws: Sequence[str] = ()
    if unshowable(joined) or joined.count(TOKEN_SEP) != max(0, len(texts) - 1):
        shown = [esc(t) for t in texts]
        raws = [f' data-raw="{attr(json.dumps(t)[1:-1])}"' if unshowable(t) else "" for t in texts]
    elif needs_escape(joined):
        # one pass in C instead of one per token (no NUL or surrogate here: checked above)
        shown = escape(joined, quote=False).replace("\r", "&#13;").split(TOKEN_SEP)
    else:
        shown = list(texts)
    n = len(shown)
    if not n:
        return ""
    opens = ["</i><i>"] * n  # each closes the previous token and opens its own
    marked = list(compress(count(), map(or_, flags, map(is_not, scores, repeat(None)))))  # flagged or scored
    if marked:
        for i, flag, score in zip(marked, [flags[i] for i in marked], score_texts([scores[i] for i in marked])):
            opens[i] = ('</i><i class="h">' if score is None else f'</i><i class="h" data-e="{score}">') if flag \
                else f'</i><i data-e="{score}">'
    for i, raw in enumerate(raws):
        if raw:
            opens[i] = opens[i][:-1] + raw + ">"
    for i, length in cut.items():
        opens[i] = opens[i][:-1] + f' data-cut="{length}">'
    if end:
        last = opens[-1]
        opens[-1] = last.replace(' class="', ' class="td-end ') if ' class="' in last else "</i><i class=\"td-end\"" + last[6:]
    opens[0] = opens[0][4:]
    out: list = [None] * (2 * n)
    out[::2] = opens
    out[1::2] = shown
    out.append("</i>")
    return "".join(out)


def packed_floats(values: Sequence) -> Union[str, None]:
    """Per-token numbers for a data attribute, packed in C: little-endian float16 in base64 (2.7
    characters a value, ~3 significant digits, enough for a hover), or "!" + float32 when a value
    is beyond float16; one value when all are equal; missing values as NaN. None when the list
    holds anything but numbers. Guarantee: the same as packing value by value (the plain twin
    `tests/plain.py: packed_floats`)."""
    if values and values.count(values[0]) == len(values):
        values = values[:1]
    if None in values:
        values = [math.nan if v is None else v for v in values]
    for prefix, code in (("", "e"), ("!", "f")):
        try:
            return prefix + base64.b64encode(struct.pack(f"<{len(values)}{code}", *values)).decode("ascii")
        except OverflowError:
            continue
        except struct.error:
            return None
    return None


def tokens_html(tokens: Tokens, max_tokens: int, values: dict[str, list] | None = None) -> str:
    """The token container; past `max_tokens` the rest waits in a template behind a button.
    Per-token log-probs and advantages ride along as one attribute each, for hover details."""
    n = len(tokens)
    head = min(n, max_tokens)
    shown = token_elements(tokens.texts[:head], tokens.flags[:head], tokens.scores[:head], tokens.end and n == head)
    packed = {name: packed_floats(v) for name, v in (values or {}).items()}
    extra = "".join(f' data-{name}="{p}"' for name, p in packed.items() if p is not None)
    cls = "td-tokens td-ids" if tokens.ids else "td-tokens"
    html = f'<div class="{cls}"{extra}>{shown}</div>'
    if n > head:
        rest = token_elements(tokens.texts[head:], tokens.flags[head:], tokens.scores[head:], tokens.end)
        html += (f'<template class="td-rest">{rest}</template>'
                 f'<button type="button" class="td-more">Show the remaining {n - head:,} tokens</button>')
    return html


def score_texts(scores: list) -> list:
    """Scores as data-e values (4 significant digits; NaN and infinities by name); None stays None.
    Usually all finite: then formatted in one C call (one "%.6g" format over all of them), else
    one by one. Guarantee: the same as formatting each on its own (the plain twin
    `tests/plain.py: score_texts`)."""
    values = [s for s in scores if s is not None]
    if values and math.isfinite(sum(values)) and -1e300 < min(values) and max(values) < 1e300:
        texts = iter(("%.6g\0" * len(values) % tuple(values)).split("\0"))
        return [None if s is None else next(texts) for s in scores] if len(values) < len(scores) else list(texts)[:-1]
    return [None if s is None else _score(s) for s in scores]


def _score(score: float) -> str:
    if math.isfinite(score):
        return f"{score:.6g}" if abs(score) < 1e300 else repr(score)  # rounding must not overflow
    return "NaN" if math.isnan(score) else ("Infinity" if score > 0 else "-Infinity")


def stats_html(st: TokenStats) -> str:
    items = [
        ("Total tokens", DASH if st.total is None else str(st.total)),
        ("High-entropy tokens", DASH if st.high is None else str(st.high)),
        ("High-entropy ratio", fmt_ratio(st.ratio)),
        ("Average entropy", fmt_stat(st.mean_score)),
    ]
    cells = "".join(f'<div><dt>{k}</dt><dd>{v}</dd></div>' for k, v in items)
    note = ""
    if st.scored:
        note = f'<p class="td-note">Average over {"the " if st.scored != 1 else ""}{counted(st.scored, "token")} that {"carry" if st.scored != 1 else "carries"} a score.</p>'
    return f'<dl class="td-stats">{cells}</dl>{note}'


PER_TOKEN_FIELDS = ("advantages", "return", "values", "action_log_probs")  # lists per token, or one value


def metadata_html(meta: dict[str, MetaValue], limit: int = 1_000_000) -> str:
    if not meta:
        return ""
    rows = "".join(f"<div><dt>{esc_breakable(k, '._')}</dt><dd{_value_note(k, v)}>{fmt_value(v)}</dd></div>"
                   if not (isinstance(v, str) and len(v) > limit)
                   else f"<div><dt>{esc_breakable(k, '._')}</dt><dd>{fmt_value(v[:limit])}{cut_note(limit, len(v))}</dd></div>"
                   for k, v in meta.items())
    count = counted(len(meta), "field")
    return f'<details class="td-meta-box"><summary>Metadata · {count}</summary><dl class="td-meta">{rows}</dl></details>'


SINGLE_NOTE = ' class="td-single" title="one value for the trajectory, not a list per token"'
BATCH_NOTE = (' class="td-batch" title="LightRFT\'s saver writes a reward metric it cannot split per sample '
              'as the whole micro-batch\'s list: never used as this trajectory\'s value"')


def _value_note(key: str, value: MetaValue) -> str:
    """Attributes of a value that is not what its name suggests; the note itself is drawn by CSS,
    so the value's text stays exactly the value."""
    if key in PER_TOKEN_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return SINGLE_NOTE
    if key.startswith("reward_metrics.") and isinstance(value, ListSummary):
        return BATCH_NOTE
    return ""


SPECIAL_RUN = re.compile(r"(<\|[^|<>\s]{1,64}\|>)\1+")


def text_html(text: str) -> str:
    """Escaped text where a run of one special token (`<|image_pad|>` × 324) is one element:
    the token once, its count in data-n (the page script puts all of them back when copying)."""
    if "<|" not in text:
        return esc(text)
    out, pos = [], 0
    for m in SPECIAL_RUN.finditer(text):
        n = (m.end() - m.start()) // len(m.group(1))
        out += [esc(text[pos:m.start()]),
                f'<span class="td-run" data-n="{n}" title="{n} × {attr(m.group(1))}">{esc(m.group(1))}</span>']
        pos = m.end()
    out.append(esc(text[pos:]))
    return "".join(out)


def text_block(label: str, cls: str, text: Union[str, None], tokens_text: Union[str, None] = None,
               tail: str = "", limit: int = 1_000_000) -> str:
    """A decoded text field. When it equals the token texts joined (the usual case), the page
    carries an empty block that the browser fills from the tokens on demand; a field that
    differs (e.g. characters split across tokens) is written out, its first `limit` characters."""
    if text is None:
        return ""
    label_html = f'<div class="td-label">{label}</div>'
    if tokens_text is not None and text == tail + tokens_text:
        return f'<div class="{cls}">{label_html}<pre class="td-text" data-from-tokens data-tail="{attr(tail)}"></pre></div>'
    note = cut_note(limit, len(text)) if len(text) > limit else ""
    return f'<div class="{cls}">{label_html}<pre class="td-text">\n{text_html(text[:limit])}</pre>{note}</div>'


def images_html(traj: Trajectory, asset_base: str) -> str:
    if not traj.image_files and not traj.image_data:
        return ""
    items = []
    for i, rel in enumerate(traj.image_files):
        url = attr(asset_base + "files/" + quote(rel))
        items.append(f'<a href="{url}" target="_blank" rel="noopener"><img class="td-thumb" src="{url}" '
                     f'loading="lazy" alt="image {i + 1}: {attr(rel)}"></a>')
    for i, data in enumerate(traj.image_data):
        src = data if data.startswith("data:") else "data:image/png;base64," + re.sub(r"\s+", "", data)
        items.append(f'<img class="td-thumb" src="{attr(src)}" alt="inline image {i + 1}" tabindex="0">')
    return f'<div class="td-images">{"".join(items)}</div>'


def trajectory_html(traj: Trajectory, options: RenderOptions = RenderOptions(), with_prompt: bool = True,
                    st: Union[TokenStats, None] = None, mark: str = "") -> str:
    """One trajectory: its title (anchor `#t<index>`, copy-link button, badge, reward and advantage
    at the top; `mark` "best" / "worst" in its prompt group), its statistics on one line, its
    metadata one click away, prompt, images, response and text blocks."""
    st = st or trajectory_stats(traj)
    meta = traj.metadata
    title = [f"Trajectory {traj.index}"]
    for key in ("experience_index", "sample_in_exp"):
        if key in meta and not isinstance(meta[key], ListSummary):
            title.append(f"{key.split('_')[0]} {esc(str(meta[key]))}")
    badge = "" if traj.correct is None else (
        '<span class="td-badge td-right">correct</span> ' if traj.correct else '<span class="td-badge td-wrong">incorrect</span> ')
    adv = "" if traj.advantage is None else f'<span class="td-adv"> · advantage {esc(fmt_number(traj.advantage))}</span>'
    if traj.rewards:  # the file's reward parts, where it writes no total
        adv = "".join(f'<span class="td-reward-part"> · {esc(name)} {esc(fmt_number(value))}</span>'
                      for name, value in traj.rewards.items()) + adv
    chip = f'<span class="td-mark td-{mark}">{mark} in group</span> ' if mark else ""
    head = (f'<h2 class="td-traj-title" id="traj-{traj.index}"><span class="td-traj-name">{" · ".join(title)}'
            f'<a class="td-anchor" href="#t{traj.index}" title="Link to this trajectory" aria-label="Link to trajectory '
            f'{traj.index}">#</a><button type="button" class="td-copy-link" data-target="t{traj.index}" '
            f'title="Copy a link to this trajectory">copy link</button></span>'
            f'<span class="td-head-right">{chip}<span class="td-reward">{badge}reward {esc(fmt_number(traj.reward))}</span>'
            f'{adv}</span></h2>')
    sort_keys = {"reward": traj.reward, "adv": traj.advantage,
                 "len": traj.response_length, "ratio": st.ratio}
    data = "".join(f' data-{k}="{v!r}"' for k, v in sort_keys.items() if v is not None and math.isfinite(v))
    if traj.correct is not None:
        data += f' data-correct="{int(traj.correct)}"'
    limit = options.max_text
    parts = [f'<section class="td-traj" id="t{traj.index}" data-index="{traj.index}"{data}>', head,
             stats_html(st) if traj.tokens is not None else "", metadata_html(meta, limit)]
    if traj.prompt is not None and with_prompt:
        parts.append(prompt_html("Prompt", traj.prompt, limit))
    elif traj.prompt is None and traj.full_sequence is not None:
        parts.append(prompt_html("Full sequence", traj.full_sequence, limit))
    parts.append(images_html(traj, options.asset_base))
    if traj.turns:
        parts.append(turns_html(traj.turns, options))
    elif traj.tokens is not None:
        parts.append(f'<div class="td-label">Response · {len(traj.tokens):,} {("segment" if traj.tokens.segments else "token") + ("s" if len(traj.tokens) != 1 else "")}</div>')
        parts.append(tokens_html(traj.tokens, options.max_tokens, traj.token_values))
        if traj.tokens.ids:
            parts.append(f'<p class="td-note td-ids-note">{esc(NO_TOKENIZER_NOTE[0].upper() + NO_TOKENIZER_NOTE[1:])}.</p>')
    elif traj.pure_generated_text is not None:
        text = traj.pure_generated_text
        parts.append('<div class="td-label">Response (no token data in this file)</div>')
        parts.append(f'<div class="td-tokens td-plain">{esc(text[:limit])}</div>'
                     + (cut_note(limit, len(text)) if len(text) > limit else ""))
    joined = "".join(traj.tokens.texts) if traj.tokens is not None else None
    if joined is not None and (unshowable(joined) or long_tokens(traj.tokens.texts)):
        joined = None  # written out, with the same stand-ins as every text block (cut tokens: cut)
    tail = traj.prompt_tail or ""
    parts.append(text_block("generated_text", "td-gen", traj.generated_text, joined, tail, limit))
    parts.append(text_block("pure_generated_text", "td-pure", traj.pure_generated_text, joined, limit=limit))
    parts.append("</section>")
    return "".join(parts)


MODEL_ROLES = frozenset({"assistant", "model", "gpt", "bot"})  # text-only turns styled as the model's
TOOL_ROLES = frozenset({"tool", "environment", "env", "ipython", "function", "observation", "feedback"})


def turns_html(turns: Sequence[Turn], options: RenderOptions) -> str:
    """A conversation in order: each turn with its role as written in a chip; a turn with tokens
    (the model's) tokenised like a response and coloured like one, the others as plain text
    (tool / environment turns set apart). Texts longer than `options.max_text` are cut (see
    `long_texts`)."""
    out = ['<div class="td-turns">']
    for n, turn in enumerate(turns):
        role = esc(turn.role)
        kind = ("td-model-turn" if turn.tokens is not None  # the contract: a model turn holds a td-tokens
                else "td-model-text-turn" if turn.role.lower() in MODEL_ROLES
                else "td-tool-turn" if turn.role.lower() in TOOL_ROLES else "td-other-turn")
        if turn.tokens is not None:
            count = f'<span class="td-turn-count">{len(turn.tokens):,} token{"s" if len(turn.tokens) != 1 else ""}</span>'
            out.append(f'<div class="td-turn {kind}" data-role="{attr(turn.role)}" data-turn="{n}">'
                       f'<div class="td-turn-head"><span class="td-role">{role}</span>{count}</div>'
                       f'{tokens_html(turn.tokens, options.max_tokens, turn.token_values)}')
            if turn.tokens.ids:
                out.append(f'<p class="td-note td-ids-note">{esc(NO_TOKENIZER_NOTE[0].upper() + NO_TOKENIZER_NOTE[1:])}.</p>')
                if turn.text:  # the message's text as the file writes it, beside ids that cannot be read
                    out.append(f'<pre class="td-text">\n{text_html(turn.text[:options.max_text])}</pre>'
                               + (cut_note(options.max_text, len(turn.text)) if len(turn.text) > options.max_text else ""))
        else:
            text = turn.text or ""
            cut = cut_note(options.max_text, len(text)) if len(text) > options.max_text else ""
            out.append(f'<div class="td-turn {kind}" data-role="{attr(turn.role)}" data-turn="{n}">'
                       f'<div class="td-turn-head"><span class="td-role">{role}</span></div>'
                       f'<pre class="td-text">\n{text_html(text[:options.max_text])}</pre>{cut}')
        out.append("</div>")
    out.append("</div>")
    return "".join(out)


def prompt_html(label: str, text: str, limit: int = 1_000_000) -> str:
    note = cut_note(limit, len(text)) if len(text) > limit else ""
    return (f'<details class="td-prompt"><summary>{label}</summary><pre class="td-text">\n{text_html(text[:limit])}</pre>'
            f'{note}</details>')


def group_html(group: Sequence[Trajectory], options: RenderOptions, stats: dict[int, TokenStats]) -> str:
    if len(group) == 1:
        return trajectory_html(group[0], options, st=stats.get(group[0].index))
    rewards = [t.reward for t in group if t.reward is not None and math.isfinite(t.reward)]
    mean = finite_mean(rewards)
    spread = ""
    if rewards:
        std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / len(rewards))
        spread = (f" · reward mean {fmt_stat(mean)} ± {fmt_stat(std)} "
                  f"(min {fmt_number(min(rewards))}, max {fmt_number(max(rewards))})")
    odd = [t.reward for t in group if t.reward is not None and not math.isfinite(t.reward)]
    if odd:  # NaN / infinite rewards are left out of the mean: say how many
        spread += f" · {len(odd)} NaN not counted" if all(map(math.isnan, odd)) else \
            f" · {counted(len(odd), 'non-finite reward')} not counted"
    versus = ('<button type="button" class="td-compare">Best and worst side by side</button>'
              if len(rewards) > 1 and max(rewards) != min(rewards) else "")
    same = all(t.prompt == group[0].prompt for t in group)  # a file's own group id may join different prompts
    what = "responses to one prompt" if same else "responses of one group in the file, to different prompts"
    head = (f'<div class="td-group-head">Prompt group · {len(group)} {what}{spread}</div>'
            + prompt_html("Prompt", group[0].prompt or "", options.max_text) + versus)
    marks = {}
    if len(rewards) > 1 and max(rewards) != min(rewards):  # a group's best and worst by the reward in the file
        ranked = [t for t in group if t.reward is not None and math.isfinite(t.reward)]
        best, worst = max(rewards), min(rewards)
        marks = {t.index: "best" for t in ranked if t.reward == best}
        marks.update({t.index: "worst" for t in ranked if t.reward == worst})
    body = "".join(trajectory_html(t, options, with_prompt=t.prompt != group[0].prompt, st=stats.get(t.index),
                                   mark=marks.get(t.index, "")) for t in group)
    return f'<div class="td-group">{head}<div class="td-cols">{body}</div></div>'


def paginate(groups: list[list[Trajectory]], per_page: int) -> list[list[list[Trajectory]]]:
    pages: list[list[list[Trajectory]]] = [[]]
    count = 0
    for group in groups:
        if pages[-1] and count + len(group) > per_page:
            pages.append([])
            count = 0
        pages[-1].append(group)
        count += len(group)
    return pages


SORTS = (("", "file order"), ("reward-desc", "reward, high first"), ("reward-asc", "reward, low first"),
         ("adv-desc", "advantage, high first"), ("adv-asc", "advantage, low first"),
         ("len-desc", "response length, long first"), ("len-asc", "response length, short first"),
         ("ratio-desc", "high-entropy ratio, high first"), ("ratio-asc", "high-entropy ratio, low first"))


@dataclass
class EntropyScale:
    """What a step's tokens allow: which tokens carry scores, the shared heat scale, the ratio."""

    scored: str  # "all", "flagged" (LightRFT's saver) or "none"
    heat_max: Union[float, None]  # high percentile of all scores of the step
    file_ratio: Union[float, None]

    @classmethod
    def of(cls, trajectories: Sequence[Trajectory], summary: StepSummary) -> "EntropyScale":
        token_sets = [t.tokens for t in trajectories if t.tokens is not None and not t.tokens.segments]
        token_sets += [turn.tokens for t in trajectories for turn in t.turns if turn.tokens is not None]
        if all(tk.scores.count(None) == len(tk.scores) for tk in token_sets):
            return cls("none", None, summary.high_entropy_ratio)
        if any(None in tk.scores for tk in token_sets):
            return cls("flagged", None, summary.high_entropy_ratio)
        scores = sorted(v for tk in token_sets for v in tk.scores if math.isfinite(v))
        heat_max = scores[min(len(scores) - 1, int(0.99 * len(scores)))] if scores else None
        return cls("all", heat_max, summary.high_entropy_ratio)

    def attrs(self) -> str:
        out = f' data-scored="{self.scored}"'
        if self.heat_max is not None:
            out += f' data-heat-max="{self.heat_max!r}"'
        if self.file_ratio is not None:
            out += f' data-file-ratio="{self.file_ratio!r}"'
        return out


@dataclass(frozen=True)
class StepHas:
    """What a step's data holds: controls, columns and statistics appear only for that."""

    tokens: bool = False  # token data (flags, scores) in some trajectory (its response or a model turn)
    correct: bool = False  # a correct / incorrect verdict for some trajectory
    advantage: bool = False
    length: bool = False  # a response length for some trajectory
    shifted: bool = False  # LightRFT saver's generated_tokens: scores moved onto the tokens they belong to
    texts: frozenset = frozenset()  # which of generated_text / pure_generated_text some tokenised trajectory has
    channels: tuple = ()  # per-token channels some trajectory or turn has (names of model.CHANNELS, in that order)
    turn_scores: bool = False  # some model turn has entropy scores
    flagged: bool = False  # some response's file marks high-entropy tokens (`Tokens.flagged`)

    @classmethod
    def of(cls, trajectories: Sequence[Trajectory]) -> "StepHas":
        tokenised = [t for t in trajectories if t.tokens is not None]
        texts = {key for t in tokenised for key, value in (("gen", t.generated_text), ("pure", t.pure_generated_text))
                 if value is not None}
        names: set = set()
        turn_scores = turn_tokens = False
        for t in trajectories:  # per trajectory and turn, never per token
            names.update(t.token_values)
            for turn in t.turns:
                names.update(turn.token_values)
                if turn.tokens is not None:
                    turn_tokens = True
                    if not turn_scores:
                        turn_scores = turn.tokens.scores.count(None) < len(turn.tokens.scores)
        return cls(bool(tokenised) or turn_tokens, any(t.correct is not None for t in trajectories),
                   any(t.advantage is not None for t in trajectories),
                   any(t.response_length is not None for t in trajectories),
                   any(t.tokens.end for t in tokenised), frozenset(texts),
                   tuple(name for name in CHANNELS if name in names), turn_scores,
                   any(t.tokens.flagged for t in tokenised)
                   or any(turn.tokens is not None and turn.tokens.flagged for t in trajectories for turn in t.turns))


def controls_html(scale: EntropyScale, has: StepHas = StepHas(True, True, True, True, flagged=True)) -> str:
    shown = {"meta"} | ({"scores", "stats"} | has.texts if has.tokens else set())
    boxes = "".join(
        f'<label><input type="checkbox" data-td-toggle="{key}"{" checked" if on else ""}> {label}</label>'
        for key, label, on in TOGGLES if key in shown)
    mode = ('<label class="td-mode">Colour <select data-td-setting="mode"><option value="flag">high-entropy flags</option>'
            '<option value="heat">entropy heat map</option></select></label>') if has.tokens and scale.scored == "all" else ""
    entropy = (has.tokens and scale.scored != "none") or has.turn_scores
    channels = channel_select(has.channels, entropy)
    slider = ""
    if has.tokens and scale.scored != "none" and scale.file_ratio:
        # with scores only on flagged tokens, the top k% is known for k up to the file's ratio
        top = 50 if scale.scored == "all" else max(1, math.floor(100 * scale.file_ratio))
        start = min(top, max(1, round(100 * scale.file_ratio)))
        slider = (f'<label>Flag top <input type="range" data-td-setting="ratio" min="1" max="{top}" '
                  f'value="{start}" aria-label="share of tokens to flag, percent"> <output class="td-ratio-out">'
                  f'{fmt_ratio(scale.file_ratio)}</output></label><button type="button" class="td-reset" data-td-reset="ratio">'
                  f'as in file</button>')
    elif channels:  # no entropy flags in the file: the slider flags the top k% of the chosen channel
        slider = ('<label>Flag top <input type="range" data-td-setting="ratio" min="1" max="50" value="10" '
                  'aria-label="share of tokens to flag, percent"> <output class="td-ratio-out">off</output></label>'
                  '<button type="button" class="td-reset" data-td-reset="ratio">no flags</button>')
    sorts = [(v, label) for v, label in SORTS if not (v.startswith("ratio") and not has.tokens)
             and not (v.startswith("adv") and not has.advantage) and not (v.startswith("len") and not has.length)]
    sort = "".join(f'<option value="{v}">{label}</option>' for v, label in sorts)
    filters = ('<label>Show <select data-td-setting="filter"><option value="">all</option><option value="correct">'
               'correct</option><option value="incorrect">incorrect</option></select></label>') if has.correct else ""
    return (f'<div class="td-controls" role="group" aria-label="Display options">{boxes}</div>'
            f'<div class="td-controls" role="group" aria-label="Colour, flags, order">{channels}{mode}{slider}'
            f'<label>Sort <select data-td-setting="sort">{sort}</select></label>{filters}</div>'
            '<p class="td-keys">Keys: <kbd>p</kbd> / <kbd>n</kbd> previous / next step · '
            '<kbd>j</kbd> / <kbd>k</kbd> next / previous trajectory</p>')


# How each channel is coloured: "seq" (0 to the step's 99th percentile), "div" (a diverging scale
# around a centre: below blue, above red), "neg" (by −value: a log-prob, darker = less likely).
CHANNEL_SCALES: dict[str, tuple[str, float]] = {
    "surprisal": ("seq", 0.0), "mismatch": ("seq", 0.0), "mismatch_kl": ("seq", 0.0),
    "advantage": ("div", 0.0), "token_reward": ("div", 0.0), "logprob": ("neg", 0.0),
    "ref_logprob": ("neg", 0.0), "importance_ratio": ("div", 1.0),
}
DERIVED_SURPRISAL = "surprisal = −log-prob (derived from the file's log-prob: exact)"


def channel_options(names: Sequence[str], entropy: bool) -> list[tuple[str, str, str]]:
    """The colour control's choices: (value, label, extra option attributes); entropy first when
    the step has scores, then the channels in `model.CHANNELS` order. A log-prob stands as the
    surprisal (−log-prob) when the file gives no surprisal: colouring by it would repeat that."""
    out = [("entropy", "entropy", "")] if entropy else [("", "none", "")]
    if "logprob" in names and "surprisal" not in names:
        names = [n for n in CHANNELS if n in names or n == "surprisal"]
    for name in names:
        kind, centre = CHANNEL_SCALES.get(name, ("seq", 0.0))
        if name == "surprisal" and "logprob" in names:  # not in the file: derived from its log-prob
            out.append(("surprisal", DERIVED_SURPRISAL, ' data-scale="seq" data-from="logprob" data-sign="-1"'))
            continue
        if name == "logprob":
            continue
        out.append((name, CHANNELS.get(name, name), f' data-scale="{kind}" data-centre="{centre!r}"'))
    return out


def channel_select(names: Sequence[str], entropy: bool) -> str:
    """The "Colour by" control; none when the step has no channel beside the entropy."""
    if not names:
        return ""
    options = "".join(f'<option value="{value}"{extra}>{esc(label)}</option>'
                      for value, label, extra in channel_options(names, entropy))
    return f'<label class="td-channel">Colour by <select data-td-setting="channel">{options}</select></label>'


CHANNEL_LEGEND = (
    '<p class="td-legend-chan td-legend-seq" hidden>Colour: <b class="td-chan-name"></b>, background from '
    '<span class="td-chan-lo"></span> to <span class="td-chan-hi"></span> (the 99th percentile of this step\'s '
    'values; higher values get the top colour) <span class="td-colorbar" aria-hidden="true"></span> '
    '<span class="td-chan-note"></span></p>'
    '<p class="td-legend-chan td-legend-div" hidden>Colour: <b class="td-chan-name"></b> on a diverging scale: '
    '<span class="td-neg-sample">blue</span> below <span class="td-chan-centre"></span>, '
    '<span class="td-pos-sample">red</span> above, no colour at it; full colour from '
    '<span class="td-chan-hi"></span> away (the 99th percentile of this step\'s distances) '
    '<span class="td-divbar" aria-hidden="true"></span> <span class="td-chan-ends"></span></p>')


SHIFT_NOTE = ('<p class="td-shift-note">Each token shows the flag and score of the step that chose it. '
              "LightRFT's saver stores them one token early (on the token before, the first on the prompt's last "
              'token): they are moved onto the tokens they belong to here. The last, empty token '
              '<span class="td-end-sample">end</span> is the response\'s last token, whose text <code>generated_tokens</code> does not hold: the '
              'end of sequence, or the last token of a response cut at the length limit.</p>')


def legend_html(scale: EntropyScale, shifted: bool = False, channels: bool = False, flagged: bool = True) -> str:
    ratio = "" if scale.file_ratio is None else f" ({fmt_ratio(scale.file_ratio)} of this step's tokens)"
    marks = (f'tokens are high-entropy ("forking") tokens, <span class="td-ratio-note">as flagged in the file{ratio}</span>'
             if flagged else 'tokens: <span class="td-ratio-note">none flagged (the file flags no tokens)</span>')
    parts = ['<div class="td-legend">',
             f'<p class="td-legend-flag"><span class="td-swatch">underlined</span> {marks}. '
             'Hover or focus a token for its entropy score, position, exact text and every other per-token '
             'value the file has (log-probability, advantage, ...).</p>']
    if scale.heat_max is not None:
        parts.append(f'<p class="td-legend-heat">Heat map: background from 0 to {fmt_number(scale.heat_max)} '
                     '(the 99th percentile of this step\'s scores; higher scores get the top colour) '
                     f'<span class="td-colorbar" aria-hidden="true"></span> '
                     f'<span class="td-bar-ends">0 … ≥ {fmt_number(scale.heat_max)}</span></p>')
    parts.append('<p>Scores are the <code>entropy_score</code> values in the file. Ratio: flagged tokens '
                 '÷ all response tokens; average entropy: over the tokens that carry a score.</p>')
    if shifted:
        parts.append(SHIFT_NOTE)
    if channels:
        parts.append(CHANNEL_LEGEND)
    parts.append("</div>")
    return "".join(parts)


def summary_table(trajectories: Sequence[Trajectory], stats: dict[int, TokenStats],
                  has: StepHas = StepHas(True, True, True, True, flagged=True)) -> str:
    """One row per trajectory; the advantage, high-entropy and correct columns only where the step has them."""
    rows = []
    for t in trajectories:
        st = stats[t.index]
        cells = [f'<td><a href="#t{t.index}">{t.index}</a></td>', f"<td>{fmt_number(t.reward)}</td>"]
        if has.advantage:
            cells.append(f"<td>{fmt_number(t.advantage)}</td>")
        if has.length:
            cells.append(f"<td>{DASH if t.response_length is None else t.response_length}</td>")
        if has.flagged:
            cells.append(f"<td>{fmt_ratio(st.ratio)}</td>")
        if has.correct:
            cells.append(f"<td>{ {True: '✓', False: '✗', None: DASH}[t.correct]}</td>")
        rows.append(f'<tr data-index="{t.index}">{"".join(cells)}</tr>')
    head = ("<tr><th>Trajectory</th><th>Reward</th>" + ("<th>Advantage</th>" if has.advantage else "")
            + ("<th>Length</th>" if has.length else "") + ("<th>High-entropy</th>" if has.flagged else "")
            + ("<th>Correct</th>" if has.correct else "") + "</tr>")
    return (f'<details class="td-summary-box" open><summary>Trajectories on this page</summary>'
            f'<table class="td-summary"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></details>')


def problems_html(summary: StepSummary, path: str) -> str:
    if summary.unreadable:
        return (f'<div class="admonition failure td-problem"><p class="admonition-title">Unreadable step file</p>'
                f'<p><code>{esc(path)}</code>: {esc(summary.unreadable)}</p></div>')
    if not summary.problems:
        return ""
    items = "".join(f"<li>{esc(p)}</li>" for p in summary.problems)
    return (f'<div class="admonition warning td-problem"><p class="admonition-title">Problems in '
            f'<code>{esc(path)}</code></p><ul>{items}</ul></div>')


def step_fragments(data: StepData, summary: StepSummary, path: str,
                   options: RenderOptions = RenderOptions(), page_of: Union[dict[int, int], None] = None,
                   stats: Union[dict[int, TokenStats], None] = None) -> list[str]:
    """Bodies of a step's pages (one unless the step has more than `per_page` trajectories).
    `page_of` receives each trajectory's page; `stats` are its statistics when already known."""
    off = "".join(f" td-off-{key}" for key, _, on in TOGGLES if not on)
    scale = EntropyScale.of(data.trajectories, summary)
    has = StepHas.of(data.trajectories)
    top = [problems_html(summary, options.shown_path(path))]
    if summary.cut_texts:
        top.append(f'<div class="admonition note td-cut-texts"><p class="admonition-title">Long texts cut</p><p>'
                   f'{summary.cut_texts:,} text{"s" if summary.cut_texts > 1 else ""} of this step '
                   f'{"are" if summary.cut_texts > 1 else "is"} longer than a page shows (tokens over '
                   f'{TOKEN_CHARS:,} characters, other texts over {options.max_text:,}) and shown cut: '
                   f'<a href="{attr(options.asset_base)}texts/step-{summary.step}.json" download>the whole texts '
                   '(JSON, by trajectory and place)</a>.</p></div>')
    if data.trajectories:
        top.append(controls_html(scale, has))
        if has.tokens and (scale.scored != "none" or not has.channels):
            top.append(legend_html(scale, has.shifted, bool(has.channels), has.flagged or not has.tokens))
        elif has.channels:  # no entropy in the file: flags only from the slider, colours from the channels
            top.append('<div class="td-legend"><p class="td-legend-flag"><span class="td-swatch">underlined</span> '
                       'tokens: <span class="td-ratio-note">none flagged (the file flags no tokens)</span>. Hover or '
                       'focus a token for its position, exact text and every per-token value the file has.</p>'
                       f'{CHANNEL_LEGEND}</div>')
        top.append(step_summary_line(summary))
        chart = bar_chart(f"Entropy scores of step {summary.step} ({sum(summary.histogram)} scored tokens)",
                          summary.histogram, HISTOGRAM_WIDTH, "entropy score")
        if chart:
            top.append(f'<details class="td-hist"><summary>Entropy score distribution</summary>{chart}</details>')
    pages = step_pages(data, options)
    fragments = []
    stats = stats if stats is not None else trajectory_table(data.trajectories)
    for number, groups in enumerate(pages, 1):
        if page_of is not None:
            page_of.update((t.index, number) for g in groups for t in g)
        table = summary_table([t for g in groups for t in g], stats, has) if data.trajectories else ""
        body = "".join(group_html(g, options, stats) for g in groups)
        fragments.append(f'<div class="td-step{off}"{scale.attrs()}>{"".join(top)}{table}'
                         f'<div class="td-list">{body}</div></div>')
    return fragments


def step_pages(data: StepData, options: RenderOptions) -> list[list[list[Trajectory]]]:
    """The trajectories of each page of a step, in prompt groups (a group is never split)."""
    return paginate(group_trajectories(data.trajectories), max(1, options.per_page))


def step_summary_line(s: StepSummary) -> str:
    """The step's aggregates; those the data does not have (no tokens, no scores, no accuracy) are left out."""
    parts = [counted(s.trajectories, "trajectory", "trajectories"), f"mean reward {fmt_stat(s.mean_reward)}"]
    if s.mean_accuracy is not None:
        parts.append(f"mean accuracy {fmt_stat(s.mean_accuracy)}")
    if s.mean_response_length is not None:
        parts.append(f"mean response length {fmt_stat(s.mean_response_length)} tokens")
    if s.high_entropy_ratio is not None:
        parts.append(f"high-entropy ratio {fmt_ratio(s.high_entropy_ratio)}")
    if s.mean_entropy is not None:
        parts.append(f"mean entropy {fmt_stat(s.mean_entropy)}")
    for label, value in (("mean log-prob mismatch", s.mean_mismatch), ("mean mismatch KL", s.mean_mismatch_kl),
                         ("mean surprisal", s.mean_surprisal)):
        if value is not None:
            parts.append(f"{label} {fmt_stat(value)}")
    return f'<p class="td-step-summary">{" · ".join(parts)}</p>'


def step_links(prev: Union[tuple[str, int], None], up: tuple[str, str],
               next_: Union[tuple[str, int], None]) -> str:
    """Previous / up / next links; each link is (url, label)."""
    left = (f'<a class="td-prev" href="{attr(prev[0])}" rel="prev">← Step {prev[1]}</a>'
            if prev else '<span class="td-prev"></span>')
    right = (f'<a class="td-next" href="{attr(next_[0])}" rel="next">Step {next_[1]} →</a>'
             if next_ else '<span class="td-next"></span>')
    middle = f'<a class="td-up" href="{attr(up[0])}">↑ {esc(up[1])}</a>'
    return f'<nav class="td-steplinks" aria-label="Steps">{left}{middle}{right}</nav>'


def pager(urls: Sequence[str], current: int, trajectories: int, per_page: int) -> str:
    """Links to every page of a step that has more trajectories than fit one page."""
    items = []
    for number, url in enumerate(urls, 1):
        if number == current:
            items.append(f'<strong aria-current="page">{number}</strong>')
        else:
            items.append(f'<a href="{attr(url)}">{number}</a>')
    return (f'<nav class="td-pager" aria-label="Pages of this step">{trajectories} trajectories on '
            f'{len(urls)} pages (about {per_page} per page, prompt groups kept together): {" ".join(items)}</nav>')


STEP_CHANNEL_COLUMNS = (  # step-table columns of the per-token channels' means, shown where some step has them
    ("Mean log-prob mismatch", lambda s: s.mean_mismatch),
    ("Mean mismatch KL", lambda s: s.mean_mismatch_kl),
    ("Mean surprisal", lambda s: s.mean_surprisal),
)


def experiment_table(summaries: Sequence[StepSummary], urls: Sequence[str]) -> str:
    """Steps of an experiment; the accuracy and entropy columns only where some step has them."""
    accuracy = any(s.mean_accuracy is not None for s in summaries)
    length = any(s.mean_response_length is not None for s in summaries)
    ratio = any(s.high_entropy_ratio is not None for s in summaries)
    entropy = any(s.mean_entropy is not None for s in summaries)
    extra = [(label, get) for label, get in STEP_CHANNEL_COLUMNS if any(get(s) is not None for s in summaries)]
    head = ("<tr><th>Step</th><th>Trajectories</th><th>Mean reward</th>" + ("<th>Mean accuracy</th>" if accuracy else "")
            + ("<th>Mean response length</th>" if length else "") + ("<th>High-entropy ratio</th>" if ratio else "")
            + ("<th>Mean entropy</th>" if entropy else "") + "".join(f"<th>{label}</th>" for label, _ in extra)
            + "<th>Status</th></tr>")
    rows = []
    for s, url in zip(summaries, urls):
        if s.unreadable:
            status = f'<span class="td-bad" title="{attr(s.unreadable)}">unreadable: {esc(s.unreadable)}</span>'
        elif s.problems:
            status = f'<span class="td-warn">{len(s.problems)} problem{"s" if len(s.problems) > 1 else ""}</span>'
        else:
            status = "ok"
        rows.append(
            f'<tr><td><a href="{attr(url)}">{s.step}</a></td><td>{s.trajectories}</td>'
            f"<td>{fmt_stat(s.mean_reward)}</td>" + (f"<td>{fmt_stat(s.mean_accuracy)}</td>" if accuracy else "")
            + (f"<td>{fmt_stat(s.mean_response_length)}</td>" if length else "")
            + (f"<td>{fmt_ratio(s.high_entropy_ratio)}</td>" if ratio else "")
            + (f"<td>{fmt_stat(s.mean_entropy)}</td>" if entropy else "")
            + "".join(f"<td>{fmt_stat(get(s))}</td>" for _, get in extra) + f"<td>{status}</td></tr>")
    return f'<table class="td-table td-sortable td-steps"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def latest_readable(summaries: Sequence[StepSummary]) -> Union[StepSummary, None]:
    return next((s for s in reversed(summaries) if not s.unreadable), None)


def overview_table(rows: Sequence[tuple[Experiment, Sequence[StepSummary], str]]) -> str:
    ratio = any(s.high_entropy_ratio is not None for _, summaries, _ in rows for s in summaries)
    head = ("<tr><th>Experiment</th><th>Steps</th><th>Step range</th><th>Trajectories</th>"
            "<th>Latest step</th><th>Latest mean reward</th>" + ("<th>Latest high-entropy ratio</th>" if ratio else "")
            + "</tr>")
    body = []
    for exp, summaries, url in rows:
        latest = latest_readable(summaries)
        first, last = summaries[0].step, summaries[-1].step
        body.append(
            f'<tr><td><a href="{attr(url)}">{name_html(exp.name)}</a></td><td>{len(summaries)}</td>'
            f"<td>{first}–{last}</td><td>{sum(s.trajectories for s in summaries)}</td>"
            f"<td>{DASH if latest is None else latest.step}</td>"
            f"<td>{fmt_stat(latest.mean_reward if latest else None)}</td>"
            + (f"<td>{fmt_ratio(latest.high_entropy_ratio if latest else None)}</td>" if ratio else "") + "</tr>")
    return f'<table class="td-table td-sortable td-experiments"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
