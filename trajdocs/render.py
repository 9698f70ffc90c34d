"""HTML fragments for step, experiment and overview pages. Every text from a file goes through `esc`."""

from __future__ import annotations

import math
from html import escape
from typing import Sequence, Union

from .model import Experiment, ListSummary, MetaValue, StepData, StepSummary, Tokens, Trajectory
from .stats import TokenStats, trajectory_stats

DASH = "—"
TOGGLES = (  # (key, label, on by default) — the seed viewer's display options
    ("scores", "Entropy score", True),
    ("meta", "Metadata", True),
    ("stats", "Statistics", True),
    ("gen", "generated_text", False),
    ("pure", "pure_generated_text", False),
)


def esc(text: str) -> str:
    """Escape text for element content. CR is written as a reference: the HTML parser would turn
    a raw CR into LF; NUL cannot appear in an HTML document at all, so it becomes U+FFFD here."""
    out = escape(text, quote=False)
    if "\r" in out:
        out = out.replace("\r", "&#13;")
    if "\x00" in out:
        out = out.replace("\x00", "\ufffd")
    return out


def attr(text: str) -> str:
    return esc(text).replace('"', "&quot;")


def fmt_number(x: Union[float, int, None]) -> str:
    if x is None:
        return DASH
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x == 0:
        return "0"
    if abs(x) < 1e-3:
        return f"{x:.3e}"
    return f"{x:.4f}".rstrip("0").rstrip(".") if x != int(x) or abs(x) < 1e15 else f"{x:.6g}"


def fmt_ratio(x: Union[float, None]) -> str:
    return DASH if x is None else f"{100 * x:.1f}%"


def fmt_value(value: MetaValue) -> str:
    """Metadata value as escaped HTML."""
    if isinstance(value, ListSummary):
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


def tokens_html(tokens: Tokens) -> str:
    """One span per token: class "h" marks a high-entropy token, data-e carries a score."""
    parts = []
    append = parts.append
    for text, high, score in zip(tokens.texts, tokens.flags, tokens.scores):
        cls = ' class="h"' if high else ""
        if score is None:
            append(f"<span{cls}>{esc(text)}</span>")
        else:
            append(f'<span{cls} data-e="{_score(score)}">{esc(text)}</span>')
    return "".join(parts)


def _score(score: float) -> str:
    if math.isfinite(score):
        return f"{score:.4g}"
    return "NaN" if math.isnan(score) else ("Infinity" if score > 0 else "-Infinity")


def stats_html(st: TokenStats) -> str:
    items = [
        ("Total tokens", DASH if st.total is None else str(st.total)),
        ("High-entropy tokens", str(st.high)),
        ("High-entropy ratio", fmt_ratio(st.ratio)),
        ("Average entropy", fmt_number(st.mean_score)),
    ]
    cells = "".join(f'<div><dt>{k}</dt><dd>{v}</dd></div>' for k, v in items)
    note = ""
    if st.scored:
        note = f'<p class="td-note">Average over the {st.scored} tokens that carry a score.</p>'
    return f'<dl class="td-stats">{cells}</dl>{note}'


def metadata_html(meta: dict[str, MetaValue]) -> str:
    if not meta:
        return ""
    rows = "".join(f"<div><dt>{esc(k)}</dt><dd>{fmt_value(v)}</dd></div>" for k, v in meta.items())
    return f'<dl class="td-meta">{rows}</dl>'


def text_block(label: str, cls: str, text: Union[str, None]) -> str:
    if text is None:
        return ""
    return (f'<div class="{cls}"><div class="td-label">{label}</div>'
            f'<pre class="td-text">{esc(text)}</pre></div>')


def trajectory_html(traj: Trajectory) -> str:
    st = trajectory_stats(traj)
    meta = traj.metadata
    title = [f"Trajectory {traj.index}"]
    for key in ("experience_index", "sample_in_exp"):
        if key in meta and not isinstance(meta[key], ListSummary):
            title.append(f"{key.split('_')[0]} {esc(str(meta[key]))}")
    head = (f'<h2 class="td-traj-title" id="traj-{traj.index}">{" · ".join(title)}'
            f'<span class="td-reward">reward {esc(fmt_number(traj.reward))}</span></h2>')
    parts = [f'<section class="td-traj" data-index="{traj.index}">', head, stats_html(st), metadata_html(meta)]
    if traj.prompt is not None:
        parts.append(f'<details class="td-prompt"><summary>Prompt</summary><pre class="td-text">{esc(traj.prompt)}</pre></details>')
    elif traj.full_sequence is not None:
        parts.append(f'<details class="td-prompt"><summary>Full sequence</summary><pre class="td-text">{esc(traj.full_sequence)}</pre></details>')
    if traj.tokens is not None:
        parts.append(f'<div class="td-label">Response · {len(traj.tokens)} {"segments" if traj.tokens.segments else "tokens"}</div>')
        parts.append(f'<div class="td-tokens">{tokens_html(traj.tokens)}</div>')
    elif traj.pure_generated_text is not None:
        parts.append('<div class="td-label">Response (no token data in this file)</div>')
        parts.append(f'<div class="td-tokens td-plain">{esc(traj.pure_generated_text)}</div>')
    gen = traj.generated_text
    if gen is None and traj.prompt_tail is not None and traj.pure_generated_text is not None:
        gen = traj.prompt_tail + traj.pure_generated_text
    parts.append(text_block("generated_text", "td-gen", gen))
    parts.append(text_block("pure_generated_text", "td-pure", traj.pure_generated_text))
    parts.append("</section>")
    return "".join(parts)


