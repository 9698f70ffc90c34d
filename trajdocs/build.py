"""The build pipeline, free of MkDocs. The stages, in order:

1. discover  `discover_runs`: mirror remote roots, find the experiments and their step files
             (`discover.py`, names claimed by the formats in `formats/`), drop duplicate steps.
2. summarise `StepBuild.start`: each step file's cache entry, or a fresh read + summary +
             render (`render_step`) on worker processes (`run_jobs`, the one executor), in a
             background thread while MkDocs gathers the docs; `StepBuild.results` waits for it.
             Of many new steps the last eighth is only summarised here ...
3. render    ... and rendered by one more worker while MkDocs writes the pages on the other core;
             `StepBuild.finish` waits for it and returns those steps' final aggregates. Every
             wait for background work goes through `_join`.
4. place     step pages get their rendered HTML, as bytes from the cache, spliced in where their
             marker sits (`inject.py`, `StepCache.place_page`: hard links where it can).

The MkDocs plugin (`plugin.py`) calls these stages from its events; `trajdocs build` runs MkDocs
with a temporary configuration, so it drives the same pipeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from .cache import StepCache, json_bytes, shard_file, step_key, write_entry
from .discover import drop_duplicates, duplicate_steps, find_experiments
from .model import Experiment, ForkingCount, StepData, StepExtras, StepFile, StepResult, StepSummary
from .formats import loads, read_step
from .remote import is_url, mirror
from .render import TOKEN_CHARS, RenderOptions, long_texts, step_fragments, step_pages
from .search import search_shard
from .stats import forking_tokens, prompt_groups, summarize_step, trajectory_table
from .text import esc, shown_name

Warn = Callable[[str], None]


# --- 1. discover ----------------------------------------------------------------------------

@dataclass
class Discovery:
    roots: list[str]  # local folders (remote roots mirrored into the cache)
    experiments: list[Experiment]
    allowed: list[str]  # real folders whose files may be published


def discover_runs(roots: list[str], labels: list[str], cache_folder: str, skip: tuple[str, ...],
                  allow_outside: tuple[str, ...], warn: Warn, mapping: str = "") -> Discovery:
    """Stage 1: the experiments under `roots`, one file per step; every problem goes to `warn`.
    `mapping`: the option (JSON text), whose files pattern claims files too."""
    local = []
    for root in roots:
        if is_url(root):  # copied into the cache, only what is new or changed
            root, problems = mirror(root, cache_folder, mapping)
            for problem in problems:
                warn(problem)
        elif not os.path.isdir(root):
            warn(f"runs folder not found: {root}")
        local.append(root)
    skipped: list[str] = []
    experiments = find_experiments(local, labels, skip=skip, problems=skipped, allow_outside=allow_outside,
                                   mapping=mapping)
    for message in skipped:
        warn(message)
    for exp in experiments:
        for step, paths in duplicate_steps(exp):
            warn(f"{shown_name(exp.folder)}: step {step} has more than one file: "
                 f"{', '.join(shown_name(os.path.basename(p)) for p in paths)}; shown: "
                 f"{shown_name(os.path.basename(paths[0]))} (the number without leading zeros, "
                 "else the first name in sort order)")
        drop_duplicates(exp)
    allowed = [os.path.realpath(r) for r in local if r] + [os.path.realpath(a) for a in allow_outside]
    return Discovery(local, experiments, allowed)


# --- 2. summarise and 3. render: one step file ----------------------------------------------

def render_step(step_file: StepFile | str, fmt: str, options: RenderOptions,
                render: bool = True, shard: list | None = None) -> tuple[StepSummary, list[str], StepExtras, dict]:
    """Read, summarise and render one step (its file, or the files or ranges holding it):
    aggregates, page bodies, the extras that experiment-wide views merge (forking tokens, prompt
    groups), and the texts the pages show cut. With `render` false only the aggregates (the same
    ones) and the cut texts. The step's search shard (`search.search_shard`) is appended to
    `shard` if given. Never raises."""
    if isinstance(step_file, str):
        step_file = StepFile(0, step_file)
    step, path = step_file.step, step_file.path
    data = read_step(step_file, fmt, options.max_file_bytes, ctx=options.read_context())
    fragments: list[str] = []
    extras = StepExtras()
    texts: dict = {}
    try:
        stats = trajectory_table(data.trajectories)
        summary = summarize_step(step, data, stats)
        texts = long_texts(data, options)
        summary.cut_texts = len(texts)
        if render:
            page_of: dict[int, int] = {}
            fragments = step_fragments(data, summary, path, options, page_of, stats)
            extras = StepExtras(cut_keys(forking_tokens(data.trajectories)),
                                prompt_groups(data.trajectories, page_of))
            summary.pages = len(fragments)
        else:
            pages = step_pages(data, options)
            page_of = {t.index: number for number, groups in enumerate(pages, 1) for g in groups for t in g}
            summary.pages = len(pages)
        if shard is not None:
            shard.append(search_shard(data.trajectories, page_of))
    except Exception as err:  # noqa: BLE001 - one odd file must not stop the build
        summary = summarize_step(step, StepData(unreadable=f"could not be rendered ({type(err).__name__}: {err})"))
        fragments = [f'<div class="td-step"><p>{esc(summary.unreadable or "")}</p></div>']
        extras, texts = StepExtras(), {}
        summary.pages = 1
        if shard is not None:
            shard[:] = [search_shard([], {})]
    summary.images = sorted({rel for t in data.trajectories for rel in t.image_files})
    return summary, fragments, extras, texts


def cut_keys(forking: dict[str, ForkingCount]) -> dict[str, ForkingCount]:
    """Forking-token rows with a token over TOKEN_CHARS characters keyed by its first TOKEN_CHARS
    characters and a hash of the whole (tokens stay apart), so that one enormous token does not
    fill the cache and every merge of the experiment's views."""
    if all(len(text) <= TOKEN_CHARS for text in forking):
        return forking
    cut = {}
    for text, row in forking.items():
        if len(text) > TOKEN_CHARS:
            text = f"{text[:TOKEN_CHARS]}…{hashlib.sha1(text.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
        cut[text] = row
    return cut


