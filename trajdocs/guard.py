"""Never let a site build wipe a user's files: MkDocs empties the site folder before every build."""

from __future__ import annotations

import os

from . import __version__

MARKER = ".trajdocs-site"  # written into every site trajdocs builds; MkDocs keeps top-level dot files
# what MkDocs always writes at the top of a site (besides index.html), one of them is enough
SITE_FILES = ("sitemap.xml", "sitemap.xml.gz", "404.html", os.path.join("search", "search_index.json"))
# file types of a built site: pages, theme assets, search index, downloads and images trajdocs copies
SITE_EXTENSIONS = {"html", "htm", "css", "js", "mjs", "map", "json", "xml", "gz", "txt", "csv", "svg", "png",
                   "jpg", "jpeg", "gif", "webp", "avif", "bmp", "ico", "woff", "woff2", "ttf", "otf", "eot",
                   "webmanifest", "pdf", "license"}
SITE_NAMES = {"CNAME", ".nojekyll"}


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def _inside(path: str, folder: str) -> bool:
    """Whether `path` is `folder` or lies inside it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def overlap_problem(site: str, folders: list[tuple[str, str]], name: str = "the output folder") -> str | None:
    """Why building into `site` would wipe or write into one of `folders` ((what, path) pairs): the
    site folder is one of them, lies inside one, or holds one. Symlinks are resolved. None if safe."""
    real_site = _real(site)
    for what, folder in folders:
        real = _real(folder)
        if real_site == real:
            return f"{name} {site} is the {what} {folder}"
        if _inside(real_site, real):
            return f"{name} {site} lies inside the {what} {folder}"
        if _inside(real, real_site):
            return f"{name} {site} holds the {what} {folder}"
    return None


def looks_like_site(folder: str) -> bool:
    """Whether a folder is empty or missing, holds the marker of a site trajdocs built, or looks like
    a site MkDocs built: `index.html` plus one of SITE_FILES at the top, and nothing but web files
    (SITE_EXTENSIONS, SITE_NAMES) below. Top-level dot entries are ignored: MkDocs never deletes them."""
    if not os.path.isdir(folder):
        return not os.path.lexists(folder)
    top = [name for name in os.listdir(folder) if not name.startswith(".")]
    if not top or os.path.isfile(os.path.join(folder, MARKER)):
        return True
    if not os.path.isfile(os.path.join(folder, "index.html")):
        return False
    if not any(os.path.isfile(os.path.join(folder, name)) for name in SITE_FILES):
        return False
    for here, dirs, names in os.walk(folder):
        if here == folder:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            names = [n for n in names if not n.startswith(".")]
        for name in names:
            if name not in SITE_NAMES and name.rsplit(".", 1)[-1].lower() not in SITE_EXTENSIONS:
                return False
        for d in dirs:
            if os.path.islink(os.path.join(here, d)):
                return False  # a link to elsewhere is not something a build writes
    return True


def output_problem(site: str, runs: list[str], force: bool, cwd: str | None = None) -> str | None:
    """Why `trajdocs build RUNS -o site` must not run, or None: the site folder overlaps a runs
    folder, is the current folder or one above it (always refused), or is a non-empty folder that
    does not look like a site (`looks_like_site`; refused unless `force`)."""
    problem = overlap_problem(site, [("runs folder", r) for r in runs])
    if problem:
        return problem
    here = _real(cwd or os.getcwd())
    if _inside(here, _real(site)):
        return f"the output folder {site} is the current folder or one above it"
    if not force and not looks_like_site(site):
        if not os.path.isdir(site):
            return f"the output folder {site} exists and is not a folder"
        return (f"the output folder {site} is not empty and does not look like a site trajdocs or MkDocs built; "
                "every file in it would be deleted (choose another folder, or pass --force to replace it)")
    return None


def site_dir_problem(site_dir: str, runs: list[str], docs_dir: str, config_dir: str | None = None) -> str | None:
    """The plugin's guard: MkDocs empties `site_dir` before every build, so a runs folder (or the
    docs folder) must neither be it, lie inside it, nor hold it, and `site_dir` must not be the
    folder of mkdocs.yml or one above it. Symlinks are resolved."""
    problem = overlap_problem(site_dir, [("runs folder", r) for r in runs] + [("docs folder", docs_dir)],
                              "site_dir")
    if not problem and config_dir and _inside(_real(config_dir), _real(site_dir)):
        problem = f"site_dir {site_dir} holds mkdocs.yml ({config_dir})"
    if problem:
        return (f"{problem}; every build empties site_dir: set site_dir (or runs) so that neither "
                "holds the other")
    return None


def mark_site(folder: str) -> None:
    """Write the marker that tells `trajdocs build -o` this folder is a site it may replace."""
    path = os.path.join(folder, MARKER)
    if os.path.isdir(folder) and not os.path.lexists(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"A site built by trajdocs {__version__}: `trajdocs build -o` replaces this folder.\n")