def controls_html() -> str:
    boxes = "".join(
        f'<label><input type="checkbox" data-td-toggle="{key}"{" checked" if on else ""}> {label}</label>'
        for key, label, on in TOGGLES)
    return f'<div class="td-controls" role="group" aria-label="Display options">{boxes}</div>'


LEGEND = ('<p class="td-legend"><span class="td-swatch">highlighted</span> '
          'tokens are high-entropy ("forking") tokens as flagged in the file; hover or focus one to '
          'see its entropy score.</p>')


def problems_html(summary: StepSummary, path: str) -> str:
    if summary.unreadable:
        return (f'<div class="admonition failure td-problem"><p class="admonition-title">Unreadable step file</p>'
                f'<p><code>{esc(path)}</code>: {esc(summary.unreadable)}</p></div>')
    if not summary.problems:
        return ""
    items = "".join(f"<li>{esc(p)}</li>" for p in summary.problems)
    return (f'<div class="admonition warning td-problem"><p class="admonition-title">Problems in '
            f'<code>{esc(path)}</code></p><ul>{items}</ul></div>')


def step_fragment(data: StepData, summary: StepSummary, path: str) -> str:
    """Body of a step page, everything below the page heading and step links."""
    off = "".join(f" td-off-{key}" for key, _, on in TOGGLES if not on)
    parts = [f'<div class="td-step{off}">', problems_html(summary, path)]
    if data.trajectories:
        parts.append(controls_html())
        if any(t.tokens is not None for t in data.trajectories):
            parts.append(LEGEND)
        parts.append(step_summary_line(summary))
        parts.extend(trajectory_html(t) for t in data.trajectories)
    parts.append("</div>")
    return "".join(parts)


def step_summary_line(s: StepSummary) -> str:
    return (f'<p class="td-step-summary">{s.trajectories} trajectories · mean reward '
            f'{fmt_number(s.mean_reward)} · mean response length {fmt_number(s.mean_response_length)} tokens · '
            f'high-entropy ratio {fmt_ratio(s.high_entropy_ratio)} · mean entropy {fmt_number(s.mean_entropy)}</p>')


def step_links(prev: Union[tuple[str, int], None], up: tuple[str, str],
               next_: Union[tuple[str, int], None]) -> str:
    """Previous / up / next links; each link is (url, label)."""
    left = (f'<a class="td-prev" href="{attr(prev[0])}" rel="prev">← Step {prev[1]}</a>'
            if prev else '<span class="td-prev"></span>')
    right = (f'<a class="td-next" href="{attr(next_[0])}" rel="next">Step {next_[1]} →</a>'
             if next_ else '<span class="td-next"></span>')
    middle = f'<a class="td-up" href="{attr(up[0])}">↑ {esc(up[1])}</a>'
    return f'<nav class="td-steplinks" aria-label="Steps">{left}{middle}{right}</nav>'


def experiment_table(summaries: Sequence[StepSummary], urls: Sequence[str]) -> str:
    head = ("<tr><th>Step</th><th>Trajectories</th><th>Mean reward</th><th>Mean response length</th>"
            "<th>High-entropy ratio</th><th>Mean entropy</th><th>Status</th></tr>")
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
            f"<td>{fmt_number(s.mean_reward)}</td><td>{fmt_number(s.mean_response_length)}</td>"
            f"<td>{fmt_ratio(s.high_entropy_ratio)}</td><td>{fmt_number(s.mean_entropy)}</td><td>{status}</td></tr>")
    return f'<table class="td-table td-steps"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def latest_readable(summaries: Sequence[StepSummary]) -> Union[StepSummary, None]:
    return next((s for s in reversed(summaries) if not s.unreadable), None)


def overview_table(rows: Sequence[tuple[Experiment, Sequence[StepSummary], str]]) -> str:
    head = ("<tr><th>Experiment</th><th>Steps</th><th>Step range</th><th>Trajectories</th>"
            "<th>Latest step</th><th>Latest mean reward</th><th>Latest high-entropy ratio</th></tr>")
    body = []
    for exp, summaries, url in rows:
        latest = latest_readable(summaries)
        first, last = summaries[0].step, summaries[-1].step
        body.append(
            f'<tr><td><a href="{attr(url)}">{esc(exp.name)}</a></td><td>{len(summaries)}</td>'
            f"<td>{first}–{last}</td><td>{sum(s.trajectories for s in summaries)}</td>"
            f"<td>{DASH if latest is None else latest.step}</td>"
            f"<td>{fmt_number(latest.mean_reward if latest else None)}</td>"
            f"<td>{fmt_ratio(latest.high_entropy_ratio if latest else None)}</td></tr>")
    return f'<table class="td-table td-experiments"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
