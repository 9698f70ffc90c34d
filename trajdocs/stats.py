"""Statistics per trajectory and aggregates per step. NaN and infinities never enter a mean."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Union

from .model import StepData, StepSummary, Tokens, Trajectory


@dataclass(slots=True)
class TokenStats:
    total: Union[int, None]  # None when token boundaries are unknown (marker files without a count)
    high: int
    scored: int
    score_sum: float

    @property
    def ratio(self) -> Union[float, None]:
        return self.high / self.total if self.total else None

    @property
    def mean_score(self) -> Union[float, None]:
        return self.score_sum / self.scored if self.scored else None


def token_stats(tokens: Union[Tokens, None], response_length: Union[int, None] = None) -> TokenStats:
    if tokens is None:
        return TokenStats(None, 0, 0, 0.0)
    finite = [s for s in tokens.scores if s is not None and math.isfinite(s)]
    total = response_length if tokens.segments else len(tokens)
    return TokenStats(total, sum(tokens.flags), len(finite), sum(finite))


def finite_mean(values: Iterable[Union[float, None]]) -> Union[float, None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def trajectory_stats(traj: Trajectory) -> TokenStats:
    return token_stats(traj.tokens, traj.response_length)


def summarize_step(step: int, data: StepData) -> StepSummary:
    summary = StepSummary(step=step, problems=list(data.problems), unreadable=data.unreadable)
    trajs = data.trajectories
    summary.trajectories = len(trajs)
    total = high = scored = 0
    score_sum = 0.0
    for traj in trajs:
        st = trajectory_stats(traj)
        if st.total:
            total += st.total
            high += st.high
        scored += st.scored
        score_sum += st.score_sum
    summary.tokens, summary.high_entropy_tokens = total, high
    summary.high_entropy_ratio = high / total if total else None
    summary.mean_entropy = score_sum / scored if scored else None
    summary.mean_reward = finite_mean(t.reward for t in trajs)
    lengths = [float(t.response_length) for t in trajs if t.response_length is not None]
    summary.mean_response_length = finite_mean(lengths)
    return summary
