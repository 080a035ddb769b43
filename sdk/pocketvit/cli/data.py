"""`pocketvit data`: make data folders a recipe can read (`data photos DIR`: the real sample photos;
`data fashion-mnist-small DIR`: a few labeled Fashion-MNIST images per class, the rest unlabeled, the test split)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pocketvit.cli.common import DebugOpt, VerboseOpt, err_console, handle_errors

app = typer.Typer(help="Make data folders for recipes (image folders).", no_args_is_help=True)


@app.command("photos")
@handle_errors
def photos(
    folder: Annotated[Path, typer.Argument(help="Folder to write the photos into (created if missing).")],
    debug: DebugOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write the real photos shipped with scikit-image, scikit-learn and matplotlib as JPEG files: a flat
    image folder for label-free distillation (recipes/photos-lite0.yaml: --set data.root=FOLDER)."""
    from pocketvit.data.photos import write_photos
    from pocketvit.runtime.io import writable_dir

    writable_dir(folder, "FOLDER")

    files = write_photos(folder)
    err_console.print(f"wrote {len(files)} photos to {folder}: {', '.join(f.stem for f in files)}")


@app.command("fashion-mnist-small")
@handle_errors
def fashion_mnist_small(
    folder: Annotated[Path, typer.Argument(help="Folder to write labeled/, unlabeled/ and test/ into.")],
    per_class: Annotated[int, typer.Option(help="Labeled training images per class.", min=1)] = 50,
    unlabeled: Annotated[int | None, typer.Option(help="At most this many unlabeled images (default: the rest "
                                                     "of the training split).", min=0)] = None,
    test_per_class: Annotated[int | None, typer.Option(help="At most this many test images per class (default: "
                                                          "all 1,000).", min=1)] = None,
    root: Annotated[Path, typer.Option(help="Folder of the Fashion-MNIST idx files.")] = Path(
        "/usr/share/datasets/fashion-mnist"),
) -> None:
    """Write a small labeled image folder from Fashion-MNIST as PNG files: FOLDER/labeled/<class>/ (PER_CLASS
    training images per class), FOLDER/unlabeled/ (the rest of the training split, no labels) and FOLDER/test/<class>/
    (the test split). recipes/fashion-mnist-50.yaml reads it: --set data.root=FOLDER/labeled ..."""
    from pocketvit.data.fashion_folder import write_fashion_folder

    counts = write_fashion_folder(folder, per_class, unlabeled, test_per_class, root)
    err_console.print(f"wrote {folder}: labeled/ {counts['labeled']} images ({per_class} per class), unlabeled/ "
                      f"{counts['unlabeled']}, test/ {counts['test']}")
