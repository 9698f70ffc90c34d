"""The small data model every reader produces and every renderer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(slots=True)
class Tokens:
    """Response tokens as parallel lists: text, high-entropy flag, entropy score (None if absent)."""

    texts: list[str] = field(default_factory=list)
    flags: list[bool] = field(default_factory=list)
    scores: list[Union[float, None]] = field(default_factory=list)
    segments: bool = False  # entries are marked text runs (older saver), not single tokens
    end: bool = False  # the last entry is the end-of-sequence token: its flag and score, no text written
    ids: bool = False  # texts are token ids written as numbers: no tokenizer was given to decode them
    flagged: bool = False  # the file marks high-entropy tokens (LightRFT); else `flags` are all False: none marked

    def __len__(self) -> int:
        return len(self.texts)


@dataclass(slots=True)
class ListSummary:
    """A per-token list (advantages, log-probs, ...) shown as its length and range, never dumped."""

    length: int
    mean: Union[float, None]
    min: Union[float, None]
    max: Union[float, None]
    non_numeric: int = 0
    values: tuple = ()  # the values themselves when the list is short (at most SHORT_LIST)


Scalar = Union[str, int, float, bool, None]
MetaValue = Union[Scalar, ListSummary]


# Per-token channels a page can colour by, beside the entropy in `Tokens.scores`: the name a
# reader uses as a key of `Trajectory.token_values` -> what the channel is, as pages label it.
CHANNELS: dict[str, str] = {
    "surprisal": "surprisal (−log-prob of the sampled token)",
    "mismatch": "log-prob mismatch |inference − trainer|",
    "mismatch_kl": "mismatch KL (inference vs trainer)",
    "advantage": "advantage",
    "token_reward": "token reward",
    "logprob": "log-prob",
    "ref_logprob": "reference log-prob",
    "importance_ratio": "importance ratio",
}


@dataclass(slots=True)
class Turn:
    """One message of a multi-turn conversation: its role as written; a model turn has its tokens
    (and per-token values, keyed like `Trajectory.token_values`), other turns plain text."""

    role: str
    text: Union[str, None] = None
    tokens: Union[Tokens, None] = None
    token_values: dict[str, list] = field(default_factory=dict)


@dataclass(slots=True)
class Trajectory:
    index: int
    tokens: Union[Tokens, None] = None
    prompt_tail: Union[str, None] = None  # last prompt token, first entry of generated_tokens
    prompt: Union[str, None] = None
    full_sequence: Union[str, None] = None
    generated_text: Union[str, None] = None
    pure_generated_text: Union[str, None] = None
    reward: Union[float, None] = None
    response_length: Union[int, None] = None
    metadata: dict[str, MetaValue] = field(default_factory=dict)
    advantage: Union[float, None] = None  # sequence-level: the scalar, or the mean of a per-token list
    accuracy: Union[float, None] = None  # a per-trajectory accuracy field (or the `correct` rule's verdict)
    correct: Union[bool, None] = None  # only from such a field (1 / 0, true / false) or the rule: never guessed
    token_values: dict[str, list] = field(default_factory=dict)  # per-token channels (see CHANNELS), aligned with tokens
    image_files: list[str] = field(default_factory=list)  # relative to the step file's folder
    image_data: list[str] = field(default_factory=list)  # base64 PNG
    rewards: dict[str, Union[float, None]] = field(default_factory=dict)  # named reward parts as written, no total
    group: Union[str, None] = None  # the file's own group id (GRPO group, prompt index, uid); else by prompt
    turns: list[Turn] = field(default_factory=list)  # a multi-turn conversation, in order (prompt turns too)
    source: Union[str, None] = None  # the file a trajectory came from, when a step has several


@dataclass(slots=True)
class StepData:
    """Everything read from one step file; `problems` are human-readable, located messages."""

    trajectories: list[Trajectory] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    unreadable: Union[str, None] = None


@dataclass(slots=True)
class StepFile:
    """One step of an experiment: its file, or the files or line ranges that hold it."""

    step: int
    path: str  # the (first) file, named in messages
    parts: tuple = ()  # (path, start, end) byte ranges (end -1: to the end) when not just `path` whole
    fmt: str = ""  # the format that claimed the file by its path ("" when found some other way)

    def ranges(self) -> tuple:
        return self.parts or ((self.path, 0, -1),)


@dataclass(slots=True)
class Experiment:
    name: str  # path under its root, shown to people
    slug: str  # URL-safe, unique in the site
    folder: str
    steps: list[StepFile] = field(default_factory=list)
    view: str = ""  # e.g. "validation", "eval": one of several views of one run (see `run`)
    run: str = ""  # the name shared by a run's views ("" when the experiment has one view)


@dataclass(slots=True)
class StepSummary:
    """Per-step aggregates: all that lives across pages (JSON-serialisable for the cache)."""

    step: int
    trajectories: int = 0
    tokens: int = 0
    high_entropy_tokens: Union[int, None] = 0  # None: no response of the step has high-entropy marks in its file
    mean_reward: Union[float, None] = None
    mean_response_length: Union[float, None] = None
    high_entropy_ratio: Union[float, None] = None
    mean_entropy: Union[float, None] = None
    problems: list[str] = field(default_factory=list)
    unreadable: Union[str, None] = None
    pages: int = 1
    images: list[str] = field(default_factory=list)  # image files to copy, relative to the step file
    mean_accuracy: Union[float, None] = None
    mean_policy_entropy: Union[float, None] = None
    mean_reflection: Union[float, None] = None
    histogram: list[int] = field(default_factory=list)  # entropy scores per HISTOGRAM_BINS bin
    cut_texts: int = 0  # texts shown cut on the step's pages, published whole (render.long_texts)
    mean_mismatch: Union[float, None] = None  # mean |inference − trainer log-prob| over tokens (`mismatch` channel)
    mean_mismatch_kl: Union[float, None] = None  # mean of the `mismatch_kl` channel over tokens
    mean_surprisal: Union[float, None] = None  # mean surprisal (the channel, or −log-prob) over tokens
    shard_version: str = ""  # a hash of the step's search shard, for its URL (`pages.Site.search_index`)


@dataclass(slots=True)
class StepResult:
    """One step file's outcome in a build: its cache key, its aggregates, whether they came from the cache."""

    key: str
    summary: StepSummary
    cached: bool


