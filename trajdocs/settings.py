"""The plugin's options, checked and resolved against the folder of mkdocs.yml (no MkDocs here:
the plugin turns `OptionError` into MkDocs' own error)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from .formats import mapped
from .guard import site_dir_problem
from .remote import is_url
from .render import RenderOptions


class OptionError(ValueError):
    """A wrong option; the message names it and says what is expected."""


@dataclass
class Settings:
    roots: list[str]  # absolute folders, or URLs
    labels: list[str]  # experiment name prefixes, one per root ("" for a single root)
    prefix: str  # the site folder of the generated pages
    cache_folder: str | None  # None: a temporary folder
    allow_outside: tuple[str, ...]
    options: RenderOptions


def correct_option(value: dict) -> tuple[str, float]:
    """The `correct` option, checked: ("", 1.0) when unset."""
    if not value:
        return "", 1.0
    field, minimum = value.get("field"), value.get("min", 1)
    unknown = set(value) - {"field", "min"}
    if unknown or not isinstance(field, str) or not field.strip() or isinstance(minimum, bool) \
            or not isinstance(minimum, (int, float)) or not math.isfinite(minimum):
        raise OptionError("trajdocs: 'correct' must be {field: a dotted field of each record, e.g. "
                          "info.reward_metrics.accuracy_reward, min: a number (default 1)}")
    return field.strip(), float(minimum)


def mapping_option(value: Any) -> str:
    """The `mapping` option, checked (`formats.mapped.parse`), as JSON text ("" when unset)."""
    if value == {}:
        return ""
    try:
        mapped.parse(value)
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (ValueError, TypeError) as err:
        raise OptionError(f"trajdocs: 'mapping': {err}") from None


def _path(base: str, path: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def read_settings(c: Mapping[str, Any], base: str, site_dir: str, docs_dir: str, serving: bool,
                  use_directory_urls: bool) -> Settings:
    """The options `c` of the plugin in the mkdocs.yml of folder `base`, checked in order."""
    runs = c["runs"]
    runs = [runs] if isinstance(runs, str) else runs
    if not runs or not all(isinstance(r, str) and r.strip() for r in runs):
        raise OptionError("trajdocs: 'runs' must be a folder or a list of folders")
    roots = [r if is_url(r) else _path(base, r) for r in runs]
    labels = [r.strip("/") for r in runs] if len(runs) > 1 else [""]
    problem = None if serving else site_dir_problem(  # serve builds into a fresh temporary folder
        site_dir, [r for r in roots if not is_url(r)], docs_dir, base)
    if problem:
        raise OptionError(f"trajdocs: {problem}")
    prefix = c["path"].strip("/")
    if not prefix or ".." in prefix.split("/"):
        raise OptionError("trajdocs: 'path' must be a folder name inside the site, e.g. 'runs'")
    cache_folder = os.path.normpath(os.path.join(base, c["cache_dir"])) if c["cache"] else None
    if c["trajectories_per_page"] < 1 or c["max_tokens"] < 1:
        raise OptionError("trajdocs: 'trajectories_per_page' and 'max_tokens' must be at least 1")
    if c["max_file_mb"] <= 0 or c["max_text_chars"] < 1:
        raise OptionError("trajdocs: 'max_file_mb' and 'max_text_chars' must be positive")
    if not all(isinstance(a, str) and a.strip() for a in c["allow_outside"]):
        raise OptionError("trajdocs: 'allow_outside' must be a list of folders")
    allow_outside = tuple(_path(base, a) for a in c["allow_outside"])
    field, minimum = correct_option(c["correct"])
    tokenizer = c.get("tokenizer") or ""
    if not isinstance(tokenizer, str):
        raise OptionError("trajdocs: 'tokenizer' must be the path of a tokenizer.json file or a model folder")
    tokenizer = _path(base, tokenizer) if tokenizer.strip() else ""
    if tokenizer and not os.path.exists(tokenizer):
        raise OptionError(f"trajdocs: 'tokenizer': {tokenizer} does not exist (a tokenizer.json file or a "
                          "local model folder holding one)")
    mapping = mapping_option(c.get("mapping") or {})
    if c.get("format") == mapped.NAME and not mapping:
        raise OptionError("trajdocs: 'format: mapped' reads files through the 'mapping' option: set it "
                          f"({mapped.EXAMPLE})")
    options = RenderOptions(per_page=c["trajectories_per_page"], max_tokens=c["max_tokens"],
                            asset_base="../" if use_directory_urls else "",
                            base_dir=_path(base, c["paths_relative_to"]),
                            max_file_bytes=int(c["max_file_mb"] * 2 ** 20),
                            max_text=c["max_text_chars"], correct_field=field, correct_min=minimum,
                            tokenizer=tokenizer, mapping=mapping)
    return Settings(roots, labels, prefix, cache_folder, allow_outside, options)


def polyfills(plugins: list[str], named: list | None, asset_uri: str) -> list | None:
    """Material's offline plugin loads its file:// search shim from unpkg.com unless one is named
    already: with that plugin, name the copy shipped here (iframe-worker, MIT), so nothing leaves
    the machine. Returns the `extra.polyfills` to set; None (nothing to set) without the plugin."""
    if not any(name.split("/")[-1] == "offline" for name in plugins):
        return None
    return [p for p in named or [] if "iframe-worker" not in p] + [f"{asset_uri}/iframe-worker-shim.js"]
