"""Statistics per trajectory and aggregates per step. NaN and infinities never enter a mean."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_not, mul
from typing import Iterable, Union

from .model import ForkingCount, ListSummary, PromptGroup, StepData, StepSummary, Tokens, Trajectory

HISTOGRAM_WIDTH = 0.25  # entropy units per bin
HISTOGRAM_BINS = 41  # 0 to 10 in steps of 0.25, then one bin for 10 and above
TOP_FORKING = 50  # token strings kept per step for the experiment's forking-token table
PROMPT_CHARS = 400  # end of a prompt kept for the recurring-prompts page
EXCERPT_CHARS = 300  # opening of the best response kept there


@dataclass(slots=True)
class TokenStats:
    total: Union[int, None]  # None when token boundaries are unknown (marker files without a count)
    high: Union[int, None]  # None when the file marks no high-entropy tokens (`Tokens.flagged`)
    scored: int
    score_sum: float

    @property
    def ratio(self) -> Union[float, None]:
        return self.high / self.total if self.total and self.high is not None else None

    @property
    def mean_score(self) -> Union[float, None]:
        return self.score_sum / self.scored if self.scored else None


def token_stats(tokens: Union[Tokens, None], response_length: Union[int, None] = None) -> TokenStats:
    if tokens is None:
        return TokenStats(None, 0, 0, 0.0)
    finite = [s for s in tokens.scores if s is not None and math.isfinite(s)]
    total = response_length if tokens.segments else len(tokens)
    return TokenStats(total, sum(tokens.flags) if tokens.flagged else None, len(finite), sum(finite))


def finite_mean(values: Iterable[Union[float, None]]) -> Union[float, None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def trajectory_stats(traj: Trajectory) -> TokenStats:
    return token_stats(traj.tokens, traj.response_length)


def trajectory_table(trajectories: Iterable[Trajectory]) -> dict[int, TokenStats]:
    """Statistics of each trajectory, by index: computed once, used by the aggregates and the pages."""
    return {t.index: trajectory_stats(t) for t in trajectories}


def summarize_step(step: int, data: StepData, stats: Union[dict[int, TokenStats], None] = None) -> StepSummary:
    summary = StepSummary(step=step, problems=list(data.problems), unreadable=data.unreadable)
    trajs = data.trajectories
    stats = stats if stats is not None else trajectory_table(trajs)
    summary.trajectories = len(trajs)
    total = high = marked = scored = 0  # marked: the tokens of responses whose file marks high-entropy ones
    score_sum = 0.0
    for traj in trajs:
        st = stats[traj.index]
        if st.total:
            total += st.total
            if st.high is not None:
                high += st.high
                marked += st.total
        scored += st.scored
        score_sum += st.score_sum
    summary.tokens = total
    summary.high_entropy_tokens = high if marked or not total else None
    summary.high_entropy_ratio = high / marked if marked else None
    summary.mean_entropy = score_sum / scored if scored else None
    summary.mean_reward = finite_mean(t.reward for t in trajs)
    lengths = [float(t.response_length) for t in trajs if t.response_length is not None]
    summary.mean_response_length = finite_mean(lengths)
    summary.mean_accuracy = finite_mean(t.accuracy for t in trajs)
    summary.mean_policy_entropy = finite_mean(_scalar(t.metadata.get("policy_entropy")) for t in trajs)
    summary.mean_reflection = finite_mean(_scalar(t.metadata.get("reflection_pattern_score")) for t in trajs)
    summary.histogram = histogram(trajs)
    if any(t.token_values or t.turns for t in trajs):  # per-token channels: nothing to do without them
        means = channel_means(trajs)
        summary.mean_mismatch = means.get("mismatch")
        summary.mean_mismatch_kl = means.get("mismatch_kl")
        summary.mean_surprisal = means.get("surprisal")
    return summary


def finite_sum(values: list) -> tuple[float, int]:
    """Sum and count of the finite numbers of a per-token list (None, NaN, infinities and
    anything not a number left out). Guarantee: the same as adding them one by one in order
    (the plain twin `tests/plain.py: finite_sum`); fast because a list of finite floats (what
    readers produce) is added in one C call, with a check that the total is finite."""
    if values and set(map(type, values)) == {float}:
        total = sum(values)
        if math.isfinite(total):  # a NaN or an infinity makes the total non-finite
            return total, len(values)
    finite = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return (sum(finite), len(finite)) if finite else (0.0, 0)


def channel_means(trajectories: Iterable[Trajectory]) -> dict[str, float]:
    """Mean over all tokens of the step of the mismatch channels (|value| for `mismatch`) and of
    the surprisal (the channel, or −log-prob where only a log-prob is given: that is its definition)."""
    sums: dict[str, list] = {}

    def add(name: str, values: list, sign: float = 1.0) -> None:
        total, n = finite_sum(values)
        if n:
            row = sums.setdefault(name, [0.0, 0])
            row[0] += sign * total
            row[1] += n

    for traj in trajectories:
        for values in [traj.token_values] + [turn.token_values for turn in traj.turns]:
            if not values:
                continue
            if "mismatch" in values:
                add("mismatch", magnitudes(values["mismatch"]))
            if "mismatch_kl" in values:
                add("mismatch_kl", values["mismatch_kl"])
            if "surprisal" in values:
                add("surprisal", values["surprisal"])
            elif "logprob" in values:
                add("surprisal", values["logprob"], -1.0)
    return {name: total / n for name, (total, n) in sums.items()}


def magnitudes(values: list) -> list:
    """|value| of each number of a list, anything else kept as it is. Guarantee: the same as
    `_magnitude` value by value; fast because a list of floats only (what readers produce) is
    mapped with `abs` in C."""
    if values and set(map(type, values)) == {float}:
        return list(map(abs, values))
    return list(map(_magnitude, values))


def _magnitude(value: object) -> object:
    return abs(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _scalar(value: object) -> Union[float, None]:
    if isinstance(value, ListSummary):
        return value.mean
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def histogram(trajectories: Iterable[Trajectory]) -> list[int]:
    """Counts of finite entropy scores in fixed bins shared by every step (comparable over steps)."""
    counts = [0] * HISTOGRAM_BINS
    last = HISTOGRAM_BINS - 1
    bins: Counter[int] = Counter()
    for traj in trajectories:
        if traj.tokens is None:
            continue
        scored = list(compress(traj.tokens.scores, map(is_not, traj.tokens.scores, repeat(None))))
        if math.isfinite(sum(scored)):  # all finite: bin in C
            bins.update(map(int, map(mul, scored, repeat(1 / HISTOGRAM_WIDTH))))
        else:
            bins.update(int(v / HISTOGRAM_WIDTH) for v in scored if math.isfinite(v))
    for b, n in bins.items():
        counts[min(last, max(0, b))] += n
    return counts if any(counts) else []


def forking_tokens(trajectories: Iterable[Trajectory], top: int = TOP_FORKING) -> dict[str, ForkingCount]:
    """The step's most often flagged token strings, whitespace stripped (" Wait" and "Wait" are
    one; whitespace-only tokens count as " ", empty ones (special tokens decoded with
    skip_special_tokens) as ""), with their counts."""
    token_sets = [_text_tokens(t.tokens) for t in trajectories if t.tokens is not None and not t.tokens.segments]
    raw_flagged: Counter[str] = Counter()
    raw_seen: Counter[str] = Counter()
    for tokens in token_sets:  # count raw strings in C, strip only the distinct ones
        raw_flagged.update(compress(tokens.texts, tokens.flags))
        raw_seen.update(tokens.texts)
    flagged: Counter[str] = Counter()
    for text, n in raw_flagged.items():
        flagged[_forking_key(text)] += n
    table = {text: ForkingCount(0, n, 0.0, 0) for text, n in flagged.most_common(top)}
    key_of = {text: _forking_key(text) for text in raw_seen}  # each distinct text once
    for text, n in raw_seen.items():
        row = table.get(key_of[text])
        if row is not None:
            row.occurrences += n
    for tokens in token_sets:
        scored = compress(zip(tokens.texts, tokens.scores), map(is_not, tokens.scores, repeat(None)))
        for text, score in scored:
            row = table.get(key_of[text])
            if row is not None and math.isfinite(score):
                row.score_sum += score
                row.scored += 1
    return table


def _forking_key(text: str) -> str:
    return text.strip() or (" " if text else "")


def _text_tokens(tokens: Tokens) -> Tokens:
    """Tokens without the end-of-sequence entry (it has no text to count)."""
    if not tokens.end:
        return tokens
    return Tokens(tokens.texts[:-1], tokens.flags[:-1], tokens.scores[:-1], flagged=tokens.flagged)


def group_trajectories(trajectories: Iterable[Trajectory]) -> list[list[Trajectory]]:
    """Trajectories of one group (a GRPO group: the file's own group id where it writes one, else
    the same prompt), in order of first appearance; a trajectory with neither is a group of its own."""
    groups: dict[object, list[Trajectory]] = {}
    for traj in trajectories:
        key = ("group", traj.group) if traj.group is not None else \
            ("prompt", traj.prompt) if traj.prompt else ("alone", traj.index)
        groups.setdefault(key, []).append(traj)
    return list(groups.values())


def prompt_groups(trajectories: Iterable[Trajectory], page_of: dict[int, int]) -> list[PromptGroup]:
    """Per prompt of the step: a key, the prompt's end (where the question usually is), and the
    responses' rewards, with the best one's index, page and opening."""
    out = []
    for members in group_trajectories(trajectories):
        prompt = members[0].prompt
        if not prompt:
            continue
        rewards = [t.reward for t in members if t.reward is not None and math.isfinite(t.reward)]
        best = max(members, key=lambda t: t.reward if t.reward is not None and math.isfinite(t.reward) else -math.inf)
        text = best.pure_generated_text if best.pure_generated_text is not None else (
            "".join(best.tokens.texts) if best.tokens is not None else "")
        out.append(PromptGroup(
            key=hashlib.sha1(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:16],
            prompt=prompt[-PROMPT_CHARS:], responses=len(members),
            mean_reward=finite_mean(rewards),
            best_reward=max(rewards) if rewards else None,
            best_index=best.index, best_page=page_of.get(best.index, 1),
            best_start=text[:EXCERPT_CHARS],
        ))
    return out
