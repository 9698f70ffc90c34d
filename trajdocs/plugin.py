"""The MkDocs adapter: configuration, generated pages, nav, serve watching, late HTML injection."""

from __future__ import annotations

import ctypes
import gc
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from mkdocs.config import config_options as c
from mkdocs.config.base import Config
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin, CombinedEvent, event_priority, get_plugin_logger
from mkdocs.structure.files import File, Files, InclusionLevel, file_sort_key
from mkdocs.structure.pages import Page
from mkdocs.utils import get_relative_url, nest_paths

from .cache import StepCache
from .discover import (drop_duplicates, duplicate_steps, empty_folders, find_experiments, inside,
                       no_steps_warning, roots_without_steps)
from .guard import mark_site, site_dir_problem
from .insights import (ForkingTally, PromptTally, PromptUse, Run, aggregates_csv, aggregates_json,
                       comparison_charts, comparison_table, experiment_charts)
from .model import Experiment, StepSummary
from .readers import FORMATS
from .remote import is_url, mirror
from .render import RenderOptions, experiment_table, latest_readable, overview_table, pager, step_links
from .text import clean, counted, esc, fmt_number, fmt_ratio, shown_name

log = get_plugin_logger(__name__)

ASSETS = Path(__file__).parent / "assets"
ASSET_URI = "assets/trajdocs"
# Where generated HTML goes: a plain word, which Markdown turns into a paragraph at no cost
# (a raw HTML block costs an HTML parse per page).
SLOT_MARK = "trajdocsslot7f3c"
SLOT = f"<p>{SLOT_MARK}</p>"
MARKDOWN_ESCAPES = "\\`*_{}[]()#+-.!|>"


class TrajdocsConfig(Config):
    runs = c.Type((str, list), default="results")
    path = c.Type(str, default="runs")
    nav_title = c.Type(str, default="Runs")
    format = c.Choice(FORMATS, default="auto")
    cache = c.Type(bool, default=True)
    cache_dir = c.Type(str, default=".cache/trajdocs")
    workers = c.Type(int, default=0)  # processes reading new step files; 0: one per core
    trajectories_per_page = c.Type(int, default=50)
    size_limit_mb = c.Type((int, float), default=1024)  # GitHub Pages: 1 GB per site
    file_limit_mb = c.Type((int, float), default=100)  # GitHub: 100 MB per file
    max_tokens = c.Type(int, default=3000)
    paths_relative_to = c.Type(str, default="")  # folder that paths shown on pages start from
    max_file_mb = c.Type((int, float), default=2048)  # step files larger than this are not read
    max_text_chars = c.Type(int, default=1_000_000)  # longer texts are cut on pages (full text downloadable)
    allow_outside = c.Type(list, default=[])  # folders outside `runs` that links in it may lead to
    correct = c.Type(dict, default={})  # {field: dotted path in each record, min: number}: correct / incorrect badges


def correct_option(value: dict) -> tuple[str, float]:
    """The `correct` option, checked: ("", 1.0) when unset."""
    if not value:
        return "", 1.0
    field, minimum = value.get("field"), value.get("min", 1)
    unknown = set(value) - {"field", "min"}
    if unknown or not isinstance(field, str) or not field.strip() or isinstance(minimum, bool) \
            or not isinstance(minimum, (int, float)) or not math.isfinite(minimum):
        raise PluginError("trajdocs: 'correct' must be {field: a dotted field of each record, e.g. "
                          "info.reward_metrics.accuracy_reward, min: a number (default 1)}")
    return field.strip(), float(minimum)


@dataclass
class ExperimentRun:
    exp: Experiment
    summaries: list[StepSummary]
    page_uri: str
    step_uris: list[str]
    keys: list[str] = field(default_factory=list)  # cache keys of the steps


@dataclass
class Merged:
    """The views merged from the step extras, and what they were merged from (see `_merged`)."""

    path: str
    steps: dict[str, list[tuple[int, str]]]  # experiment page -> (step, cache key) of readable steps
    forking: dict[str, ForkingTally]
    prompts: PromptTally
    views: dict[str, str]  # page -> HTML