class Job(NamedTuple):
    key: str
    step: StepFile
    fmt: str
    options: RenderOptions
    folder: str
    render: bool = True  # false: only read and summarise, write only the texts and the search shard
    shard_made: bool = False  # its search shard was written by an earlier job (one that only summarised)


def job_to_json(job: Job) -> str:
    return json.dumps([job.key, dataclasses.asdict(job.step), job.fmt, dataclasses.asdict(job.options), job.folder,
                       job.render, job.shard_made])


def job_from_json(line: str) -> Job:
    key, step, fmt, options, folder, render, shard_made = json.loads(line)
    step["parts"] = tuple(tuple(part) for part in step["parts"])
    return Job(key, StepFile(**step), fmt, RenderOptions(**options), folder, render, shard_made)


def render_job(job: Job) -> StepSummary:
    """Render one step file into the cache folder; return its aggregates."""
    shard: list[bytes] | None = None if job.shard_made else []
    summary, fragments, extras, texts = render_step(job.step, job.fmt, job.options, job.render, shard)
    try:
        made = shard[0] if shard else shard_file(Path(job.folder), job.key).read_bytes()
        summary.shard_version = hashlib.sha1(made).hexdigest()[:10]
    except OSError:
        pass  # no shard: the entry is not used (`StepCache.cached`)
    write_entry(Path(job.folder), job.key, summary, fragments if job.render else None, extras.to_json(), texts,
                shard[0] if shard else None)
    return summary


