"""Search across a whole run: the per-step text shards written at build time and the search box
of the overview and experiment pages. The browser side is `assets/search.js` (box, results, the
highlight on a step page) and `assets/search-worker.js` (the scan).

A shard is a small script, `tdShard(<JSON>);`: a Web Worker fetches it and reads the JSON (or loads
it with `importScripts`), and a page opened from disk (`file://`, where fetch() and workers from
file URLs fail in Chromium) loads it with a `<script>` element. It holds text only:

    {"v": 1, "p": [prompt, ...],                      each group's prompt once
     "t": [[index, page, prompt, reward, correct, response, scores], ...]}

`prompt` indexes "p" (-1: none), `page` is the step page the trajectory is on, `reward` and
`correct` are what the file says (null where absent or not a finite number), `response` is the
text the step page shows as the response (the token texts joined, else the decoded text), and
`scores` the response's entropy-scored tokens as a flat list [start, length, score × 100 rounded
down, ...] with `start` counted from the end of the previous scored token, in UTF-16 code units
as JavaScript counts (an empty list when no token has a score)."""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate, compress, count, repeat
from math import floor, isnan
from operator import add, eq, is_not, mul, sub
from typing import Sequence, Union

import orjson

from .model import Tokens, Trajectory
from .stats import group_trajectories
from .text import attr, counted

SHARD_VERSION = 1
LEVEL_LIMIT = 10 ** 9
ASTRAL = re.compile("[\U00010000-\U0010FFFF]")


def response_text(traj: Trajectory) -> tuple[str, list[int]]:
    """The response as the step page shows it, and its scored tokens (see the module docstring).
    A conversation: its model turns' tokens, joined. Token ids without a tokenizer have no text
    to search: the decoded text field, if any, stands in."""
    token_lists: list[Tokens] = [t.tokens for t in traj.turns if t.tokens is not None] if traj.turns else \
        ([traj.tokens] if traj.tokens is not None else [])
    if not token_lists or any(t.ids for t in token_lists):
        if traj.pure_generated_text is not None:
            return traj.pure_generated_text, []
        return traj.generated_text or "", []
    lists = [(t.texts[:-1] if t.end else t.texts, t.scores) for t in token_lists]
    text = "".join(lists[0][0]) if len(lists) == 1 else "".join("".join(texts) for texts, _ in lists)
    if all(values.count(None) == len(values) for _, values in lists):
        return text, []
    size = len if text.isascii() or not ASTRAL.search(text) else utf16_len  # JavaScript counts UTF-16 units
    scores: list[int] = []
    offset = last = 0
    for texts, values in lists:
        starts = list(accumulate(map(size, texts), initial=offset))  # token i spans starts[i]..starts[i + 1]
        last = scored_tokens(starts, values[:len(texts)], last, scores)
        offset = starts[-1]
    return text, scores


def scored_tokens(starts: list[int], values: list, last: int, out: list[int]) -> int:
    """Append to `out` [gap from `last`, length, `score_level`] for each token with a score (not
    None, not NaN), token i spanning starts[i]..starts[i + 1]; return the end of the last one.

    Guarantee: the same as going token by token (the plain twin `tests/plain.py: scored_tokens`,
    which tests compare it with); fast because the scored tokens are picked, measured and levelled
    by C loops (map, compress), one Python step per call instead of one per token. Scores that are
    beyond ±10⁷ are levelled one by one."""
    if None not in values and not isnan(sum(values)):  # every token scored, no NaN (a sum without one is a number)
        if not values:
            return last
        scored, begin, end = values, starts[:len(values)], starts[1:len(values) + 1]
    else:
        picked = list(compress(count(), map(is_not, values, repeat(None))))
        scored = list(map(values.__getitem__, picked))
        if not all(map(eq, scored, scored)):  # NaN: left out
            keep = list(map(eq, scored, scored))
            picked, scored = list(compress(picked, keep)), list(compress(scored, keep))
        if not picked:
            return last
        begin = list(map(starts.__getitem__, picked))
        end = list(map(starts.__getitem__, map(add, picked, repeat(1))))
    if -1e7 < min(scored) and max(scored) < 1e7:
        levels = list(map(floor, map(add, map(mul, scored, repeat(100)), repeat(1e-9))))
    else:
        levels = list(map(score_level, scored))
    flat = [0] * (3 * len(scored))
    flat[0::3] = map(sub, begin, [last] + end[:-1])
    flat[1::3] = map(sub, end, begin)
    flat[2::3] = levels
    out += flat
    return end[-1]


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def score_level(score: float) -> int:
    """An entropy score as a whole number of hundredths, rounded down (so that `level >= 100 × m`
    holds exactly when score >= m, for any minimum m with at most two decimals), within ±10⁹."""
    if not -1e7 < score < 1e7:
        return LEVEL_LIMIT if score > 0 else -LEVEL_LIMIT
    return floor(score * 100 + 1e-9)


def _number(value: Union[float, None]) -> Union[float, None]:
    return value if value is not None and math.isfinite(value) else None


def search_shard(trajectories: Sequence[Trajectory], page_of: dict[int, int]) -> bytes:
    """One step's search shard (see the module docstring): one pass over the texts in memory."""
    prompts: list[str] = []
    rows = []
    for group in group_trajectories(trajectories):
        prompt = -1
        if group[0].prompt:
            prompt = len(prompts)
            prompts.append(group[0].prompt)
        for traj in group:
            text, scores = response_text(traj)
            rows.append([traj.index, page_of.get(traj.index, 1), prompt, _number(traj.reward), traj.correct,
                         text, scores])
    value = {"v": SHARD_VERSION, "p": prompts, "t": rows}
    try:
        body = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # lone surrogates: \u escapes, still valid JavaScript
        body = json.dumps(value, separators=(",", ":")).encode()
    return b"tdShard(" + body + b");\n"


def shard_uri(prefix: str, slug: str, step: int) -> str:
    return f"{prefix}/{slug}/search/step-{step}.js"


def search_index(experiments: list[dict]) -> str:
    """The run's search index, one script for every search box of the site (so that a page's size
    does not grow with the number of experiments times steps): for each experiment its name, the
    folder of its shards and its steps ([step, trajectories, [page URLs], shard version]), links
    relative to the index's folder; a shard is fetched with `?v=<its version>` (a hash of its
    bytes), so that a browser never searches a stale copy of a changed step. Loaded like a shard: `tdSearchIndex(<JSON>);`."""
    body = json.dumps({"v": SHARD_VERSION, "experiments": experiments}, separators=(",", ":"))  # ASCII: any name
    return f"tdSearchIndex({body});\n"


def search_box(index: str, current: list[str], total: int, here: str) -> str:
    """The search box of the overview or an experiment page: `index`, the URL of the run's search
    index (`search_index`) relative to this page; `current`, the experiments searched by default
    (every one on the overview); `total`, the number of steps; `here`: "overview" or "experiment".
    The page script builds the form from the data attribute (not a <script>: Material's instant
    navigation re-runs those)."""
    data = {"index": index, "current": current, "here": here}
    return (f'<div class="td-search" data-search-exclude data-search="{attr(json.dumps(data, separators=(",", ":")))}">'
            '<h2 id="td-search">Search the run</h2>'
            f'<p class="td-note td-search-about">Text or a regular expression in the prompts and responses of '
            f'{counted(total, "step")}, loaded as you search. Press <kbd>/</kbd> to search '
            f'(<kbd>s</kbd> or <kbd>f</kbd>: the site search).</p></div>')
