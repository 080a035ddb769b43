"""What an early-exit chain costs on ExecuTorch itself, without pocketvit.runtime: the bundle's
unsegmented program and its segment methods called straight through ``executorch.runtime``, every
segment run (no early stop), interleaved, medians. The gap between this and the measure stage's
"exits off vs unsegmented" figure is the Python work of the wrapper.

    python -m benchmarks.exit_chain BUNDLE [--target executorch] [--runs 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from pocketvit.bench._common import open_bundle
from pocketvit.bench.latency import interleaved
from pocketvit.errors import BundleError


def measure(bundle_dir: str | Path, target: str = "executorch", runs: int = 2000, threads: int = 1) -> dict:
    import torch
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    bundle, _ = open_bundle(bundle_dir, [target])
    info = bundle.file_info(target)
    if info.get("runtime") != "executorch" or not info.get("segments"):
        raise BundleError(f"{bundle.source}: target {target!r} is not an ExecuTorch program with exit segments")
    portable_lib._unsafe_reset_threadpool(int(threads))
    runtime = Runtime.get()
    root = Path(bundle.root)
    full = runtime.load_program(str(root / info["path"])).load_method("forward")
    programs: dict[str, object] = {}
    segments = []
    for seg in info["segments"]:
        if seg["path"] not in programs:
            programs[seg["path"]] = runtime.load_program(str(root / seg["path"]))
        segments.append(programs[seg["path"]].load_method(seg["method"]))
    meta = full.metadata.input_tensor_meta(0)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(tuple(meta.sizes())).astype(np.float32))

    def chain() -> None:
        carry = [x]
        for method in segments:
            carry = list(method.execute(carry))[:-1]

    times = interleaved({"unsegmented": lambda: full.execute([x]), "chain": chain}, runs, warmup=50)
    med = {k: float(np.median(v)) for k, v in times.items()}  # ms
    return {"target": target, "segments": len(segments), "runs": runs, "threads": threads,
            "unsegmented_ms": med["unsegmented"], "chain_ms": med["chain"],
            "overhead": med["chain"] / med["unsegmented"] - 1}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--target", default="executorch")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    r = measure(a.bundle, a.target, a.runs, a.threads)
    print(f"{r['target']}: unsegmented {r['unsegmented_ms']:.3f} ms, chain of {r['segments']} segments "
          f"{r['chain_ms']:.3f} ms ({r['overhead']:+.1%}), medians of {r['runs']} interleaved runs, "
          f"{r['threads']} thread(s)")


if __name__ == "__main__":
    main()
