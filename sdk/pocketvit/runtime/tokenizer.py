"""BERT WordPiece tokenizer in plain Python + numpy, for the text encoder a zero-shot bundle may carry.

It follows Hugging Face ``tokenizers``' BERT pipeline (what ``BertTokenizerFast`` and all-MiniLM-L6-v2 use):
BertNormalizer (clean text, spaces around CJK characters, strip accents, lower-case), BertPreTokenizer
(split on whitespace and isolate each punctuation character), greedy longest-match-first WordPiece with
``##`` continuations (a word that cannot be covered, or is over 100 characters, becomes ``[UNK]``), then
``[CLS] ... [SEP]``, truncation and right padding to a fixed length.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from pocketvit.errors import BundleError

MAX_CHARS_PER_WORD = 100


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    return ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cf", "Cn", "Co", "Cs")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


class WordPieceTokenizer:
    """``tokenizer(sentences)`` -> (input_ids, attention_mask), both int64 [N, max_length]."""

    def __init__(self, vocab: Sequence[str], *, lower_case: bool = True, strip_accents: bool | None = None,
                 chinese_chars: bool = True, max_length: int = 32, unk: str = "[UNK]", cls: str = "[CLS]",
                 sep: str = "[SEP]", pad: str = "[PAD]", prefix: str = "##"):
        self.vocab = {tok: i for i, tok in enumerate(vocab)}
        missing = [t for t in (unk, cls, sep, pad) if t not in self.vocab]
        if missing:
            raise BundleError(f"text encoder vocabulary lacks the special token(s) {missing}; rebuild the bundle")
        if max_length < 3:
            raise BundleError(f"text encoder max_length must be at least 3 (CLS, one token, SEP), got {max_length}")
        self.lower_case = lower_case
        self.strip_accents = lower_case if strip_accents is None else strip_accents  # BERT's default
        self.chinese_chars = chinese_chars
        self.max_length = int(max_length)
        self.prefix = prefix
        self.unk_id, self.cls_id = self.vocab[unk], self.vocab[cls]
        self.sep_id, self.pad_id = self.vocab[sep], self.vocab[pad]
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_vocab_file(cls, path: str | Path, **options) -> WordPieceTokenizer:
        """vocab.txt: one token per line, its id = its line number."""
        try:
            lines = Path(path).read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as e:
            raise BundleError(f"{path}: cannot read the text encoder vocabulary ({e}); rebuild the bundle") from None
        if lines and lines[-1] == "":
            lines.pop()
        return cls([t.rstrip("\r") for t in lines], **options)

    # -- the pipeline
    def normalize(self, text: str) -> str:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                out.append(" ")
            elif self.chinese_chars and _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = "".join(out)
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        if self.lower_case:
            text = "".join(c.lower() for c in text)  # per character, as the Rust normalizer does
        return text

    def pre_tokenize(self, text: str) -> list[str]:
        words: list[str] = []
        for chunk in text.split():
            start = 0
            for i, ch in enumerate(chunk):
                if _is_punctuation(ch):
                    if i > start:
                        words.append(chunk[start:i])
                    words.append(ch)
                    start = i + 1
            if start < len(chunk):
                words.append(chunk[start:])
        return words

    def word_ids(self, word: str) -> list[int]:
        """Greedy longest-match-first WordPiece; the whole word is [UNK] when a piece is missing."""
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        ids: list[int] = []
        if len(word) > MAX_CHARS_PER_WORD:
            ids = [self.unk_id]
        else:
            start = 0
            while start < len(word):
                end, found = len(word), None
                while start < end:
                    piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                    found = self.vocab.get(piece)
                    if found is not None:
                        break
                    end -= 1
                if found is None:
                    ids = [self.unk_id]
                    break
                ids.append(found)
                start = end
        if len(self._cache) < 65536:
            self._cache[word] = ids
        return ids

    def pieces(self, text: str) -> list[int]:
        """The word-piece ids of ``text``, untruncated, without [CLS] and [SEP]."""
        return [i for w in self.pre_tokenize(self.normalize(text)) for i in self.word_ids(w)]

    def ids(self, text: str) -> list[int]:
        """[CLS] word pieces [SEP], the pieces truncated to max_length - 2."""
        return [self.cls_id, *self.pieces(text)[: self.max_length - 2], self.sep_id]

    def __call__(self, sentences: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        rows = [self.ids(s) for s in sentences]
        ids = np.full((len(rows), self.max_length), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), self.max_length), dtype=np.int64)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        return ids, mask

    def tokens(self, text: str) -> list[str]:
        """The token strings of ``text`` (for messages and tests)."""
        inv = {i: t for t, i in self.vocab.items()}
        return [inv[i] for i in self.ids(text)]
