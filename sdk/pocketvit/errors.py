"""Errors a user can cause. Library code raises these; only the CLI turns them into exit codes.

This module imports nothing, so the torch-free runtime can use it too.
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


class DeviceError(PocketVitError):
    """A device reached over ssh (`--device`) could not be used: unreachable, refused, no Python, no runtime, full."""

    exit_code = 8
