"""Real text that is on every machine, and the Fashion-MNIST captions and class prompts.

Text distillation needs real sentences and there is no text corpus offline here, so the sentences come
from the docstrings of Python's standard library: English prose written by people, identical for one
Python version everywhere. Held-out sentences come from other modules than the training ones, so no
sentence (or its near-copy in a sibling function) is on both sides.

Fashion-MNIST has no captions: each class gets one written description (its "real" caption), templated
captions, and synthetic captions naming what the image shows (dark / light garment), several per image.
"""

from __future__ import annotations

import importlib
import inspect
import re

import numpy as np

TRAIN_MODULES = (
    "argparse", "asyncio", "collections", "csv", "datetime", "decimal", "email", "fractions", "functools",
    "gzip", "http.client", "json", "logging", "multiprocessing", "os", "pathlib", "pickle", "random",
    "shutil", "socket", "sqlite3", "string", "subprocess", "tarfile", "tempfile", "threading", "unittest",
    "urllib.request", "uuid", "xml.dom.minidom", "zipfile", "typing", "dataclasses", "enum", "abc",
    "calendar", "configparser", "difflib", "heapq", "imaplib", "inspect", "io", "locale", "mailbox",
    "optparse", "platform", "pprint", "queue", "sched", "selectors", "smtplib", "statistics", "textwrap",
)
HELDOUT_MODULES = ("ftplib", "http.cookiejar", "ipaddress", "contextlib", "bisect", "codecs", "doctest",
                   "gettext", "hashlib", "numbers", "pdb", "shelve", "tokenize", "weakref", "zoneinfo")

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _docstrings(module_name: str) -> list[str]:
    try:
        mod = importlib.import_module(module_name)
    except ImportError:  # a platform without this module simply contributes nothing
        return []
    docs = [inspect.getdoc(mod) or ""]
    for name, obj in sorted(vars(mod).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            docs.append(inspect.getdoc(obj) or "")
            if inspect.isclass(obj):
                docs += [inspect.getdoc(m) or "" for n, m in sorted(vars(obj).items())
                         if not n.startswith("_") and inspect.isfunction(m)]
    return docs


def _sentences(text: str, min_words: int, max_words: int) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", text):
        if ">>>" in para or para.lstrip().startswith(("-", "*", ":")):
            continue
        for s in _SPLIT.split(" ".join(para.split())):
            words = s.split()
            letters = sum(c.isalpha() or c == " " for c in s) / max(1, len(s))
            if min_words <= len(words) <= max_words and letters > 0.85 and s[-1] in ".!?":
                out.append(s)
    return out


def docstring_sentences(modules: tuple[str, ...], min_words: int = 6, max_words: int = 40) -> list[str]:
    """Unique prose sentences from these modules' docstrings, in a fixed order."""
    seen: dict[str, None] = {}
    for m in modules:
        for doc in _docstrings(m):
            for s in _sentences(doc, min_words, max_words):
                seen.setdefault(s, None)
    return list(seen)


def text_corpus(limit_train: int | None = None, limit_heldout: int | None = None,
                seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, held-out) sentences: stdlib docstrings (disjoint modules) + Fashion-MNIST captions (train side)."""
    rng = np.random.default_rng(seed)
    heldout = docstring_sentences(HELDOUT_MODULES)
    seen = set(heldout)  # a docstring can be shared between modules: such sentences stay held out only
    train = [s for s in docstring_sentences(TRAIN_MODULES) + all_captions() if s not in seen]
    train = [train[i] for i in rng.permutation(len(train))]
    heldout = [heldout[i] for i in rng.permutation(len(heldout))]
    return train[:limit_train], heldout[:limit_heldout]


# --------------------------------------------------------------------------- Fashion-MNIST captions

CLASS_NAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
DESCRIPTIONS = (
    "a short-sleeved t-shirt or top seen from the front",
    "a pair of long trousers",
    "a long-sleeved pullover sweater",
    "a woman's dress",
    "a coat with long sleeves and buttons",
    "an open summer sandal with straps",
    "a shirt with a collar and long sleeves",
    "a sneaker, a low sports shoe",
    "a handbag or shopping bag",
    "an ankle boot with a heel",
)
TEMPLATES = ("a photo of a {}.", "a grayscale photo of a {}.", "a low resolution photo of a {}.",
             "a product photo of a {}.", "a small picture of a {}.", "a {} on a black background.")
TONES = ("dark", "grey", "light")
SYNTHETIC = ("a photo of a {tone} {name}.", "a {tone} {name} on a black background.")


def article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def class_prompts(name: str) -> list[str]:
    """The zero-shot prompts of one class (CLIP-style prompt ensemble over TEMPLATES)."""
    return [t.format(name).replace(f"a {name}", article(name)) for t in TEMPLATES]


def class_captions(c: int) -> list[str]:
    """Every caption a class-c image can get: description, templated prompts, synthetic (one per tone)."""
    name = CLASS_NAMES[c]
    synth = [s.format(tone=tone, name=name) for tone in TONES for s in SYNTHETIC]
    return [DESCRIPTIONS[c]] + class_prompts(name) + synth


def all_captions() -> list[str]:
    return [cap for c in range(len(CLASS_NAMES)) for cap in class_captions(c)]


def image_tone(images: np.ndarray) -> np.ndarray:
    """0 dark / 1 grey / 2 light from the mean brightness of the garment's own pixels (uint8 N x ... images)."""
    x = images.reshape(len(images), -1).astype(np.float32)
    on = x > 20
    mean = (x * on).sum(1) / np.maximum(on.sum(1), 1)
    return np.digitize(mean, [90.0, 160.0])


def caption_indices(labels: np.ndarray, images: np.ndarray, per_image: int, seed: int) -> np.ndarray:
    """(N, per_image) indices into all_captions(): the real description, the synthetic captions of the
    image's tone, then templated ones, drawn per image from `seed`."""
    per_class = len(class_captions(0))
    n_t, n_s = len(TEMPLATES), len(SYNTHETIC)
    tones = image_tone(images)
    rng = np.random.default_rng(seed)
    out = np.zeros((len(labels), per_image), dtype=np.int32)
    for i, (c, tone) in enumerate(zip(labels, tones)):
        base = int(c) * per_class
        synth = [base + 1 + n_t + int(tone) * n_s + j for j in range(n_s)]
        templ = list(base + 1 + rng.permutation(n_t))
        out[i] = ([base] + synth + templ)[:per_image]
    return out
