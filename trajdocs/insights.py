"""Views across steps and experiments, from per-step aggregates and the per-step extras
(forking tokens, prompt groups). Extras are streamed: never all steps' extras in memory at once."""

from __future__ import annotations

import csv
import io
import math
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple, Sequence, Union

import orjson

from .charts import Point, Series, line_chart, sparkline
from .model import ForkingCount, PromptGroup, StepExtras, StepSummary
from .stats import HISTOGRAM_WIDTH, TOP_FORKING, finite_mean
from .text import DASH, esc, fmt_number, fmt_ratio, fmt_stat, name_html

Getter = Callable[[StepSummary], Union[float, None]]
METRICS: list[tuple[str, str, Getter, Callable]] = [  # (key, title, value, format)
    ("reward", "Mean reward", lambda s: s.mean_reward, fmt_stat),
    ("accuracy", "Accuracy", lambda s: s.mean_accuracy, fmt_stat),  # acc, accuracy or a single reward_metrics.accuracy* value
    ("length", "Mean response length (tokens)", lambda s: s.mean_response_length, fmt_stat),
    ("ratio", "High-entropy ratio", lambda s: s.high_entropy_ratio, fmt_ratio),
    ("entropy", "Mean entropy of scored tokens", lambda s: s.mean_entropy, fmt_stat),
    ("policy", "Policy entropy", lambda s: s.mean_policy_entropy, fmt_stat),
    ("reflection", "Reflection pattern score", lambda s: s.mean_reflection, fmt_stat),
    ("mismatch", "Mean log-prob mismatch |inference − trainer| per token", lambda s: s.mean_mismatch, fmt_stat),
    ("mismatch_kl", "Mean mismatch KL (inference vs trainer) per token", lambda s: s.mean_mismatch_kl, fmt_stat),
    ("surprisal", "Mean surprisal (−log-prob) per token", lambda s: s.mean_surprisal, fmt_stat),
]
CSV_FIELDS = ("step", "trajectories", "mean_reward", "mean_accuracy", "mean_response_length",
              "high_entropy_ratio", "mean_entropy", "mean_policy_entropy", "mean_reflection", "mean_mismatch",
              "mean_mismatch_kl", "mean_surprisal", "tokens",
              "high_entropy_tokens", "problems", "unreadable")


class Run(NamedTuple):
    """One experiment as the views need it: name, step aggregates, and links to its step pages."""

    name: str
    summaries: Sequence[StepSummary]
    step_urls: Sequence[str]


def readable(run: Run) -> list[tuple[StepSummary, str]]:
    return [(s, u) for s, u in zip(run.summaries, run.step_urls) if not s.unreadable]


def experiment_charts(run: Run) -> str:
    rows = readable(run)
    charts = []
    for key, title, get, fmt in METRICS:
        if key == "accuracy":
            continue  # drawn with the reward
        points = [Point(s.step, get(s), url) for s, url in rows]
        if all(p.y is None for p in points):
            continue
        series = [Series(title, points)]
        if key == "reward" and any(s.mean_accuracy is not None for s, _ in rows):
            series = [Series("mean reward", points),
                      Series("accuracy", [Point(s.step, s.mean_accuracy, url) for s, url in rows])]
            title = "Mean reward and accuracy"
        charts.append(line_chart(title, series, fmt))
    charts.append(entropy_quantiles_chart([Run(run.name, [s for s, _ in rows], [u for _, u in rows])]))
    charts.append(histogram_overlay(rows))
    return f'<div class="td-charts">{"".join(c for c in charts if c)}</div>'


def quantile(counts: Sequence[int], q: float) -> Union[float, None]:
    """Approximate quantile of the scores behind a histogram (linear within a bin)."""
    total = sum(counts)
    if not total:
        return None
    target, seen = q * total, 0
    for i, n in enumerate(counts):
        if n and seen + n >= target:
            return (i + (target - seen) / n) * HISTOGRAM_WIDTH
        seen += n
    return len(counts) * HISTOGRAM_WIDTH


def entropy_quantiles_chart(runs: Sequence[Run]) -> str:
    series = []
    for run in runs:
        for q in (0.5, 0.9, 0.99):
            points = [Point(s.step, quantile(s.histogram, q), url) for s, url in zip(run.summaries, run.step_urls)
                      if s.histogram]
            if points:
                label = f"p{round(q * 100)}" if len(runs) == 1 else f"{run.name} p{round(q * 100)}"
                series.append(Series(label, points))
    return line_chart("Entropy scores over steps: median, 90th and 99th percentile", series, fmt_stat)


