"""The site's generated pages: where each goes (`Site`), what files a build adds, the nav section,
and the bodies of the overview and experiment pages (step pages are rendered in `render.py`)."""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Iterable, Sequence

from .cache import StepCache
from .charts import Point, Series, line_chart
from .discover import link_out, run_slug
from .formats import FORMATS
from .insights import (MergedViews, Run, aggregates_csv, aggregates_json, comparison_charts, comparison_table,
                       experiment_charts, merge_views, readable)
from .inject import page_source
from .model import Experiment, ExperimentRun, Generated, StepExtras, StepPage, StepResult
from .search import search_box, search_index, shard_uri
from .render import RenderOptions, experiment_table, latest_readable, overview_table, pager, step_links
from .text import counted, esc, fmt_ratio, fmt_stat, markdown_text, shown_name, title_text

Warn = Callable[[str], None]
RelativeUrl = Callable[[str, str], str]  # (url, from url) -> relative link (MkDocs' rule)


class Site:
    """One build's generated pages under the folder `prefix`: experiments, their step pages, and
    the URLs MkDocs gives them (`urls`, filled in by the plugin as the files are added)."""

    def __init__(self, prefix: str, options: RenderOptions) -> None:
        self.prefix = prefix
        self.options = options
        self.runs: list[ExperimentRun] = []
        self.experiment_pages: dict[str, list[ExperimentRun]] = {}  # page -> the experiment, or a run's views
        self.step_pages: dict[str, StepPage] = {}
        self.urls: dict[str, str] = {}  # generated page -> its URL in the site
        self._positions: dict[str, dict[int, int]] = {}  # see `positions`
        self.search_version = ""  # of the search index (`search_index`)

    # --- where pages go

    def step_uri(self, exp: Experiment, step: int, page: int) -> str:
        suffix = "" if page == 1 else f"-{page}"
        return f"{self.prefix}/{exp.slug}/step-{step}{suffix}.md"

    @property
    def overview_uri(self) -> str:
        return f"{self.prefix}/index.md"

    @property
    def prompts_uri(self) -> str:
        return f"{self.prefix}/prompts.md"

    # --- what a build adds

    def add_run(self, exp: Experiment, results: list[StepResult], cache: StepCache, allowed: list[str],
                warn: Warn) -> list[Generated]:
        """The files of one experiment, in the order MkDocs writes them: its step pages, images and
        downloads (its own page comes after every experiment's step pages: `experiment_page`);
        warnings for its problems."""
        own = f"{self.prefix}/{exp.slug}/index.md"
        run = ExperimentRun(exp, [], f"{self.prefix}/{run_slug(exp)}/index.md" if exp.run else own, [], own_uri=own)
        out: list[Generated] = []
        images: set[str] = set()
        for position, (step, result) in enumerate(zip(exp.steps, results)):
            summary = result.summary
            if summary.unreadable:
                warn(f"{shown_name(step.path)}: unreadable: {summary.unreadable}")
            for problem in summary.problems:
                warn(f"{shown_name(step.path)}: {problem}")
            run.summaries.append(summary)
            run.keys.append(result.key)
            run.step_uris.append(self.step_uri(exp, step.step, 1))
            images.update(summary.images)
            if summary.cut_texts:
                out.append(Generated(f"{self.prefix}/{exp.slug}/texts/step-{step.step}.json",
                                     source=str(cache.texts_file(result.key))))
            out.append(Generated(shard_uri(self.prefix, exp.slug, step.step), source=str(cache.shard_file(result.key))))
            for page in range(1, summary.pages + 1):
                self.step_pages[self.step_uri(exp, step.step, page)] = StepPage(run, position, result.key, page)
                word = getattr(FORMATS.get(step.fmt), "STEP_WORD", "Step")  # AReaL: a weight version
                title = f"{word} {step.step} · {title_text(exp.name)}"
                heading = f"{word} {step.step}" + (f" · {markdown_text(exp.view)}" if exp.view else "")
                if summary.pages > 1:
                    title += f" · page {page}"
                    heading += f" · page {page} of {summary.pages}"
                out.append(Generated(self.step_uri(exp, step.step, page), page_source(title, heading, False),
                                     in_nav=False))
        for rel in sorted(images):
            source = os.path.join(exp.folder, rel)
            why = link_out(source, allowed)  # an image (or a folder on its path) linking out of the runs
            if why:
                warn(why)
                continue
            real = os.path.realpath(source)
            if not os.path.isfile(real):
                warn(f"{shown_name(source)}: not a regular file, not published")
                continue
            out.append(Generated(f"{self.prefix}/{exp.slug}/files/{rel}", source=real))
        if exp.steps:
            for ext, content in (("csv", aggregates_csv(run.summaries).encode()), ("json", aggregates_json(run.summaries))):
                out.append(Generated(f"{self.prefix}/{exp.slug}/steps.{ext}",
                                     source=cache.download(run.own_uri, ext, content)))
            self.runs.append(run)
            self.experiment_pages.setdefault(run.page_uri, []).append(run)
        return out

    def experiment_page(self, uri: str, in_nav: bool) -> Generated:
        name = page_name(self.experiment_pages[uri])
        return Generated(uri, page_source(title_text(name), markdown_text(name), True), in_nav=in_nav)

    def overview_page(self, title: str) -> Generated:
        return Generated(self.overview_uri, page_source(title, esc(title), True))

    def prompts_page(self, in_nav: bool) -> Generated:
        return Generated(self.prompts_uri, page_source("Recurring prompts", "Recurring prompts", True), in_nav=in_nav)

    def collisions(self, written: Iterable[tuple[str, str]]) -> list[str]:
        """Two files written at one place, or a file where a folder goes, would replace one
        experiment's page by another's: slugs are chosen so that this cannot happen (see
        `discover.GENERATED_SEGMENT`); this makes sure. `written`: (source, destination) of every
        file of the site."""
        ours = self.prefix + "/"
        dests: dict[str, str] = {}
        folders: set[str] = set()
        clashes = []
        for src, dest in written:
            if not dest.startswith(ours):
                continue
            if dest in dests:
                clashes.append(f"{dests[dest]} and {src} are both written to {dest}")
            dests[dest] = src
            cut = dest.rfind("/")
            while cut > 0 and dest[:cut] not in folders:
                folders.add(dest[:cut])
                cut = dest.rfind("/", 0, cut)
        return clashes + [f"{src} is written to {dest}, where another page's folder is"
                          for dest, src in dests.items() if dest in folders]

    # --- nav

    def section(self) -> list:
        """The nav section: overview, recurring prompts, one entry per experiment."""
        return ([{"Overview": self.overview_uri}, {"Recurring prompts": self.prompts_uri}]
                + [{title_text(page_name(runs)): uri} for uri, runs in self.experiment_pages.items()])

    def own_pages(self) -> set[str]:
        return {self.overview_uri, self.prompts_uri} | set(self.experiment_pages)

    def expand_nav(self, nav: list, title: str) -> list:
        """A user-written nav stays as written, except that an entry for the overview page becomes
        the section of overview plus experiments, under the user's title."""
        def expand(item):  # type: ignore[no-untyped-def]
            if item == self.overview_uri:
                return {title_text(title): self.section()}
            if isinstance(item, dict) and len(item) == 1:
                (name, value), = item.items()
                if value == self.overview_uri:
                    return {name: self.section()}
                if isinstance(value, list):
                    return {name: [expand(v) for v in value]}
            return item
        return [expand(item) for item in nav]

    # --- links and page bodies

    def link(self, run: ExperimentRun, uri: str, from_step_page: bool) -> str:
        """Relative link from a page of an experiment (a step page, or the page showing it) to a
        page of it or of its run: pages of one experiment sit in its folder, a run's page in the
        folder above its views' folders."""
        folder = f"{self.prefix}/{(run.exp.slug if from_step_page else run_slug(run.exp))}/"
        url, up = self.urls[uri], ""
        while not url.startswith(folder) and "/" in folder.rstrip("/"):
            folder, up = folder[:folder.rstrip("/").rfind("/") + 1], up + "../"
        return (self.options.asset_base if from_step_page else "") + up + url[len(folder):] or "./"

    def step_links(self, info: StepPage) -> str:
        """The links at the top and bottom of a step page: previous / experiment / next, pages;
        for a view of a run, the same step (or the section) of each other view."""
        run, here = info.run, info.position
        steps, uris = run.exp.steps, run.step_uris
        prev = (self.link(run, uris[here - 1], True), steps[here - 1].step) if here > 0 else None
        nxt = (self.link(run, uris[here + 1], True), steps[here + 1].step) if here + 1 < len(uris) else None
        up = self.link(run, run.page_uri, True) + (f"#{view_anchor(run.exp)}" if run.exp.run else "")
        links = step_links(prev, (up, run.exp.name), nxt)
        if run.exp.run:
            links += self.view_links(run, steps[here].step)
        pages = run.summaries[here].pages
        if pages > 1:
            step = steps[here].step
            urls = [self.link(run, self.step_uri(run.exp, step, p), True) for p in range(1, pages + 1)]
            links += pager(urls, info.page, run.summaries[here].trajectories, self.options.per_page)
        return links

    def view_links(self, run: ExperimentRun, step: int) -> str:
        """From a step page of a view: each view of its run, linking to the same step where that
        view has it, else to the view's section of the run's page."""
        items = []
        for other in self.experiment_pages[run.page_uri]:
            label = esc(other.exp.view)
            if other is run:
                items.append(f'<strong aria-current="page">{label}</strong>')
                continue
            position = self.positions(other).get(step)
            if position is not None:
                url, text = self.link(run, other.step_uris[position], True), f"{label}: step {step}"
            else:
                url, text = self.link(run, run.page_uri, True) + f"#{view_anchor(other.exp)}", f"{label} (no step {step})"
            items.append(f'<a href="{esc(url)}">{text}</a>')
        return f'<nav class="td-views" aria-label="Views">Views: {" · ".join(items)}</nav>'

    def positions(self, run: ExperimentRun) -> dict[int, int]:
        """{step: its position in the experiment's steps}, made once per experiment."""
        known = self._positions.get(run.own_uri)
        if known is None:
            known = self._positions[run.own_uri] = {s.step: i for i, s in reversed(list(enumerate(run.exp.steps)))}
        return known

    def readable_steps(self) -> dict[str, list[tuple[int, str]]]:
        """Each experiment's (or view's) readable steps as (step, cache key): what the merged views read."""
        return {run.own_uri: [(s.step, k) for s, k in zip(run.summaries, run.keys) if not s.unreadable]
                for run in self.runs}

    def overview_body(self, here: str, relative: RelativeUrl) -> str:
        if not self.runs:
            return "<p>No step files found yet.</p>"
        urls = [relative(self.urls[run.page_uri], here) + (f"#{view_anchor(run.exp)}" if run.exp.run else "")
                for run in self.runs]
        rows = [(run.exp, run.summaries, url) for run, url in zip(self.runs, urls)]
        views = [Run(run.exp.name, run.summaries,
                     [relative(self.urls[u], here) for u in run.step_uris]) for run in self.runs]
        prompts = relative(self.urls[self.prompts_uri], here)
        return (overview_table(rows)
                + f'<p class="td-facts"><a href="{prompts}">Recurring prompts</a>: responses to the same prompt '
                  "at different steps and in different experiments.</p>"
                + "<h2>Comparison</h2>" + comparison_table(views, urls) + comparison_charts(views))

    def experiment_body(self, runs: list[ExperimentRun], forking: dict[str, str]) -> str:
        """An experiment's page: charts, steps and forking tokens; for a run with views, a section of
        each view (training first) after links to them and the views' mean rewards in one chart."""
        if not runs[0].exp.run:
            return self.view_body(runs[0], forking.get(runs[0].own_uri, ""), 2)
        views = [Run(r.exp.view, r.summaries, [self.link(r, u, False) for u in r.step_uris]) for r in runs]
        nav = " · ".join(f'<a href="#{view_anchor(r.exp)}">{esc(r.exp.view)}</a>' for r in runs)
        parts = [f'<nav class="td-views" aria-label="Views">Views: {nav}</nav>']
        if len(runs) > 1:
            parts.append(f'<div class="td-charts">{view_reward_chart(views)}</div>')
        for r in runs:
            parts.append(f'<section class="td-view" data-view="{esc(r.exp.view)}">'
                         f'<h2 id="{view_anchor(r.exp)}">{esc(r.exp.view)}</h2>'
                         f'{self.view_body(r, forking.get(r.own_uri, ""), 3)}</section>')
        return "".join(parts)

    def view_body(self, run: ExperimentRun, forking: str, level: int) -> str:
        """One experiment's (or view's) charts, steps table with downloads, forking tokens."""
        view = Run(run.exp.name, run.summaries, [self.link(run, u, False) for u in run.step_uris])
        table = experiment_table(run.summaries, view.step_urls)
        folder = run.exp.slug[len(run_slug(run.exp)) + 1:] + "/" if run.exp.run else ""
        downloads = (f'<p class="td-facts">Step aggregates: <a href="{esc(folder)}steps.csv" download>CSV</a> · '
                     f'<a href="{esc(folder)}steps.json" download>JSON</a></p>')
        parts = [experiment_charts(view), f"<h{level}>Steps</h{level}>", downloads, table]
        if forking:
            parts += [f"<h{level}>Forking tokens</h{level}>", '<p class="td-note">The token strings most often flagged '
                      "high-entropy in this experiment, and how often they are flagged early and late in "
                      "training.</p>", forking]
        return "".join(parts)

    @property
    def search_index_uri(self) -> str:
        return f"{self.prefix}/search-index.js"

    def search_index(self, relative: RelativeUrl) -> Generated:
        """The run's search index (`search.search_index`): every experiment's readable steps,
        their shards and step pages, linked from the index's folder."""
        here = self.search_index_uri
        experiments = []
        for run in self.runs:
            steps = []
            for step, summary in zip(run.exp.steps, run.summaries):
                if summary.unreadable or not summary.trajectories:
                    continue
                urls = [relative(self.urls[self.step_uri(run.exp, step.step, p)], here) for p in range(1, summary.pages + 1)]
                steps.append([step.step, summary.trajectories, urls, summary.shard_version])
            experiments.append({"name": run.exp.name, "shards": relative(f"{self.prefix}/{run.exp.slug}/search/", here),
                                "steps": steps})
        content = search_index(experiments)
        self.search_version = hashlib.sha1(content.encode()).hexdigest()[:10]
        return Generated(here, content)

    def search_box(self, here: str, relative: RelativeUrl, current: Sequence[ExperimentRun] = ()) -> str:
        """The search box (`search.search_box`) of the page at URL `here`; the experiment page's
        own runs (`current`, empty on the overview) are searched by default."""
        names = [run.exp.name for run in (current or self.runs)]
        total = sum(len(run.exp.steps) for run in self.runs)
        index = f"{relative(self.search_index_uri, here)}?v={self.search_version}"  # a new index: a new URL (no stale copy)
        return search_box(index, names, total, "experiment" if current else "overview")

    def experiment_facts(self, runs: list[ExperimentRun]) -> str:
        """Searchable facts of an experiment (the first of `runs`); of a run with several views,
        a line per view."""
        if len(runs) > 1:
            return "".join(self.experiment_facts([r]).replace('<p class="td-facts">', f'<p class="td-facts">{esc(r.exp.view)}: ', 1)
                           for r in runs)
        run = runs[0]
        steps = run.summaries
        latest = latest_readable(steps)
        facts = (f'<p class="td-facts">Folder <code>{esc(self.options.shown_path(run.exp.folder))}</code> · {counted(len(steps), "step")} '
                 f"({steps[0].step}–{steps[-1].step}) · {counted(sum(s.trajectories for s in steps), 'trajectory', 'trajectories')}")
        if latest:
            facts += f" · latest step {latest.step}: mean reward {fmt_stat(latest.mean_reward)}"
            if latest.high_entropy_ratio is not None:  # only what the data has
                facts += f", high-entropy ratio {fmt_ratio(latest.high_entropy_ratio)}"
        return facts + "</p>"

    def merged_views(self, previous: MergedViews | None, path: str, extras_of: Callable[[str], StepExtras],
                     relative: RelativeUrl) -> MergedViews:
        """The forking-token tables and the prompts page, merged from every step's extras
        (`insights.merge_views`), linking from the prompts page to the best responses."""
        here = self.urls[self.prompts_uri]
        runs = {run.own_uri: run for run in self.runs}

        def step_link(uri: str, step: int, page: int) -> str:
            return relative(self.urls[self.step_uri(runs[uri].exp, step, page)], here)

        return merge_views(previous, path, self.readable_steps(), {uri: run.exp.name for uri, run in runs.items()},
                           extras_of, step_link, self.prompts_uri)

    def steps_message(self, cached: int, total: int, by_workers: int, seconds: float) -> str:
        workers = f", {by_workers} of them by worker processes" if by_workers else ""
        return (f"{counted(len(self.runs), 'experiment')}, {counted(sum(len(r.summaries) for r in self.runs), 'step')} "
                f"({total - cached} read{workers}, {cached} from cache) in {seconds:.1f} s")

    def take_final(self, final: dict, warn: Warn) -> None:
        """The final aggregates of the steps rendered late (`StepBuild.finish`)."""
        if not final:
            return
        for run in self.runs:
            for position, key in enumerate(run.keys):
                summary = final.get(key)
                if summary is not None and summary != run.summaries[position]:
                    run.summaries[position] = summary
                    if summary.unreadable:
                        warn(f"{shown_name(run.exp.steps[position].path)}: unreadable: {summary.unreadable}")


def page_name(runs: list[ExperimentRun]) -> str:
    """The name an experiment page shows: the experiment's, or its run's."""
    return runs[0].exp.run or runs[0].exp.name


def view_anchor(exp: Experiment) -> str:
    """The id of a view's section on its run's page."""
    return "view-" + exp.slug.rsplit("/", 1)[-1]


def view_reward_chart(views: list[Run]) -> str:
    """Mean reward over steps, a line per view (validation reward beside training reward)."""
    series = [Series(v.name, [Point(s.step, s.mean_reward, u) for s, u in readable(v)]) for v in views]
    if not any(p.y is not None for ser in series for p in ser.points):
        return ""
    return line_chart("Mean reward by view", series, fmt_stat)


def new_steps_message(new: list[tuple[str, int]]) -> str:
    """The steps that appeared since the last build (serve), as (experiment, step)."""
    return "new steps: " + ", ".join(f"{name} step {step}" for name, step in new[:10]) + (" ..." if len(new) > 10 else "")
