"""Errors a user can cause. Library code raises these; only the CLI turns them into exit codes.

This module imports nothing, so the torch-free runtime can use it too. The exit codes are documented in
docs/commands.md ("Errors and exit codes"); keep the two in step.
"""


class PocketVitError(Exception):
    """Base class: the message names the problem and the fix."""

    exit_code = 1


class RecipeError(PocketVitError):
    """A recipe (or a --set override) is invalid."""

    exit_code = 2


class DataError(PocketVitError):
    """A dataset is missing or unreadable."""

    exit_code = 2


class BundleError(PocketVitError):
    """A bundle is missing, corrupted, or of an unknown format."""

    exit_code = 3


class ExportError(PocketVitError):
    """Lowering a model to a target failed."""

    exit_code = 4


class MissingExtraError(PocketVitError):
    """An optional toolchain is not installed."""

    exit_code = 5

    def __init__(self, module: str, extra: str, why: str = ""):
        what = f" ({why})" if why else ""
        super().__init__(
            f"'{module}' is not installed{what}. Install it with: pip install 'pocketvit[{extra}]'"
        )


class VerifyError(PocketVitError):
    """An exported model missed its parity or accuracy tolerance."""

    exit_code = 6


class InputError(PocketVitError, ValueError, TypeError):
    """An input cannot be used: an image file that is not an image (empty, truncated, too large), an array of the
    wrong dtype, rank or shape, NaN values. A ValueError (and a TypeError, for a wrong dtype) to code that catches
    those."""

    exit_code = 7


class NotRunError(PocketVitError):
    """Nothing could be checked or timed here: no target of the bundle can execute on this machine (Core ML off
    macOS, a runtime that is not installed). `--allow-unrun` accepts that."""

    exit_code = 8


class OutputError(PocketVitError):
    """An output path cannot be written: it is a file where a folder is needed, or not writable."""

    exit_code = 9


class DeviceError(PocketVitError):
    """A device reached over ssh (`--device`) could not be used: unreachable, refused, no Python, no runtime, full."""

    exit_code = 10
