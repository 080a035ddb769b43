"""Parity (`pocketvit verify`) and latency (`pocketvit bench`) of a bundle's targets, on their own runtimes.

    from pocketvit.bench import verify_bundle, bench_bundle
    verify_bundle("runs/fashion-mnist/bundle")            # each target vs eager torch
    bench_bundle("runs/fashion-mnist/bundle", threads=2)  # interleaved latency, peak, wrapper overhead

torch is imported only inside the functions that need it (the eager reference model).
"""

from pocketvit.bench.latency import bench_bundle, machine_peak_gflops
from pocketvit.bench.parity import DEFAULT_TOLERANCES, Tolerance, raise_on_failure, verify_bundle

__all__ = [
    "DEFAULT_TOLERANCES",
    "Tolerance",
    "bench_bundle",
    "machine_peak_gflops",
    "raise_on_failure",
    "verify_bundle",
]