def histogram_overlay(rows: Sequence[tuple[StepSummary, str]]) -> str:
    with_hist = [s for s, _ in rows if s.histogram]
    if not with_hist:
        return ""
    picks = {id(s): s for s in (with_hist[0], with_hist[len(with_hist) // 2], with_hist[-1])}.values()
    series = []
    for s in picks:
        total = sum(s.histogram)
        series.append(Series(f"step {s.step}", [Point(i * HISTOGRAM_WIDTH, n / total)
                                                for i, n in enumerate(s.histogram)]))
    return line_chart("Entropy score distribution: first, middle and last step (share of scored tokens)",
                      series, fmt_ratio, x_label="entropy score")


def aggregates_csv(summaries: Sequence[StepSummary]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for s in summaries:
        row = [getattr(s, f) for f in CSV_FIELDS]
        row[CSV_FIELDS.index("problems")] = len(s.problems)
        if not s.tokens:  # no token arrays in the files (verl, LightRFT without entropy marking): empty, not 0
            row[CSV_FIELDS.index("tokens")] = row[CSV_FIELDS.index("high_entropy_tokens")] = None
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def aggregates_json(summaries: Sequence[StepSummary]) -> bytes:
    fields = (*CSV_FIELDS, "histogram")
    no_tokens = {"tokens": None, "high_entropy_tokens": None}  # no token arrays in the files: null, not 0
    return orjson.dumps([{f: getattr(s, f) for f in fields} | (no_tokens if not s.tokens else {}) for s in summaries])


# --- forking tokens -------------------------------------------------------------------------

FORKING_CHARS = 200  # characters of a token string the forking-tokens table shows


class ForkingTally:
    """An experiment's forking tokens, from each step's extras in two passes: totals
    (`count_step`), then, for the top tokens (`choose_top`), each step's share flagged
    (`add_shares`, for trends)."""

    def __init__(self, top: int = 30) -> None:
        self.top = top
        self.totals: dict[str, ForkingCount] = {}
        self.steps = 0
        self.series: dict[str, array] = {}  # token -> share flagged at each step (NaN: not seen)

    def count_step(self, extra: StepExtras) -> None:
        self.steps += 1
        for text, count in extra.forking.items():
            total = self.totals.get(text)
            if total is None:
                total = self.totals[text] = ForkingCount()
            total.occurrences += count.occurrences
            total.flagged += count.flagged
            total.score_sum += count.score_sum
            total.scored += count.scored

    def choose_top(self) -> bool:
        """Pick the top tokens; True when they changed (their series must be fed every step again)."""
        chosen = sorted(self.totals, key=lambda t: (-self.totals[t].flagged, t))[:self.top]
        if list(self.series) == chosen:
            return False
        self.series = {t: array("d") for t in chosen}
        return True

    def add_shares(self, extra: StepExtras) -> None:
        forking = extra.forking
        for text, series in self.series.items():
            count = forking.get(text)
            series.append(count.flagged / count.occurrences if count and count.occurrences else math.nan)

    def html(self) -> str:
        if not self.series:
            return ""
        third = max(1, self.steps // 3)
        head = ("<tr><th>Token</th><th>Flagged</th><th>Occurrences</th><th>Share flagged</th><th>Mean score</th>"
                f"<th>Share, first {third} steps</th><th>Share, last {third} steps</th><th>Share over steps</th></tr>")
        rows = []
        for text, series in self.series.items():
            total = self.totals[text]
            occ, flagged, score_sum, scored = total.occurrences, total.flagged, total.score_sum, total.scored
            early, late = finite_mean(series[:third]), finite_mean(series[-third:])
            share = flagged / occ if occ else None
            mean = score_sum / scored if scored else None
            shown = esc(text[:FORKING_CHARS]) if text.strip() else '<span class="td-null">(whitespace)</span>' if text \
                else '<span class="td-null">(empty: a special token)</span>'
            if len(text) > FORKING_CHARS:  # the whole token is in its steps' long texts (texts/step-<N>.json)
                shown += '<span class="td-null">… (cut: the whole token is in its steps\' long texts)</span>'
            rows.append(f'<tr><td><code class="td-tok">{shown}</code></td><td data-sort="{flagged}">{flagged}</td>'
                        f'<td data-sort="{occ}">{occ}</td><td data-sort="{_sort(share)}">{fmt_ratio(share)}</td>'
                        f'<td data-sort="{_sort(mean)}">{fmt_stat(mean)}</td>'
                        f'<td data-sort="{_sort(early)}">{fmt_ratio(early)}</td>'
                        f'<td data-sort="{_sort(late)}">{fmt_ratio(late)}</td><td>{sparkline(series)}</td></tr>')
        return (f'<table class="td-table td-sortable td-forking"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
                f'<p class="td-note">Counted per step, from that step\'s {TOP_FORKING} most often flagged token strings '
                '(whitespace stripped): a string\'s flags, occurrences and scores count only at the steps where it is '
                'one of them, so a step where it occurs but is not flagged (or is flagged less often than that step\'s '
                f'{TOP_FORKING}th string) adds nothing and shows no share (—). Share flagged: flagged ÷ occurrences so counted. '
                'The end of sequence is not counted.</p>')


def _sort(value: Union[float, None]) -> str:
    return "" if value is None else repr(value)


# --- across experiments ---------------------------------------------------------------------

def comparison_charts(runs: Sequence[Run]) -> str:
    charts = []
    for _, title, get, fmt in METRICS:
        series = [Series(run.name, [Point(s.step, get(s), url) for s, url in readable(run)]) for run in runs]
        if any(p.y is not None for ser in series for p in ser.points):
            charts.append(line_chart(title, series, fmt))
    return f'<div class="td-charts">{"".join(charts)}</div>'


def comparison_table(runs: Sequence[Run], urls: Sequence[str]) -> str:
    """Latest value of every metric per experiment; for reward and accuracy also the best, with its step."""
    metrics = [m for m in METRICS if any(m[2](s) is not None for run in runs for s, _ in readable(run))]
    head = "<tr><th>Experiment</th><th>Latest step</th>"
    for key, title, _, _ in metrics:
        head += f"<th>{esc(title)}</th>" + ("<th>best (step)</th>" if key in ("reward", "accuracy") else "")
    rows = []
    for run, url in zip(runs, urls):
        steps = readable(run)
        cells = [f'<td><a href="{esc(url)}">{name_html(run.name)}</a></td>',
                 f"<td>{steps[-1][0].step if steps else DASH}</td>"]
        for key, _, get, fmt in metrics:
            values = [(get(s), s.step) for s, _ in steps if get(s) is not None and math.isfinite(get(s))]
            latest = values[-1] if values else None
            cells.append(f'<td data-sort="{"" if latest is None else latest[0]}">{fmt(latest[0]) if latest else DASH}</td>')
            if key in ("reward", "accuracy"):
                best = max(values, key=lambda v: v[0]) if values else None
                cells.append(f'<td data-sort="{"" if best is None else best[0]}">'
                             f'{f"{fmt(best[0])} ({best[1]})" if best else DASH}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="td-scroll"><table class="td-table td-sortable td-compare"><thead>{head}</thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>'
            '<p class="td-note">Latest: the value at each experiment\'s last readable step; best: the highest '
            'over steps, with its step. Experiments are compared by step number.</p>')


# --- recurring prompts ----------------------------------------------------------------------

class PromptUse(NamedTuple):
    experiment: str
    step: int
    url: str
    group: PromptGroup


class PromptTally:
    """Prompts seen at two or more steps (datasets are revisited every epoch), in two passes:
    count each prompt's occurrences (`count`), then keep the rows of the most frequent `limit`
    prompts (`choose_recurring`; at most `per_prompt` occurrences each, as table rows:
    `add_row`), so memory stays bounded."""

    def __init__(self, limit: int = 100, per_prompt: int = 60) -> None:
        self.limit, self.per_prompt = limit, per_prompt
        self.counts: Counter[str] = Counter()
        self.rows: dict[str, list[str]] = {}
        self.prompts: dict[str, str] = {}

    def count(self, groups: Iterable[PromptGroup]) -> None:
        self.counts.update(g.key for g in groups)

    def choose_recurring(self) -> bool:
        """Pick the prompts to show; True when they changed (their rows must be collected again)."""
        recurring = [(n, k) for k, n in self.counts.items() if n > 1]
        chosen = [k for _, k in sorted(recurring, key=lambda nk: (-nk[0], nk[1]))[:self.limit]]
        if list(self.rows) == chosen:
            return False
        self.rows, self.prompts = {k: [] for k in chosen}, {}
        return True

    def add_row(self, use: PromptUse) -> None:
        g = use.group
        rows = self.rows.get(g.key)
        if rows is not None and len(rows) < self.per_prompt:
            self.prompts.setdefault(g.key, g.prompt)
            rows.append(f'<tr><td>{esc(use.experiment)}</td><td><a href="{esc(use.url)}">{use.step}</a></td>'
                        f'<td>{g.responses}</td><td>{fmt_stat(g.mean_reward)}</td>'
                        f'<td>{fmt_number(g.best_reward)}</td>'
                        f'<td class="td-opening"><pre class="td-excerpt">{esc(g.best_start)}</pre></td></tr>')

    def html(self) -> str:
        if not self.rows:
            return "<p>No prompt occurs at more than one step yet.</p>"
        sections = []
        for key, rows in self.rows.items():
            prompt = self.prompts.get(key, "")
            total = self.counts[key]
            shown = "" if total == len(rows) else f" (the first {len(rows)} shown)"
            sections.append(
                f'<section class="td-prompt-use" id="prompt-{key}"><h2>Prompt seen at {total} steps{shown}</h2>'
                f'<details class="td-prompt"><summary>Prompt (its last {len(prompt)} characters)</summary>'
                f'<pre class="td-text">\n{esc(prompt)}</pre></details>'
                '<table class="td-table td-sortable"><thead><tr><th>Experiment</th><th>Step</th><th>Responses</th>'
                '<th>Mean reward</th><th>Best reward</th><th class="td-opening">Best response, opening</th></tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table></section>')
        return "".join(sections)


# --- merging the steps' extras --------------------------------------------------------------

@dataclass
class MergedViews:
    """The views merged from the step extras, and what they were merged from (see `merge_views`)."""

    path: str
    steps: dict[str, list[tuple[int, str]]]  # experiment page -> (step, cache key) of readable steps
    forking: dict[str, ForkingTally]
    prompts: PromptTally
    views: dict[str, str]  # page -> HTML


def merge_views(previous: Union[MergedViews, None], path: str, steps: dict[str, list[tuple[int, str]]],
                names: dict[str, str], extras_of: Callable[[str], StepExtras],
                step_link: Callable[[str, int, int], str], prompts_page: str) -> MergedViews:
    """Views merged from every step's extras (forking tokens per experiment page, recurring
    prompts on `prompts_page`): two passes over the extras. `steps`: each experiment page's
    readable steps as (step, cache key); `names`: the experiments' names; `step_link(page, step,
    n)`: the link from the prompts page to page n of a step. While `serve` follows a run that only
    appends steps, `previous` tallies are kept and only the new steps are read."""
    old = previous
    if old is not None and not (old.path == path and all(
            steps.get(uri, [])[:len(seen)] == seen for uri, seen in old.steps.items())):
        old = None  # not only appended steps: merge everything again
    if old is not None and steps == old.steps:
        return old
    forking: dict[str, ForkingTally] = old.forking if old else {}
    prompts = old.prompts if old else PromptTally()
    seen = old.steps if old else {}
    for uri in steps:
        forking.setdefault(uri, ForkingTally())
    for uri, run_steps in steps.items():
        for _, key in run_steps[len(seen.get(uri, [])):]:
            extra = extras_of(key)
            forking[uri].count_step(extra)
            prompts.count(extra.prompts)
    refeed = {uri for uri in steps if forking[uri].choose_top()}
    all_prompts = prompts.choose_recurring()
    for uri, run_steps in steps.items():
        for i, (step, key) in enumerate(run_steps):
            is_new = i >= len(seen.get(uri, []))
            feed_forking, feed_prompts = is_new or uri in refeed, is_new or all_prompts
            if not (feed_forking or feed_prompts):
                continue
            extra = extras_of(key)
            if feed_forking:
                forking[uri].add_shares(extra)
            if feed_prompts:
                for group in extra.prompts:
                    if group.key in prompts.rows:
                        url = f"{step_link(uri, step, group.best_page)}#traj-{group.best_index}"
                        prompts.add_row(PromptUse(names[uri], step, url, group))
    views = {uri: forking[uri].html() for uri in steps}
    views[prompts_page] = prompts.html()
    return MergedViews(path, steps, {u: forking[u] for u in steps}, prompts, views)