@dataclass(slots=True)
class ExperimentRun:
    """One experiment in a built site: its steps' aggregates and where its pages go."""

    exp: Experiment
    summaries: list[StepSummary]
    page_uri: str  # the page showing it: its own, or for a view of a run the run's page
    step_uris: list[str]
    keys: list[str] = field(default_factory=list)  # cache keys of the steps
    own_uri: str = ""  # `<path>/<slug>/index.md`, unique per experiment or view: keys its downloads and merged views


@dataclass(slots=True)
class StepPage:
    """One generated step page: its experiment, its step and which of the step's pages it is."""

    run: ExperimentRun
    position: int  # index into the experiment's steps / summaries
    key: str
    page: int = 1  # a step with many trajectories spans several pages


@dataclass(slots=True)
class Generated:
    """A file the site gets that is not in the docs folder: a page (its Markdown `content`) or a
    copy of the file at `source`."""

    uri: str
    content: Union[str, None] = None
    source: Union[str, None] = None
    in_nav: bool = True


@dataclass(slots=True)
class ForkingCount:
    """How one token string (whitespace stripped) fared in a step, or summed over steps."""

    occurrences: int = 0
    flagged: int = 0
    score_sum: float = 0.0
    scored: int = 0  # occurrences with a finite entropy score

    def to_json(self) -> list:
        return [self.occurrences, self.flagged, self.score_sum, self.scored]


@dataclass(slots=True)
class PromptGroup:
    """The responses to one prompt in one step (a GRPO group), for the recurring-prompts page."""

    key: str  # a hash of the whole prompt
    prompt: str  # its last PROMPT_CHARS characters
    responses: int
    mean_reward: Union[float, None]
    best_reward: Union[float, None]
    best_index: int  # the best response's trajectory ...
    best_page: int  # ... and the step page it is on
    best_start: str  # the best response's opening

    @classmethod
    def from_json(cls, value: dict) -> "PromptGroup":
        return cls(value["key"], value["prompt"], value["responses"], value["mean_reward"],
                   value["best_reward"], value["best_index"], value.get("best_page", 1), value["best_start"])


@dataclass(slots=True)
class StepExtras:
    """What one step adds to the experiment-wide views; stored in the cache as JSON (`to_json`,
    `from_json`: the same lists and objects as ever)."""

    forking: dict[str, ForkingCount] = field(default_factory=dict)
    prompts: list[PromptGroup] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"forking": {text: count.to_json() for text, count in self.forking.items()},
                "prompts": [{"key": g.key, "prompt": g.prompt, "responses": g.responses,
                             "mean_reward": g.mean_reward, "best_reward": g.best_reward,
                             "best_index": g.best_index, "best_page": g.best_page,
                             "best_start": g.best_start} for g in self.prompts]}

    @classmethod
    def from_json(cls, value: dict) -> "StepExtras":
        return cls({text: ForkingCount(*row) for text, row in value.get("forking", {}).items()},
                   [PromptGroup.from_json(g) for g in value.get("prompts", [])])
