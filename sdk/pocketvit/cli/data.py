"""`pocketvit data`: make data folders a recipe can read (`data photos DIR`: the real sample photos)."""

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
