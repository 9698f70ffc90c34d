"""Token ids -> the text of each token, as the trainer's tokenizer has it (the `tokenizer` option).

Read with the `tokenizers` package (the optional extra `trajdocs[tokenizer]`), offline, from a
`tokenizer.json` file or a local Hugging Face model folder holding one.
"""

from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

INSTALL_HINT = "pip install 'trajdocs[tokenizer]'"
NO_TOKENIZER_NOTE = ("token ids shown as numbers: give trajdocs the trainer's tokenizer to see text "
                     "(the plugin option `tokenizer: path/to/tokenizer.json` or a model folder, or "
                     "`--tokenizer PATH` on trajdocs build, serve and check)")


class TokenizerUnavailable(RuntimeError):
    """The tokenizer cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Pieces:
    """Each token's text, one per id. A character that the byte-level vocabulary splits over
    several tokens is shown whole on its last token; the tokens before it carry only part of its
    bytes and are marked in `joined` (their text is ""). Bytes that never form a character are
    U+FFFD; ids outside the vocabulary are listed in `unknown`, their text "<id N>"."""

    texts: list[str]
    joined: list[bool]
    unknown: list[int]


def _byte_decoder() -> dict[str, int]:
    """The byte-level BPE alphabet (GPT-2): each of the 256 bytes stands as one printable character."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = visible[:]
    n = 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(visible, chars)}


BYTE_DECODER = _byte_decoder()
BYTE_TABLE = {ord(ch): b for ch, b in BYTE_DECODER.items()}  # str.translate: alphabet -> chr(byte)
BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


class Vocabulary:
    """A loaded tokenizer: id -> the bytes of the token (or its text, for added special tokens)."""

    def __init__(self, path: str) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise TokenizerUnavailable(f"reading token ids as text needs the 'tokenizers' package: {INSTALL_HINT}") from None
        file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise TokenizerUnavailable(f"tokenizer: {path} holds no tokenizer.json")
        try:
            self.tokenizer = Tokenizer.from_file(file)
            added = self.tokenizer.get_added_tokens_decoder()
            decoder = self.tokenizer.decoder
            kinds = "" if decoder is None else decoder.__getstate__().decode("utf-8", "replace")
        except Exception as err:  # noqa: BLE001 - any broken file: say so, do not crash
            raise TokenizerUnavailable(f"tokenizer: {file} cannot be read ({type(err).__name__}: {err})") from None
        self.added = {int(token_id): token.content for token_id, token in added.items()}
        self.byte_level = "ByteLevel" in kinds
        self.metaspace = "Metaspace" in kinds or "Replace" in kinds
        self.size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self._whole: list[str | None] | None = None
        self.known: dict[int, bytes | str] = {}  # token_bytes of the ids seen so far

    def whole_texts(self) -> list[str | None]:
        """Per id below `size`: its text when the token is a whole special token or whole UTF-8
        characters by itself, else None (part of a character split over tokens, or outside the
        vocabulary). Made once per process."""
        if self._whole is None:
            whole: list[str | None] = [None] * self.size
            if self.byte_level:  # all at once: the byte-level alphabet -> bytes by one translate table
                for piece, token_id in self.tokenizer.get_vocab(with_added_tokens=False).items():
                    if 0 <= token_id < self.size and token_id not in self.added:
                        try:
                            whole[token_id] = piece.translate(BYTE_TABLE).encode("latin-1").decode("utf-8")
                        except (UnicodeEncodeError, UnicodeDecodeError):
                            pass  # part of a character, or not byte-level: the byte-by-byte path
                for token_id, text in self.added.items():
                    if 0 <= token_id < self.size:
                        whole[token_id] = text
            else:
                for token_id in range(self.size):
                    raw = self.token_bytes(token_id)
                    try:
                        whole[token_id] = raw if raw is None or isinstance(raw, str) else raw.decode("utf-8")
                    except UnicodeDecodeError:
                        pass
            self._whole = whole
        return self._whole

    def token_bytes(self, token_id: int) -> bytes | str | None:
        """The bytes of a token; a special (added) token's text as str; None outside the vocabulary."""
        try:
            return self.known[token_id]
        except KeyError:
            found = self._token_bytes(token_id)
            if found is not None:  # (ids outside the vocabulary are not kept: a file could hold any number)
                self.known[token_id] = found
            return found

    def _token_bytes(self, token_id: int) -> bytes | str | None:
        if token_id in self.added:
            return self.added[token_id]
        piece = self.tokenizer.id_to_token(token_id) if 0 <= token_id < 2 ** 32 else None
        if piece is None:
            return None
        if self.byte_level and all(ch in BYTE_DECODER for ch in piece):
            return bytes(BYTE_DECODER[ch] for ch in piece)
        m = BYTE_FALLBACK.fullmatch(piece)
        if m:
            return bytes([int(m.group(1), 16)])
        if self.metaspace:
            return piece.replace("\u2581", " ").encode("utf-8")
        return self.tokenizer.decode([token_id], skip_special_tokens=False).encode("utf-8")


