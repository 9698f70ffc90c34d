"""Memory and size housekeeping around builds: handing freed memory back to the system, and
warnings when a site nears its host's size limits."""

from __future__ import annotations

import ctypes
import gc
import os
import threading

from .text import shown_name

MB = 2 ** 20


def release_memory(collect: bool = True) -> None:
    """Hand freed memory back to the system: without it a long `mkdocs serve` keeps the
    high-water mark of a fragmented heap and grows a little with every rebuild."""
    if collect:
        gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)  # glibc; elsewhere there is nothing to call
    except (OSError, AttributeError, TypeError):
        pass


class IdleRelease:
    """`release_memory` a second after a build, once its pages are garbage too (while `serve`
    waits for changes); cancelled when the next build starts first."""

    def __init__(self) -> None:
        self._timer: threading.Timer | None = None

    def schedule(self) -> None:
        self._timer = threading.Timer(1.0, release_memory)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def size_report(site_dir: str, size_limit_mb: float, file_limit_mb: float) -> tuple[str, list[str]]:
    """(an info line, warnings) when the site or a file passes or nears the host's limits (GitHub
    Pages by default), naming every file over the per-file limit, and saying what helps."""
    file_limit, size_limit = file_limit_mb * MB, size_limit_mb * MB
    total, largest = 0, 0
    big: list[tuple[int, str]] = []
    for folder, _, names in os.walk(site_dir):
        for name in names:
            size = os.path.getsize(os.path.join(folder, name))
            total += size
            largest = max(largest, size)
            if size > 0.8 * file_limit:
                big.append((size, os.path.relpath(os.path.join(folder, name), site_dir)))
    info = f"site: {total / MB:.1f} MB, largest file {largest / MB:.1f} MB"
    warnings = []
    advice = ("to reduce it: point `runs` at fewer experiments or keep fewer step files, lower "
              "`trajectories_per_page` (smaller step pages) or save fewer trajectories per step")
    if total > 0.8 * size_limit:
        where = "over" if total > size_limit else "near"
        warnings.append(f"the site is {total / MB:.0f} MB, {where} the {size_limit_mb:g} MB limit "
                        f"(size_limit_mb; GitHub Pages allows 1 GB); {advice}")
    over = sorted((b for b in big if b[0] > file_limit), reverse=True)
    near = sorted((b for b in big if b[0] <= file_limit), reverse=True)
    for files, where in ((over, "over"), (near, "near")):
        if files:
            listed = ", ".join(f"{shown_name(path)} ({size / MB:.0f} MB)" for size, path in files)
            warnings.append(f"{len(files)} file{'s' if len(files) > 1 else ''} {where} the "
                            f"{file_limit_mb:g} MB per-file limit (file_limit_mb; GitHub allows "
                            f"100 MB): {listed}; {advice}")
    return info, warnings
