"""Data folders pocketvit writes on first use, named in recipes as `pocketvit:NAME[/PART]`:

    pocketvit:photos                          the real sample photos (data/photos.py), a flat folder
    pocketvit:fashion-mnist-small/labeled     50 labeled Fashion-MNIST images per class (data/fashion_folder.py),
    pocketvit:fashion-mnist-small/unlabeled   the rest of the training split without labels,
    pocketvit:fashion-mnist-small/test        the test split

They live under $POCKETVIT_DATA (default ~/.cache/pocketvit). Any other data.root is a plain folder path.
"""

from __future__ import annotations

import os
from pathlib import Path

from pocketvit.errors import DataError
from pocketvit.progress import log

PREFIX = "pocketvit:"
FOLDERS = ("photos", "fashion-mnist-small")
COMPLETE = ".complete"  # written last into a finished folder


def data_home() -> Path:
    return Path(os.environ.get("POCKETVIT_DATA", Path.home() / ".cache" / "pocketvit")).expanduser()


def is_builtin(root: str | None) -> bool:
    return bool(root) and str(root).startswith(PREFIX)


def locate(root: str) -> tuple[Path, bool]:
    """(the folder a recipe names, whether it is there already); writes nothing."""
    root = str(root)
    if not is_builtin(root):
        return Path(root).expanduser(), Path(root).expanduser().is_dir()
    name, _, part = root[len(PREFIX):].partition("/")
    if name not in FOLDERS:
        raise DataError(f"{root}: unknown pocketvit folder; known: {', '.join(PREFIX + f for f in FOLDERS)}")
    folder = data_home() / name
    ready = (folder / COMPLETE).exists() if name != "photos" else folder.is_dir()
    return (folder / part if part else folder), ready


def resolve_root(root: str) -> Path:
    """A recipe's folder as a path; a `pocketvit:` folder is written on first use."""
    root = str(root)
    path, _ = locate(root)
    if not is_builtin(root):
        return path
    name = root[len(PREFIX):].partition("/")[0]
    folder = data_home() / name
    if name == "photos":
        from pocketvit.data.photos import sources, write_photos

        if len(list(folder.glob("*.jpg"))) < len(sources()):
            files = write_photos(folder)
            log(f"data: wrote {len(files)} sample photos to {folder}")
    elif not (folder / COMPLETE).exists():
        from pocketvit.data.fashion_folder import write_fashion_folder

        log(f"data: writing {root.split('/')[0]} to {folder} (first use; about a minute)")
        counts = write_fashion_folder(folder)
        (folder / COMPLETE).write_text(f"{counts}\n")
    return path
