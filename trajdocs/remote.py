"""Runs in object storage (s3://, gs://, hf://, memory://, file://, ...): step files are copied
into a local mirror through fsspec, only when new or changed, and read from there like any folder."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath

from .discover import SKIPPED_DIRS, match_step_path, user_claims


def is_url(entry: str) -> bool:
    return "://" in entry


def mirror(url: str, cache_folder: str, mapping: str = "") -> tuple[str, list[str]]:
    """(local folder holding the url's step files, problems). Needs fsspec and the url's backend.
    `mapping`: the option (JSON text), whose files are step files too."""
    try:
        import fsspec
    except ImportError:
        return "", [f"{url}: reading runs from a URL needs fsspec (pip install 'trajdocs[remote]')"]
    try:
        fs, root = fsspec.core.url_to_fs(url)
        found = fs.find(root, detail=True)
    except Exception as err:  # noqa: BLE001 - a missing backend or bucket is reported, not raised
        return "", [f"{url}: cannot list ({type(err).__name__}: {err})"]
    local = os.path.join(cache_folder, "remote", hashlib.sha1(url.encode()).hexdigest()[:16])
    index_path = os.path.join(local, ".index.json")
    try:
        with open(index_path, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError):
        index = {}
    problems = []
    claims = user_claims(mapping)
    root = root.rstrip("/")
    for path, info in sorted(found.items()):
        rel = posixpath.relpath(path, root)
        parts = rel.split("/")
        if info.get("type") == "directory" or any(p.startswith(".") or p in SKIPPED_DIRS for p in parts[:-1]):
            continue
        if match_step_path(rel, claims) is None or ".." in parts:
            continue
        stamp = [info.get("size"), str(info.get("mtime") or info.get("LastModified") or info.get("ETag") or "")]
        target = os.path.join(local, *parts)
        if index.get(rel) == stamp and os.path.exists(target):
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            with fs.open(path, "rb") as src, open(target + ".part", "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(target + ".part", target)
            index[rel] = stamp
        except Exception as err:  # noqa: BLE001
            problems.append(f"{url}/{rel}: cannot copy ({type(err).__name__}: {err})")
    os.makedirs(local, exist_ok=True)
    with open(index_path, "w", encoding="utf-8") as f:
        json.dump(index, f)
    return local, problems