@dataclass
class Scan:
    """The step files found before a build, their summaries read in the background meanwhile."""

    roots: list[str]
    experiments: list[Experiment]
    thread: threading.Thread | None = None
    results: list[tuple[str, StepSummary, bool]] = field(default_factory=list)
    error: BaseException | None = None


@dataclass
class StepPage:
    run: ExperimentRun
    position: int  # index into the experiment's steps / summaries
    key: str
    page: int = 1  # a step with many trajectories spans several pages


def release_memory(collect: bool = True) -> None:
    """Hand freed memory back to the system: without it a long `mkdocs serve` keeps the
    high-water mark of a fragmented heap and grows a little with every rebuild."""
    if collect:
        gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)  # glibc; elsewhere there is nothing to call
    except (OSError, AttributeError, TypeError):
        pass


def title_text(name: str) -> str:
    """A name as page/nav title. Themes print titles as HTML and Material un-escapes them inside
    <title>, so angle brackets become look-alikes there; the page body shows the exact name."""
    return escape(clean(name).replace("<", "‹").replace(">", "›"), quote=False)


def yaml_string(text: str) -> str:
    """A YAML double-quoted scalar (much faster than yaml.safe_dump for one value per page)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F or (0xA0 <= code and not 0xD800 <= code <= 0xDFFF and code not in (0xFEFF, 0xFFFE, 0xFFFF)):
            out.append(ch)
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def markdown_text(text: str) -> str:
    escaped = esc(text)
    return "".join("\\" + ch if ch in MARKDOWN_ESCAPES else ch for ch in escaped)


def page_source(title: str, heading: str, searchable: bool) -> str:
    search = "" if searchable else "search:\n  exclude: true\n"
    return f"---\ntitle: {yaml_string(title)}\n{search}---\n\n# {heading}\n\n{SLOT_MARK}\n"


class TrajdocsPlugin(BasePlugin[TrajdocsConfig]):
    def __init__(self) -> None:
        self.runs: list[ExperimentRun] = []
        self.experiment_pages: dict[str, ExperimentRun] = {}
        self.step_pages: dict[str, StepPage] = {}
        self.urls: dict[str, str] = {}  # generated page -> its URL in the site
        self._merged_from: Merged | None = None  # see _merged
        self._steps_seen: set[tuple[str, int]] | None = None  # the last build's steps, to name new ones
        self.unfilled: list[tuple[str, StepPage]] = []  # written step pages waiting for their HTML
        self.cache: StepCache | None = None
        self._temp_cache: str | None = None
        self._scan: Scan | None = None
        self._serving = False
        self._idle_release: threading.Timer | None = None
        self._started = 0.0

    def on_startup(self, *, command: str, dirty: bool) -> None:
        """Defined so that MkDocs keeps this instance (and its cache) across `serve` rebuilds."""
        self._serving = command == "serve"

    def on_shutdown(self) -> None:
        if self._temp_cache:
            shutil.rmtree(self._temp_cache, ignore_errors=True)

    def on_config(self, config: MkDocsConfig) -> MkDocsConfig:
        if self._idle_release is not None:
            self._idle_release.cancel()
        release_memory()  # the previous build's pages, now garbage (serve)
        runs = self.config.runs
        runs = [runs] if isinstance(runs, str) else runs
        if not runs or not all(isinstance(r, str) and r.strip() for r in runs):
            raise PluginError("trajdocs: 'runs' must be a folder or a list of folders")
        base = os.path.dirname(os.path.abspath(config.config_file_path or "mkdocs.yml"))
        self.roots = [r if is_url(r) else os.path.normpath(os.path.join(base, os.path.expanduser(r))) for r in runs]
        self.labels = [r.strip("/") for r in runs] if len(runs) > 1 else [""]
        problem = None if self._serving else site_dir_problem(  # serve builds into a fresh temporary folder
            config.site_dir, [r for r in self.roots if not is_url(r)], config.docs_dir, base)
        if problem:
            raise PluginError(f"trajdocs: {problem}")
        self.prefix = self.config.path.strip("/")
        if not self.prefix or ".." in self.prefix.split("/"):
            raise PluginError("trajdocs: 'path' must be a folder name inside the site, e.g. 'runs'")
        # this instance outlives one config (serve rebuilds, several sites in one process)
        if self.config.cache:
            folder = os.path.normpath(os.path.join(base, self.config.cache_dir))
        else:
            folder = self._temp_cache = self._temp_cache or tempfile.mkdtemp(prefix="trajdocs-")
        if self.cache is None or str(self.cache.folder) != folder:
            self.cache = StepCache(folder)
            self._steps_seen, self._merged_from = None, None  # another site
        if self.config.trajectories_per_page < 1 or self.config.max_tokens < 1:
            raise PluginError("trajdocs: 'trajectories_per_page' and 'max_tokens' must be at least 1")
        if self.config.max_file_mb <= 0 or self.config.max_text_chars < 1:
            raise PluginError("trajdocs: 'max_file_mb' and 'max_text_chars' must be positive")
        if not all(isinstance(a, str) and a.strip() for a in self.config.allow_outside):
            raise PluginError("trajdocs: 'allow_outside' must be a list of folders")
        self.allow_outside = tuple(os.path.normpath(os.path.join(base, os.path.expanduser(a)))
                                   for a in self.config.allow_outside)
        field, minimum = correct_option(self.config.correct)
        self.options = RenderOptions(per_page=self.config.trajectories_per_page, max_tokens=self.config.max_tokens,
                                     asset_base="../" if config.use_directory_urls else "",
                                     base_dir=os.path.normpath(os.path.join(base, os.path.expanduser(self.config.paths_relative_to))),
                                     max_file_bytes=int(self.config.max_file_mb * 2 ** 20),
                                     max_text=self.config.max_text_chars, correct_field=field, correct_min=minimum)
        self.user_nav = config.nav is not None
        config.extra_css.append(f"{ASSET_URI}/trajdocs.css")
        config.extra_javascript.append(f"{ASSET_URI}/trajdocs.js")
        if any(name.split("/")[-1] == "offline" for name in config.plugins):
            # Material's offline plugin loads its file:// search shim from unpkg.com unless one is
            # named already: name the copy shipped here (iframe-worker, MIT), so nothing leaves the machine
            polyfills = [p for p in config.extra.get("polyfills", []) if "iframe-worker" not in p]
            config.extra["polyfills"] = polyfills + [f"{ASSET_URI}/iframe-worker-shim.js"]
        return config

    def on_pre_build(self, *, config: MkDocsConfig) -> None:
        """Find the step files and start reading the new ones: MkDocs cleans the site folder and
        gathers the docs meanwhile, and `on_files` collects the results."""
        self._started = time.monotonic()
        assert self.cache is not None
        self.cache.used.clear()
        self.cache.used_pages.clear()
        roots = []
        for root in self.roots:
            if is_url(root):  # copied into the cache, only what is new or changed
                root, problems = mirror(root, str(self.cache.folder))
                for problem in problems:
                    log.warning(problem)
            elif not os.path.isdir(root):
                log.warning(f"runs folder not found: {root}")
            roots.append(root)
        skipped: list[str] = []
        experiments = find_experiments(roots, self.labels,
                                       skip=(config.site_dir, config.docs_dir, str(self.cache.folder)),
                                       problems=skipped, allow_outside=self.allow_outside)
        for message in skipped:
            log.warning(message)
        for exp in experiments:
            for step, paths in duplicate_steps(exp):
                log.warning(f"{shown_name(exp.folder)}: step {step} has more than one file: "
                            f"{', '.join(shown_name(os.path.basename(p)) for p in paths)}; shown: "
                            f"{shown_name(os.path.basename(paths[0]))} (the number without leading zeros, "
                            "else the first name in sort order)")
            drop_duplicates(exp)
        self.allowed = [os.path.realpath(r) for r in roots if r] + [os.path.realpath(a) for a in self.allow_outside]
        steps = [(s.step, s.path) for exp in experiments for s in exp.steps]
        scan = Scan(roots, experiments)

        def read() -> None:
            assert self.cache is not None
            try:
                scan.results = self.cache.summaries(steps, self.config.format, self.options,
                                                    self.config.workers or os.cpu_count() or 1)
            except BaseException as err:  # noqa: BLE001 - raised again in on_files
                scan.error = err

        scan.thread = threading.Thread(target=read, name="trajdocs-read", daemon=True)
        scan.thread.start()
        self._scan = scan

    @event_priority(-50)  # after other plugins have added their files
    def on_files(self, files: Files, config: MkDocsConfig) -> Files:
        scan, self._scan = self._scan, None
        if scan is None:  # called without on_pre_build (not by MkDocs' own build)
            self.on_pre_build(config=config)
            scan, self._scan = self._scan, None
        assert self.cache is not None and scan is not None
        self.unfilled = []
        for asset in sorted(ASSETS.iterdir()):
            files.append(File.generated(config, f"{ASSET_URI}/{asset.name}", abs_src_path=str(asset)))
        roots, experiments = scan.roots, scan.experiments
        self.runs, self.experiment_pages, self.step_pages, self.urls = [], {}, {}, {}
        scan.thread.join()
        if scan.error is not None:
            raise scan.error
        results = iter(scan.results)
        read = cached = 0
        for exp in experiments:
            hits = self._add_run(files, config, exp, [next(results) for _ in exp.steps])
            cached += hits
            read += len(exp.steps) - hits
        for run in self.runs:  # written after every step page: they wait for the steps still rendering
            self._add_page(files, config, run.page_uri,
                           page_source(title_text(run.exp.name), markdown_text(run.exp.name), True),
                           in_nav=not self.user_nav)
        for folder in empty_folders([r for r in roots if r], experiments):
            log.info(f"{shown_name(folder)}: no step files, skipped")
        for root in roots_without_steps(roots, experiments):  # training may not have written one yet
            log.warning(no_steps_warning(root, self.roots[roots.index(root)]))
        self._add_page(files, config, self.overview_uri, page_source(self.config.nav_title, esc(self.config.nav_title), True))
        self._add_page(files, config, self.prompts_uri, page_source("Recurring prompts", "Recurring prompts", True),
                       in_nav=not self.user_nav)
        self._check_collisions(files)
        config.nav = self._expand_nav(config.nav) if self.user_nav else self._nav(files)
        steps_now = {(run.exp.name, s.step) for run in self.runs for s in run.exp.steps}
        if self._steps_seen is not None and steps_now - self._steps_seen:
            new = sorted(steps_now - self._steps_seen)
            listed = ", ".join(f"{name} step {step}" for name, step in new[:10]) + (" ..." if len(new) > 10 else "")
            log.info(f"new steps: {listed}")
        self._steps_seen = steps_now
        workers = f", {self.cache.by_workers} of them by worker processes" if self.cache.by_workers else ""
        log.info(f"{counted(len(self.runs), 'experiment')}, {counted(sum(len(r.summaries) for r in self.runs), 'step')} "
                 f"({read} read{workers}, {cached} from cache) in {time.monotonic() - self._started:.1f} s")
        return files

    def _add_run(self, files: Files, config: MkDocsConfig, exp: Experiment,
                 results: list[tuple[str, StepSummary, bool]]) -> int:
        """Pages and files of one experiment: its step pages, images and downloads (its own page
        comes after every experiment's step pages); warnings for its problems. Returns how many
        steps came from the cache."""
        run = ExperimentRun(exp, [], f"{self.prefix}/{exp.slug}/index.md", [])
        images: set[str] = set()
        for position, (step, (key, summary, _)) in enumerate(zip(exp.steps, results)):
            if summary.unreadable:
                log.warning(f"{shown_name(step.path)}: unreadable: {summary.unreadable}")
            for problem in summary.problems:
                log.warning(f"{shown_name(step.path)}: {problem}")
            run.summaries.append(summary)
            run.keys.append(key)
            run.step_uris.append(self._step_uri(exp, step.step, 1))
            images.update(summary.images)
            if summary.cut_texts:
                assert self.cache is not None
                files.append(File.generated(config, f"{self.prefix}/{exp.slug}/texts/step-{step.step}.json",
                                            abs_src_path=str(self.cache.texts_file(key))))
            for page in range(1, summary.pages + 1):
                self.step_pages[self._step_uri(exp, step.step, page)] = StepPage(run, position, key, page)
                title = f"Step {step.step} · {title_text(exp.name)}"
                heading = f"Step {step.step}"
                if summary.pages > 1:
                    title += f" · page {page}"
                    heading += f" · page {page} of {summary.pages}"
                self._add_page(files, config, self._step_uri(exp, step.step, page),
                               page_source(title, heading, False), in_nav=False)
        for rel in sorted(images):
            source = os.path.join(exp.folder, rel)
            real = os.path.realpath(source)
            if not inside(real, self.allowed):  # an image (or a folder on its path) linking out of the runs
                log.warning(f"{shown_name(source)}: links to {shown_name(real)}, outside the runs folder: "
                            "not published (list that folder under the trajdocs option `allow_outside` to publish it)")
                continue
            if not os.path.isfile(real):
                log.warning(f"{shown_name(source)}: not a regular file, not published")
                continue
            files.append(File.generated(config, f"{self.prefix}/{exp.slug}/files/{rel}", abs_src_path=real))
        if exp.steps:
            assert self.cache is not None
            for ext, content in (("csv", aggregates_csv(run.summaries).encode()), ("json", aggregates_json(run.summaries))):
                files.append(File.generated(config, f"{self.prefix}/{exp.slug}/steps.{ext}",
                                            abs_src_path=self.cache.download(run.page_uri, ext, content)))
            self.runs.append(run)
            self.experiment_pages[run.page_uri] = run
        return sum(hit for _, _, hit in results)

    def _check_collisions(self, files: Files) -> None:
        """Two files written at one place, or a file where a folder goes, would replace one
        experiment's page by another's: slugs are chosen so that this cannot happen (see
        `discover.GENERATED_SEGMENT`); this makes sure, and stops the build if it ever does."""
        ours = self.prefix + "/"
        dests: dict[str, str] = {}
        folders: set[str] = set()
        clashes = []
        for f in files:
            dest = f.dest_uri
            if not dest.startswith(ours):
                continue
            if dest in dests:
                clashes.append(f"{dests[dest]} and {f.src_uri} are both written to {dest}")
            dests[dest] = f.src_uri
            cut = dest.rfind("/")
            while cut > 0 and dest[:cut] not in folders:
                folders.add(dest[:cut])
                cut = dest.rfind("/", 0, cut)
        clashes += [f"{src} is written to {dest}, where another page's folder is" for dest, src in dests.items()
                    if dest in folders]
        if clashes:
            raise PluginError("trajdocs: generated pages collide: " + "; ".join(shown_name(c) for c in clashes[:10]))

    def _step_uri(self, exp: Experiment, step: int, page: int) -> str:
        suffix = "" if page == 1 else f"-{page}"
        return f"{self.prefix}/{exp.slug}/step-{step}{suffix}.md"

    @property
    def overview_uri(self) -> str:
        return f"{self.prefix}/index.md"

    @property
    def prompts_uri(self) -> str:
        return f"{self.prefix}/prompts.md"

    def _add_page(self, files: Files, config: MkDocsConfig, uri: str, content: str, in_nav: bool = True) -> None:
        if files.get_file_from_path(uri) is not None:
            raise PluginError(f"trajdocs: {uri} already exists in the docs; set the trajdocs 'path' option "
                              "to a folder name the docs do not use")
        inclusion = InclusionLevel.UNDEFINED if in_nav else InclusionLevel.NOT_IN_NAV
        file = File.generated(config, uri, content=content, inclusion=inclusion)
        files.append(file)
        self.urls[uri] = file.url

    def _nav(self, files: Files) -> list:
        """MkDocs' default nav for the user's pages, plus one section: overview and experiments."""
        ours = {self.overview_uri, self.prompts_uri} | {run.page_uri for run in self.runs}
        pages = sorted(files.documentation_pages(), key=file_sort_key)
        nav = nest_paths(f.src_uri for f in pages if f.inclusion.is_in_nav() and f.src_uri not in ours)
        return [*nav, {title_text(self.config.nav_title): self._section()}]

    def _section(self) -> list:
        return ([{"Overview": self.overview_uri}, {"Recurring prompts": self.prompts_uri}]
                + [{title_text(run.exp.name): run.page_uri} for run in self.runs])

    def _expand_nav(self, nav: list) -> list:
        """A user-written nav stays as written, except that an entry for the overview page becomes
        the section of overview plus experiments, under the user's title."""
        def expand(item):  # type: ignore[no-untyped-def]
            if item == self.overview_uri:
                return {title_text(self.config.nav_title): self._section()}
            if isinstance(item, dict) and len(item) == 1:
                (title, value), = item.items()
                if value == self.overview_uri:
                    return {title: self._section()}
                if isinstance(value, list):
                    return {title: [expand(v) for v in value]}
            return item
        return [expand(item) for item in nav]

    def _link(self, run: ExperimentRun, uri: str, from_step_page: bool) -> str:
        """Relative link between pages of one experiment, which all sit in one folder."""
        local = self.urls[uri][len(f"{self.prefix}/{run.exp.slug}/"):]
        return (self.options.asset_base if from_step_page else "") + local or "./"

    def on_page_content(self, html: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
        """Searchable parts go in here; big tables come after search indexing, and step pages get
        their links and HTML once written (see `_fill_step_pages`)."""
        uri = page.file.src_uri
        if uri in self.experiment_pages:
            return html.replace(SLOT, self._experiment_facts(self.experiment_pages[uri]) + SLOT)
        return html

    def _step_links(self, info: StepPage) -> str:
        run, here = info.run, info.position
        steps, uris = run.exp.steps, run.step_uris
        prev = (self._link(run, uris[here - 1], True), steps[here - 1].step) if here > 0 else None
        nxt = (self._link(run, uris[here + 1], True), steps[here + 1].step) if here + 1 < len(uris) else None
        links = step_links(prev, (self._link(run, run.page_uri, True), run.exp.name), nxt)
        pages = run.summaries[here].pages
        if pages > 1:
            step = steps[here].step
            urls = [self._link(run, self._step_uri(run.exp, step, p), True) for p in range(1, pages + 1)]
            links += pager(urls, info.page, run.summaries[here].trajectories, self.options.per_page)
        return links

    def _merged(self) -> dict[str, str]:
        """Views merged from every step's extras (forking tokens per experiment, recurring prompts):
        two passes over the extras. While `serve` follows a run that only appends steps, the
        previous tallies are kept and only the new steps are read."""
        assert self.cache is not None
        steps = {run.page_uri: [(s.step, k) for s, k in zip(run.summaries, run.keys) if not s.unreadable]
                 for run in self.runs}
        old = self._merged_from
        if old is not None and not (old.path == self.config.path and all(
                steps.get(uri, [])[:len(seen)] == seen for uri, seen in old.steps.items())):
            old = None  # not only appended steps: merge everything again
        if old is not None and steps == old.steps:
            return old.views
        forking: dict[str, ForkingTally] = old.forking if old else {}
        prompts = old.prompts if old else PromptTally()
        seen = old.steps if old else {}
        for uri in steps:
            forking.setdefault(uri, ForkingTally())
        for uri, run_steps in steps.items():
            for _, key in run_steps[len(seen.get(uri, [])):]:
                extra = self.cache.extras(key)
                forking[uri].first(extra)
                prompts.first(extra.get("prompts", []))
        refeed = {uri for uri in steps if forking[uri].choose()}
        all_prompts = prompts.choose()
        here = self.urls[self.prompts_uri]
        by_uri = {run.page_uri: run for run in self.runs}
        for uri, run_steps in steps.items():
            run = by_uri[uri]
            for i, (step, key) in enumerate(run_steps):
                is_new = i >= len(seen.get(uri, []))
                feed_forking, feed_prompts = is_new or uri in refeed, is_new or all_prompts
                if not (feed_forking or feed_prompts):
                    continue
                extra = self.cache.extras(key)
                if feed_forking:
                    forking[uri].second(extra)
                if feed_prompts:
                    for group in extra.get("prompts", []):
                        if group["key"] in prompts.rows:
                            target = self.urls[self._step_uri(run.exp, step, group.get("best_page", 1))]
                            url = f"{get_relative_url(target, here)}#traj-{group['best_index']}"
                            prompts.second(PromptUse(run.exp.name, step, url, group))
        views = {uri: forking[uri].html() for uri in steps}
        views[self.prompts_uri] = prompts.html()
        self._merged_from = Merged(self.config.path, steps, {u: forking[u] for u in steps}, prompts, views)
        return views

    def _run_view(self, run: ExperimentRun, from_page: bool) -> Run:
        return Run(run.exp.name, run.summaries, [self._link(run, u, from_page) for u in run.step_uris])

    def _overview_body(self, page: Page) -> str:
        if not self.runs:
            return "<p>No step files found yet.</p>"
        urls = [get_relative_url(self.urls[run.page_uri], page.url) for run in self.runs]
        rows = [(run.exp, run.summaries, url) for run, url in zip(self.runs, urls)]
        views = [Run(run.exp.name, run.summaries,
                     [get_relative_url(self.urls[u], page.url) for u in run.step_uris]) for run in self.runs]
        prompts = get_relative_url(self.urls[self.prompts_uri], page.url)
        return (overview_table(rows)
                + f'<p class="td-facts"><a href="{prompts}">Recurring prompts</a>: responses to the same prompt '
                  "at different steps and in different experiments.</p>"
                + "<h2>Comparison</h2>" + comparison_table(views, urls) + comparison_charts(views))

    def _experiment_body(self, run: ExperimentRun) -> str:
        view = self._run_view(run, False)
        table = experiment_table(run.summaries, view.step_urls)
        forking = self._merged()[run.page_uri]
        downloads = ('<p class="td-facts">Step aggregates: <a href="steps.csv" download>CSV</a> · '
                     '<a href="steps.json" download>JSON</a></p>')
        parts = [experiment_charts(view), "<h2>Steps</h2>", downloads, table]
        if forking:
            parts += ["<h2>Forking tokens</h2>", '<p class="td-note">The token strings most often flagged '
                      "high-entropy in this experiment, and how often they are flagged early and late in "
                      "training.</p>", forking]
        return "".join(parts)

    def _experiment_facts(self, run: ExperimentRun) -> str:
        steps = run.summaries
        latest = latest_readable(steps)
        facts = (f'<p class="td-facts">Folder <code>{esc(self.options.shown_path(run.exp.folder))}</code> · {counted(len(steps), "step")} '
                 f"({steps[0].step}–{steps[-1].step}) · {counted(sum(s.trajectories for s in steps), 'trajectory', 'trajectories')}")
        if latest:
            facts += f" · latest step {latest.step}: mean reward {fmt_number(latest.mean_reward)}"
            if latest.high_entropy_ratio is not None:  # only what the data has
                facts += f", high-entropy ratio {fmt_ratio(latest.high_entropy_ratio)}"
        return facts + "</p>"

    def _finish_reading(self) -> None:
        """Wait for the steps still rendering in the background; take their final aggregates."""
        assert self.cache is not None
        final = self.cache.finish()
        if not final:
            return
        for run in self.runs:
            for position, key in enumerate(run.keys):
                summary = final.get(key)
                if summary is not None and summary != run.summaries[position]:
                    run.summaries[position] = summary
                    if summary.unreadable:
                        log.warning(f"{shown_name(run.exp.steps[position].path)}: unreadable: {summary.unreadable}")

    def on_post_page(self, output: str, *, page: Page, config: MkDocsConfig) -> str:
        uri = page.file.src_uri
        if uri in self.experiment_pages or uri in (self.overview_uri, self.prompts_uri):
            self._finish_reading()
            release_memory(collect=False)  # these pages grow with the steps: each starts from a trimmed heap
        if uri == self.overview_uri:
            return output.replace(SLOT, self._overview_body(page), 1)
        if uri == self.prompts_uri:
            return output.replace(SLOT, self._merged()[self.prompts_uri], 1)
        if uri in self.experiment_pages:
            return output.replace(SLOT, self._experiment_body(self.experiment_pages[uri]), 1)
        info = self.step_pages.get(uri)
        if info is not None and SLOT in output:
            self.unfilled.append((page.file.abs_dest_path, info))
            if os.path.lexists(page.file.abs_dest_path):  # a --dirty build: never write through a link into the cache
                os.unlink(page.file.abs_dest_path)
        return output

    @event_priority(100)  # before other plugins read the written pages
    def _fill_step_pages(self, *, config: MkDocsConfig) -> None:
        """Splice each step's rendered HTML, as bytes from the cache, into its written page: the
        token HTML never passes through Markdown, the theme, or a Python string."""
        assert self.cache is not None
        self._finish_reading()
        slot = SLOT.encode()
        for dest, info in self.unfilled:
            with open(dest, "rb") as f:
                head, found, tail = f.read().partition(slot)
            if not found:
                continue
            links = self._step_links(info).encode()
            try:
                self.cache.place_page(dest, head + links, info.key, info.page, links + tail)
            except OSError as err:
                path = info.run.exp.steps[info.position].path
                log.warning(f"{path}: rendered page missing from the cache ({err}); rebuild")
        self.unfilled = []
        self.cache.prune()
        mark_site(config.site_dir)
        self._report_size(config.site_dir)

    @event_priority(-100)  # after every plugin's post_build
    def _release_memory(self, *, config: MkDocsConfig) -> None:
        release_memory(collect=False)  # this build's pages are still referenced
        if self._serving:  # once they are garbage too, while serve waits for changes
            self._idle_release = threading.Timer(1.0, release_memory)
            self._idle_release.daemon = True
            self._idle_release.start()

    on_post_build = CombinedEvent(_fill_step_pages, _release_memory)

    def _report_size(self, site_dir: str) -> None:
        """Warn when the site or a file passes or nears the host's limits (GitHub Pages by default),
        naming every file over the per-file limit, and say what helps."""
        mb = 2 ** 20
        file_limit, size_limit = self.config.file_limit_mb * mb, self.config.size_limit_mb * mb
        total, largest = 0, 0
        big: list[tuple[int, str]] = []
        for folder, _, names in os.walk(site_dir):
            for name in names:
                size = os.path.getsize(os.path.join(folder, name))
                total += size
                largest = max(largest, size)
                if size > 0.8 * file_limit:
                    big.append((size, os.path.relpath(os.path.join(folder, name), site_dir)))
        log.info(f"site: {total / mb:.1f} MB, largest file {largest / mb:.1f} MB")
        advice = ("to reduce it: point `runs` at fewer experiments or keep fewer step files, lower "
                  "`trajectories_per_page` (smaller step pages) or save fewer trajectories per step")
        if total > 0.8 * size_limit:
            where = "over" if total > size_limit else "near"
            log.warning(f"the site is {total / mb:.0f} MB, {where} the {self.config.size_limit_mb:g} MB limit "
                        f"(size_limit_mb; GitHub Pages allows 1 GB); {advice}")
        over = sorted((b for b in big if b[0] > file_limit), reverse=True)
        near = sorted((b for b in big if b[0] <= file_limit), reverse=True)
        for files, where in ((over, "over"), (near, "near")):
            if files:
                listed = ", ".join(f"{shown_name(path)} ({size / mb:.0f} MB)" for size, path in files)
                log.warning(f"{len(files)} file{'s' if len(files) > 1 else ''} {where} the "
                            f"{self.config.file_limit_mb:g} MB per-file limit (file_limit_mb; GitHub allows "
                            f"100 MB): {listed}; {advice}")

    def on_serve(self, server, *, config: MkDocsConfig, builder):  # type: ignore[no-untyped-def]
        for root in self.roots:
            if os.path.isdir(root):
                server.watch(root)
        return server
