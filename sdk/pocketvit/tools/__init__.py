"""Scripts run in separate tool environments (never imported by pocketvit itself)."""