def run_jobs(jobs: list[Job], workers: int) -> tuple[list[StepSummary], int]:
    """The executor: run jobs on `workers` worker processes (`python -m trajdocs.worker`), fed one
    job at a time from a shared queue. Worker processes import nothing of the caller, so this is
    safe inside `mkdocs serve` (threads) and from any script. A job a worker could not do is done
    here. Returns the aggregates and how many jobs the workers did."""
    results: list[StepSummary | None] = [None] * len(jobs)
    pending: queue.Queue[int] = queue.Queue()
    for i in range(len(jobs)):
        pending.put(i)

    def drive() -> None:
        try:
            proc = subprocess.Popen([sys.executable, "-m", "trajdocs.worker"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True, encoding="utf-8")
        except OSError:
            return
        assert proc.stdin is not None and proc.stdout is not None
        try:
            while True:
                try:
                    i = pending.get_nowait()
                except queue.Empty:
                    break
                proc.stdin.write(job_to_json(jobs[i]) + "\n")
                proc.stdin.flush()
                answer = proc.stdout.readline()
                if not answer:
                    break
                results[i] = StepSummary(**loads(answer))
        except (OSError, ValueError, TypeError):
            pass
        finally:
            proc.stdin.close()
            proc.wait()

    threads = [threading.Thread(target=drive, daemon=True) for _ in range(min(workers, len(jobs)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r if r is not None else render_job(job) for r, job in zip(results, jobs)], \
        sum(r is not None for r in results)


def worker_answer(line: str) -> str:
    """What a worker process answers to one job line (see `worker.py`)."""
    return json_bytes(render_job(job_from_json(line))).decode() + "\n"


# --- 2. and 3.: every step file of a build --------------------------------------------------

@dataclass
class Background:
    """Work running in a thread: its results, or the error it raised."""

    thread: threading.Thread
    done: list = field(default_factory=list)
    error: BaseException | None = None


def _start(name: str, work: Callable[[], list]) -> Background:
    def run() -> None:
        try:
            job.done.extend(work())
        except BaseException as err:  # noqa: BLE001 - handed to whoever joins
            job.error = err

    job = Background(threading.Thread(target=run, name=name, daemon=True))
    job.thread.start()
    return job


def _join(job: Background) -> list:
    """The one place background work is waited for."""
    job.thread.join()
    return job.done


class StepBuild:
    """Stages 2 and 3 for one build: started once the steps are known, joined by the caller."""

    def __init__(self, cache: StepCache) -> None:
        self.cache = cache
        self.by_workers = 0  # step files the last build rendered in worker processes
        self._reading: Background | None = None
        self._later: tuple[Background, list[Job]] | None = None

    def start(self, steps: list[StepFile], fmt: str, options: RenderOptions, workers: int) -> None:
        """Stage 2 in the background: `results` waits for it."""
        self.cache.used.clear()
        self.cache.used_pages.clear()
        self._reading = _start("trajdocs-read", lambda: self.summarise(steps, fmt, options, workers))

    def results(self) -> list[StepResult]:
        """Stage 2's results, in the order of the steps given to `start`; its error raised here."""
        reading, self._reading = self._reading, None
        assert reading is not None
        done = _join(reading)
        if reading.error is not None:
            raise reading.error
        return done

    def summarise(self, steps: list[StepFile], fmt: str, options: RenderOptions,
                  workers: int = 1) -> list[StepResult]:
        """(cache key, aggregates, whether they came from the cache) for each step.

        Files not in the cache are read and rendered, on `workers` processes when there are
        several; each worker writes its fragments to the cache and returns only the aggregates."""
        cache = self.cache
        keys = [step_key(step, f"{fmt}|{options.key()}") for step in steps]
        cache.used.update(keys)
        found = [cache.cached(key) for key in keys]
        jobs = [Job(key, step, fmt, options, str(cache.folder))
                for key, hit, step in zip(keys, found, steps) if hit is None]
        self.by_workers = 0
        if workers > 1 and len(jobs) >= 2 * workers and sys.executable:
            # the last few are only summarised now, and rendered by one worker while MkDocs writes
            # the pages on the other core (see `finish`): about as long as MkDocs takes for them all
            later = jobs[len(jobs) - min(len(jobs), len(steps) // 8):]
            first = jobs[:len(jobs) - len(later)] + [job._replace(render=False) for job in later]
            later = [job._replace(shard_made=True) for job in later]
            summaries, self.by_workers = run_jobs(first, workers)
            if later:
                self._later = (_start("trajdocs-render", lambda: run_jobs(later, 1)[0]), later)
        else:
            summaries = [render_job(job) for job in jobs]
        made = iter(summaries)
        results = [StepResult(key, hit, True) if hit is not None else StepResult(key, next(made), False)
                   for key, hit in zip(keys, found)]
        return results

    def finish(self) -> dict[str, StepSummary]:
        """Stage 3: wait for the rendering that `summarise` left running; the final aggregates of
        those steps by key (the same as before, unless rendering itself failed)."""
        later, self._later = self._later, None
        if later is None:
            return {}
        running, jobs = later
        done = _join(running)  # whatever failed there is rendered here
        if len(done) < len(jobs):
            done[len(done):] = [render_job(job) for job in jobs[len(done):]]
        final = {job.key: summary for job, summary in zip(jobs, done)}
        return final
