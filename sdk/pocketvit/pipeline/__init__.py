"""Orchestration: the stage runner, the builds (classification, CLIP) and their stage factories.

Nothing below this package imports from it."""