@lru_cache(maxsize=4)
def load(path: str) -> Vocabulary:
    """The tokenizer at `path` (once per process); `TokenizerUnavailable` says why it cannot be."""
    return Vocabulary(path)


def decode_pieces(ids: Sequence[Any], path: str) -> Pieces:
    """Each id's text, exactly the bytes the trainer's tokenizer gives it, decoded as UTF-8 across
    token boundaries (see `Pieces`). Raises `TokenizerUnavailable`.

    Guarantee: the same as `decode_pieces_plain` (which tests compare it with); fast because ids
    of tokens made of whole characters are looked up in one table, and only the tokens from a
    piece of a character to the next point where no byte is pending go through the byte-by-byte
    decoding; a sequence with an id outside the vocabulary (or not an integer) is decoded plainly."""
    vocab = load(path)
    if not ids or set(map(type, ids)) != {int} or min(ids) < 0 or max(ids) >= vocab.size:
        return decode_pieces_plain(ids, path)
    whole = vocab.whole_texts()
    texts = [whole[i] for i in ids]
    if None not in texts:
        return Pieces(texts, [False] * len(texts), [])  # type: ignore[arg-type]
    joined = [False] * len(texts)
    n, i = len(ids), texts.index(None)
    while True:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        while i < n:  # byte by byte from a piece of a character until nothing is pending
            raw = vocab.token_bytes(ids[i])
            if isinstance(raw, str):  # a special token flushes what is pending, as in the plain loop
                texts[i] = decoder.decode(b"", final=True) + raw
                joined[i] = False
            else:
                text = decoder.decode(raw)  # type: ignore[arg-type]
                texts[i], joined[i] = text, text == "" and raw != b""
            i += 1
            if decoder.getstate()[0] == b"":
                break
        else:
            tail = decoder.decode(b"", final=True)
            if tail:
                texts[-1] += tail  # type: ignore[operator]
                joined[-1] = False
            break
        try:
            i = texts.index(None, i)
        except ValueError:
            break
    return Pieces(texts, joined, [])  # type: ignore[arg-type]


def decode_pieces_plain(ids: Sequence[Any], path: str) -> Pieces:
    """`decode_pieces` token by token: the reference it is compared with."""
    vocab = load(path)
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    texts: list[str] = []
    joined: list[bool] = []
    unknown: list[int] = []
    for i, token_id in enumerate(ids):
        raw = vocab.token_bytes(token_id) if isinstance(token_id, int) and not isinstance(token_id, bool) else None
        if raw is None:
            texts.append(decoder.decode(b"", final=True) + f"<id {token_id}>")
            decoder.reset()
            joined.append(False)
            unknown.append(i)
        elif isinstance(raw, str):
            texts.append(decoder.decode(b"", final=True) + raw)
            decoder.reset()
            joined.append(False)
        else:
            text = decoder.decode(raw)
            texts.append(text)
            joined.append(text == "" and raw != b"")
    tail = decoder.decode(b"", final=True)
    if tail and texts:
        texts[-1] += tail
        joined[-1] = False
    return Pieces(texts, joined, unknown)
