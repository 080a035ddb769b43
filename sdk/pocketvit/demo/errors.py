"""What can go wrong in the camera demo, as PocketVitError subclasses (the CLI maps them to exit 7)."""

from __future__ import annotations

from pocketvit.errors import PocketVitError


class DemoError(PocketVitError):
    """The demo cannot run as asked (no display, port in use, bad option combination)."""

    exit_code = 7


class SourceError(DemoError):
    """A video, image or folder cannot be read, or a live source stopped delivering frames."""


class CameraError(SourceError):
    """A camera is missing, busy or was unplugged, and did not come back within the retries."""
