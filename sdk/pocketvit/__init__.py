"""pocketvit: distill, early-exit, quantize and ship vision models, verified on the runtime you ship."""

__version__ = "0.1.0"
