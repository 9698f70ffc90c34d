"""The MkDocs adapter: each event calls the build pipeline (`build.py`) or the site's pages
(`pages.py`). In build order: options (`on_config`), discovery and background summarising
(`on_pre_build`), generated files and nav (`on_files`), HTML injection (`on_page_content`,
`on_post_page`, `on_post_build`: see `inject.py`), serve watching (`on_serve`)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from mkdocs.config import config_options as c
from mkdocs.config.base import Config
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin, CombinedEvent, event_priority, get_plugin_logger
from mkdocs.structure.files import File, Files, InclusionLevel, file_sort_key
from mkdocs.structure.pages import Page
from mkdocs.utils import get_relative_url, nest_paths

from .build import Discovery, StepBuild, discover_runs
from .cache import StepCache, link_or_copy
from .discover import empty_folders, no_steps_warning, roots_without_steps
from .formats import FORMAT_CHOICES
from .guard import mark_site
from .housekeeping import IdleRelease, release_memory, size_report
from .inject import StepPageSlots, Waiting, before_slot, fill_slot
from .insights import MergedViews
from .model import Generated
from .pages import Site, new_steps_message
from .render import RenderOptions
from .settings import OptionError, polyfills, read_settings
from .text import shown_name, title_text

log = get_plugin_logger(__name__)

ASSETS = Path(__file__).parent / "assets"
ASSET_URI = "assets/trajdocs"


class TrajdocsConfig(Config):
    runs = c.Type((str, list), default="results")
    path = c.Type(str, default="runs")
    nav_title = c.Type(str, default="Runs")
    format = c.Choice(FORMAT_CHOICES, default="auto")
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
    tokenizer = c.Type(str, default="")  # tokenizer.json or a local Hugging Face model folder: token ids -> text
    mapping = c.Type(dict, default={})  # a generic file's fields -> prompt, response, reward, step ... (format: mapped)
    correct = c.Type(dict, default={})  # {field: dotted path in each record, min: number}: correct / incorrect badges


class CacheFile(File):
    """A generated file whose source is in the cache (a search shard, long texts, a download):
    published by `link_or_copy` rather than copied."""

    def copy_file(self, dirty: bool = False) -> None:
        assert self.abs_src_path is not None
        os.makedirs(os.path.dirname(self.abs_dest_path), exist_ok=True)
        link_or_copy(self.abs_src_path, self.abs_dest_path)


class TrajdocsPlugin(BasePlugin[TrajdocsConfig]):
    def __init__(self) -> None:
        # kept across `serve` rebuilds (and several sites in one process)
        self.cache: StepCache | None = None
        self.steps: StepBuild | None = None
        self.merged: MergedViews | None = None  # see insights.merge_views
        self.steps_seen: set[tuple[str, int]] | None = None  # the last build's steps, to name new ones
        self.temp_cache: str | None = None
        self.serving = False
        self.idle = IdleRelease()
        # one build
        self.roots: list[str] = []
        self.options = RenderOptions()
        self.site = Site("runs", self.options)
        self.found: Discovery | None = None
        self.slots = StepPageSlots()
        self.started = 0.0

    def on_startup(self, *, command: str, dirty: bool) -> None:
        """Defined so that MkDocs keeps this instance (and its cache) across `serve` rebuilds."""
        self.serving = command == "serve"

    def on_shutdown(self) -> None:
        if self.temp_cache:
            shutil.rmtree(self.temp_cache, ignore_errors=True)

    def on_config(self, config: MkDocsConfig) -> MkDocsConfig:
        self.idle.cancel()
        release_memory()  # the previous build's pages, now garbage (serve)
        base = os.path.dirname(os.path.abspath(config.config_file_path or "mkdocs.yml"))
        try:
            self.settings = read_settings(self.config, base, config.site_dir, config.docs_dir, self.serving,
                                          config.use_directory_urls)
        except OptionError as err:
            raise PluginError(str(err)) from None
        self.roots, self.options = self.settings.roots, self.settings.options
        folder = self.settings.cache_folder
        if folder is None:
            folder = self.temp_cache = self.temp_cache or tempfile.mkdtemp(prefix="trajdocs-")
        if self.cache is None or str(self.cache.folder) != folder:
            self.cache, self.steps = StepCache(folder), None
            self.steps_seen, self.merged = None, None  # another site
        self.steps = self.steps or StepBuild(self.cache)
        self.user_nav = config.nav is not None
        config.extra_css.append(f"{ASSET_URI}/trajdocs.css")
        config.extra_javascript.append(f"{ASSET_URI}/trajdocs.js")
        config.extra_javascript.append(f"{ASSET_URI}/search.js")
        config.extra_css.append(f"{ASSET_URI}/search.css")
        shims = polyfills(list(config.plugins), config.extra.get("polyfills"), ASSET_URI)
        if shims is not None:
            config.extra["polyfills"] = shims
        return config

    def on_pre_build(self, *, config: MkDocsConfig) -> None:
        """Stages 1 and 2: find the step files and start summarising the new ones; MkDocs cleans the
        site folder and gathers the docs meanwhile, and `on_files` collects the results."""
        assert self.cache is not None and self.steps is not None
        self.started = time.monotonic()
        self.found = discover_runs(self.roots, self.settings.labels, str(self.cache.folder),
                                   (config.site_dir, config.docs_dir, str(self.cache.folder)),
                                   self.settings.allow_outside, log.warning, self.options.mapping)
        steps = [s for exp in self.found.experiments for s in exp.steps]
        self.steps.start(steps, self.config.format, self.options, self.config.workers or os.cpu_count() or 1)

    @event_priority(-50)  # after other plugins have added their files
    def on_files(self, files: Files, config: MkDocsConfig) -> Files:
        if self.found is None:  # called without on_pre_build (not by MkDocs' own build)
            self.on_pre_build(config=config)
        found, self.found = self.found, None
        assert self.cache is not None and self.steps is not None and found is not None
        self.slots = StepPageSlots()
        for asset in sorted(ASSETS.iterdir()):
            files.append(File.generated(config, f"{ASSET_URI}/{asset.name}", abs_src_path=str(asset)))
        self.site = site = Site(self.settings.prefix, self.options)
        results = self.steps.results()
        by_step = iter(results)
        generated = [g for exp in found.experiments for g in site.add_run(
            exp, [next(by_step) for _ in exp.steps], self.cache, found.allowed, log.warning)]
        # written after every step page: they wait for the steps still rendering
        generated += [site.experiment_page(uri, not self.user_nav) for uri in site.experiment_pages]
        self.add(files, config, generated)
        self.add(files, config, [site.search_index(get_relative_url)])  # after the step pages: it links them
        for folder in empty_folders([r for r in found.roots if r], found.experiments):
            log.info(f"{shown_name(folder)}: no step files, skipped")
        for root in roots_without_steps(found.roots, found.experiments):  # training may not have written one yet
            log.warning(no_steps_warning(root, self.roots[found.roots.index(root)], self.options.mapping))
        self.add(files, config, [site.overview_page(self.config.nav_title), site.prompts_page(not self.user_nav)])
        self.check_collisions(files)
        config.nav = site.expand_nav(config.nav, self.config.nav_title) if self.user_nav else self.nav(files)
        self.log_steps(sum(r.cached for r in results), len(results))
        return files

    def add(self, files: Files, config: MkDocsConfig, generated: list[Generated]) -> None:
        for g in generated:
            if g.content is None:  # a file published as it is: the cache's are linked, never the runs' own
                assert self.cache is not None and g.source is not None
                kind = CacheFile if os.path.dirname(g.source) == str(self.cache.folder) else File
                files.append(kind.generated(config, g.uri, abs_src_path=g.source))
                continue
            if files.get_file_from_path(g.uri) is not None:
                raise PluginError(f"trajdocs: {g.uri} already exists in the docs; set the trajdocs 'path' option "
                                  "to a folder name the docs do not use")
            inclusion = InclusionLevel.UNDEFINED if g.in_nav else InclusionLevel.NOT_IN_NAV
            file = File.generated(config, g.uri, content=g.content, inclusion=inclusion)
            files.append(file)
            self.site.urls[g.uri] = file.url

    def check_collisions(self, files: Files) -> None:
        clashes = self.site.collisions((f.src_uri, f.dest_uri) for f in files)
        if clashes:
            raise PluginError("trajdocs: generated pages collide: " + "; ".join(shown_name(c) for c in clashes[:10]))

    def nav(self, files: Files) -> list:
        """MkDocs' default nav for the user's pages, plus one section: overview and experiments."""
        ours = self.site.own_pages()
        pages = sorted(files.documentation_pages(), key=file_sort_key)
        nav = nest_paths(f.src_uri for f in pages if f.inclusion.is_in_nav() and f.src_uri not in ours)
        return [*nav, {title_text(self.config.nav_title): self.site.section()}]

    def log_steps(self, cached: int, total: int) -> None:
        assert self.steps is not None
        steps_now = {(run.exp.name, s.step) for run in self.site.runs for s in run.exp.steps}
        if self.steps_seen is not None and steps_now - self.steps_seen:
            log.info(new_steps_message(sorted(steps_now - self.steps_seen)))
        self.steps_seen = steps_now
        log.info(self.site.steps_message(cached, total, self.steps.by_workers, time.monotonic() - self.started))

    def on_page_content(self, html: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
        runs = self.site.experiment_pages.get(page.file.src_uri)
        return before_slot(html, self.site.experiment_facts(runs)) if runs is not None else html

    def merged_views(self) -> dict[str, str]:
        assert self.cache is not None
        self.merged = self.site.merged_views(self.merged, self.config.path, self.cache.extras, get_relative_url)
        return self.merged.views

    def finish_steps(self) -> None:
        """Stage 3: wait for the steps still rendering in the background; take their final aggregates."""
        assert self.steps is not None
        self.site.take_final(self.steps.finish(), log.warning)

    def on_post_page(self, output: str, *, page: Page, config: MkDocsConfig) -> str:
        uri, site = page.file.src_uri, self.site
        if uri in site.experiment_pages or uri in (site.overview_uri, site.prompts_uri):
            self.finish_steps()
            release_memory(collect=False)  # these pages grow with the steps: each starts from a trimmed heap
        if uri == site.overview_uri:
            return fill_slot(output, site.search_box(page.url, get_relative_url) + site.overview_body(page.url, get_relative_url))
        if uri == site.prompts_uri:
            return fill_slot(output, self.merged_views()[uri])
        if uri in site.experiment_pages:
            runs = site.experiment_pages[uri]
            return fill_slot(output, site.search_box(page.url, get_relative_url, runs)
                             + site.experiment_body(runs, self.merged_views()))
        info = site.step_pages.get(uri)
        if info is not None:
            self.slots.remember(output, Waiting(page.file.abs_dest_path, info))
        return output

    @event_priority(100)  # before other plugins read the written pages
    def _fill_step_pages(self, *, config: MkDocsConfig) -> None:
        """Stage 4: each step page gets its links and rendered HTML (see `inject.py`)."""
        assert self.cache is not None
        self.finish_steps()
        self.slots.fill(self.cache, self.site.step_links, log.warning)
        self.cache.prune()
        mark_site(config.site_dir)
        info, warnings = size_report(config.site_dir, self.config.size_limit_mb, self.config.file_limit_mb)
        log.info(info)
        for warning in warnings:
            log.warning(warning)

    @event_priority(-100)  # after every plugin's post_build
    def _release_memory(self, *, config: MkDocsConfig) -> None:
        release_memory(collect=False)  # this build's pages are still referenced
        if self.serving:  # once they are garbage too, while serve waits for changes
            self.idle.schedule()

    on_post_build = CombinedEvent(_fill_step_pages, _release_memory)

    def on_serve(self, server, *, config: MkDocsConfig, builder):  # type: ignore[no-untyped-def]
        for root in self.roots:
            if os.path.isdir(root):
                server.watch(root)
        return server
