"""The `pocketvit` command: the root only wires the command modules together."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from pocketvit import __version__
from pocketvit.cli import bench as bench_cmd
from pocketvit.cli import build, demo, predict
from pocketvit.cli import clip as clip_cmd
from pocketvit.cli import data as data_cmd
from pocketvit.cli import export as export_cmd
from pocketvit.cli import inspect as inspect_cmd
from pocketvit.cli import verify as verify_cmd
from pocketvit.cli import zoo as zoo_cmd

app = typer.Typer(
    name="pocketvit",
    help="Distill, early-exit, quantize and ship vision models — verified on the runtime you ship.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"pocketvit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """pocketvit: one recipe, one command, a bundle verified on every runtime."""


app.command("build")(build.build)
app.command("validate")(build.validate)
app.command("predict")(predict.predict)
app.command("verify")(verify_cmd.verify)
app.command("bench")(bench_cmd.bench)
app.command("bench-zoo")(bench_cmd.bench_zoo)
app.command("zoo-coverage")(zoo_cmd.zoo_coverage)
app.command("inspect")(inspect_cmd.inspect)
app.command("demo")(demo.demo)
app.command("export")(export_cmd.export)
app.add_typer(data_cmd.app, name="data")
app.command("distill-text")(clip_cmd.distill_text)


def main() -> None:
    from pocketvit.cli.common import quiet_terminal, verbose_enabled

    if verbose_enabled():
        os.environ["POCKETVIT_VERBOSE"] = "1"  # the runtime (and child processes) let their output through too
    else:
        quiet_terminal()
    app()


if __name__ == "__main__":
    main()
