"""Late injection: how generated HTML gets into pages without passing through Markdown.

Every generated page's Markdown source (`page_source`) holds one plain marker word, which
Markdown turns into a paragraph (`SLOT`) at no cost (a raw HTML block would cost an HTML parse
per page). The HTML goes in at that paragraph, at three moments of a build:

1. searchable text (an experiment's facts) goes in *before* the slot while the page's content
   is converted (`before_slot`, MkDocs' `page_content`), so the search index sees it;
2. the overview, prompts and experiment pages get their bodies in the slot once the theme has
   written the whole page (`fill_slot`, `post_page`): after search indexing, built from every
   step's aggregates, which by then are final;
3. step pages are written by MkDocs with the slot still in them and remembered
   (`StepPageSlots.remember`); after the build (`StepPageSlots.fill`, `post_build`) each file is
   split at the slot and rewritten as head + step links + the step's rendered fragment, copied
   as bytes from the cache + tail (`StepCache.place_page`, a hard link to a kept copy where it
   can). The token HTML never passes through Markdown, the theme, or a Python string.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from .cache import StepCache
from .model import StepPage
from .text import yaml_string

SLOT_MARK = "trajdocsslot7f3c"
SLOT = f"<p>{SLOT_MARK}</p>"


def page_source(title: str, heading: str, searchable: bool) -> str:
    """A generated page's Markdown: front matter, its heading, and the slot."""
    search = "" if searchable else "search:\n  exclude: true\n"
    # no table of contents column: the tokens and the tables get the width
    return f"---\ntitle: {yaml_string(title)}\n{search}hide:\n  - toc\n---\n\n# {heading}\n\n{SLOT_MARK}\n"


def before_slot(html: str, text: str) -> str:
    """Moment 1: `text` goes before the slot (still searchable)."""
    return html.replace(SLOT, text + SLOT)


def fill_slot(html: str, body: str) -> str:
    """Moment 2: the slot of a written page becomes `body`."""
    return html.replace(SLOT, body, 1)


@dataclass
class Waiting:
    dest: str  # the written page
    info: StepPage  # which step and which of its pages


class StepPageSlots:
    """Moment 3: step pages written with their slot, filled after the build."""

    def __init__(self) -> None:
        self.waiting: list[Waiting] = []

    def remember(self, html: str, page: Waiting) -> None:
        """A step page MkDocs is about to write: filled by `fill` if it still holds its slot."""
        if SLOT in html:
            self.waiting.append(page)
            if os.path.lexists(page.dest):  # a --dirty build: never write through a link into the cache
                os.unlink(page.dest)

    def fill(self, cache: StepCache, links_of: Callable[[StepPage], str], warn: Callable[[str], None]) -> None:
        """Splice each remembered page's links and rendered fragment in at its slot."""
        slot = SLOT.encode()
        for page in self.waiting:
            with open(page.dest, "rb") as f:
                head, found, tail = f.read().partition(slot)
            if not found:
                continue
            info = page.info
            links = links_of(info).encode()
            try:
                cache.place_page(page.dest, head + links, info.key, info.page, links + tail)
            except OSError as err:
                warn(f"{info.run.exp.steps[info.position].path}: rendered page missing from the cache ({err}); rebuild")
        self.waiting = []
