"""What `bench --device` and `verify --device` run on the device (bench/remote.py ships it): torch-free.

    python3 -m pocketvit.bench.device_runner WORKDIR probe     -> WORKDIR/probe.json   (standard library only)
    python3 -m pocketvit.bench.device_runner WORKDIR bench     -> WORKDIR/result.json  (job.json, inputs.npz)
    python3 -m pocketvit.bench.device_runner WORKDIR verify    -> WORKDIR/result.json + outputs.npz

WORKDIR holds the shipped code (pv/: pocketvit/runtime, errors.py and the timing core), the bundle (bundle/), the
job (job.json) and its inputs (inputs.npz). ``probe`` names the device and says which runtimes it has, without
importing any of them; ``bench`` times the targets with the same method as a local `pocketvit bench`
(bench/timing.py); ``verify`` runs verify's inputs through each target and writes the raw outputs, which the host
compares with eager torch and with its own runtimes. The runner stops (with every process it started) when its
standard input closes, i.e. when the ssh connection that started it is gone.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata, util
from pathlib import Path
from typing import Any

# module -> the distributions that provide it (the first one installed gives the version)
MODULES = {
    "numpy": ("numpy",),
    "ai_edge_litert": ("ai-edge-litert",),
    "tflite_runtime": ("tflite-runtime",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-qnn"),
    "executorch": ("executorch",),
    "torch": ("torch",),
}
RUNTIME_MODULES = {"onnx": ("onnxruntime",), "litert": ("ai_edge_litert", "tflite_runtime"),
                   "executorch": ("executorch",), "coreml": ("coremltools",)}
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE",
             "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd4b": "Cortex-A78C",
             "0xd40": "Neoverse-V1", "0xd4f": "Neoverse-V2", "0xd80": "Cortex-A520", "0xd81": "Cortex-A720"}


# AT_HWCAP bits of Linux on aarch64 (arch/arm64/include/uapi/asm/hwcap.h): what the CPU can run
HWCAP_AARCH64 = ("fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp", "asimdhp",
                 "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4", "asimddp", "sha512",
                 "sve", "asimdfhm", "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg")


def cpu_features() -> list[str] | None:
    """The features the kernel (or qemu, which answers for its guest) reports in AT_HWCAP, on aarch64."""
    if platform.machine() != "aarch64":
        return None
    try:
        with open("/proc/self/auxv", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    import struct

    for i in range(0, len(raw) - 15, 16):
        key, value = struct.unpack_from("<QQ", raw, i)
        if key == 16:  # AT_HWCAP
            return [name for bit, name in enumerate(HWCAP_AARCH64) if value >> bit & 1]
    return None


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def _cpuinfo_fields(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip(), v.strip())
    return out


def _os_name() -> str:
    rel = _read("/etc/os-release") or ""
    for line in rel.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return f"{platform.system()} {platform.release()}"


def _emulation() -> str | None:
    """How this system is emulated, when it is: qemu user mode (this Python's sibling processes are run by a
    qemu binary, which /proc shows for any process but the caller), or a QEMU virtual machine."""
    probe = None
    try:
        probe = subprocess.Popen(["sleep", "5"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        exe = os.readlink(f"/proc/{probe.pid}/exe")
        if "qemu" in exe.lower():
            return f"qemu user mode ({os.path.basename(exe)} runs {platform.machine()} code on another CPU)"
    except OSError:
        pass
    finally:
        if probe is not None:
            probe.kill()
            probe.wait()
    for f in ("/sys/class/dmi/id/sys_vendor", "/sys/firmware/devicetree/base/compatible"):
        text = (_read(f) or "").lower()
        if "qemu" in text or "dummy-virt" in text:
            return "a QEMU virtual machine"
    return None


def probe() -> dict[str, Any]:
    """The device (model, CPU, cores, memory, OS, Python) and the runtime packages it has (versions, not imported)."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    fields = _cpuinfo_fields(cpuinfo)
    model = (_read("/proc/device-tree/model") or fields.get("Model") or fields.get("Hardware")
             or _read("/sys/class/dmi/id/product_name") or fields.get("model name") or platform.node())
    parts = sorted({v.strip() for k, v in (ln.split(":", 1) for ln in cpuinfo.splitlines() if ":" in ln)
                    if k.strip() == "CPU part"})
    cpu = " + ".join(ARM_PARTS.get(p, f"ARM part {p}") for p in parts) if parts else fields.get("model name")
    mem = _cpuinfo_fields(_read("/proc/meminfo") or "").get("MemTotal", "")
    modules: dict[str, str | None] = {}
    for mod, dists in MODULES.items():
        version = None
        if util.find_spec(mod) is not None:
            version = "installed"
            for d in dists:
                try:
                    version = metadata.version(d)
                    break
                except metadata.PackageNotFoundError:
                    continue
        modules[mod] = version
    runtimes = {rt: any(modules.get(m) for m in mods) and (rt != "coreml" or sys.platform == "darwin")
                for rt, mods in RUNTIME_MODULES.items()}
    return {
        "model": model,
        "cpu": cpu or platform.processor() or None,
        "cores": os.cpu_count(),
        "memory_mb": int(mem.split()[0]) // 1024 if mem.split() else None,
        "os": _os_name(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "cpu_features": cpu_features(),
        "emulated": _emulation(),
        "modules": modules,
        "runtimes": runtimes,
    }


def _open_checked(bundle, target: str, threads: int, exits: bool):
    """(predictor, None) or (None, why it cannot run here), for one target."""
    from pocketvit.runtime import load

    try:
        return load(bundle, target=target, num_threads=threads, warmup=0, use_exits=exits), None
    except Exception as e:  # noqa: BLE001 - reported per target to the host (a wheel that cannot start, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"{type(e).__name__}: {first}"


def _runtime_note(p) -> dict[str, Any]:
    from pocketvit.bench._common import runtime_module

    return {"module": runtime_module(p)}


def bench(work: Path, job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from pocketvit.bench.timing import (
        METHODS,
        busy_note,
        choose_method,
        default_threads,
        latency_stats,
        target_factories,
        time_runners,
        wrapper_overhead,
    )
    from pocketvit.runtime import Bundle

    threads = int(job.get("threads") or default_threads())
    method = choose_method(job.get("method", "auto"), threads)
    root = str(work / "bundle")
    bundle = Bundle.open(root)
    image = np.load(work / "inputs.npz")["image"]
    entries: dict[str, dict[str, Any]] = {}
    ok: list[str] = []
    for t in job["targets"]:
        p, why = _open_checked(bundle, t, threads, job.get("exits", True))
        if p is None:
            entries[t] = {"error": why}
            continue
        entries[t] = _runtime_note(p)
        p.close()
        ok.append(t)
    load, busy = busy_note()
    times: dict[str, list[float]] = {}
    inner: dict[str, list[float | None]] = {}
    if ok:
        factories = target_factories(root, ok, threads, job.get("exits", True), image, job["color"])
        times = time_runners(factories, job["runs"], job["warmup"], threads, method, seed=job.get("seed", 0),
                             returns=inner)
    for t in ok:
        entries[t].update(latency_stats(times[t]))
    return {"threads": threads, "method": method, "method_text": METHODS[method], "runs": job["runs"],
            "warmup": job["warmup"], "load_average_1min": load, "notes": [busy] if busy else [],
            "results": entries, "wrapper_overhead": wrapper_overhead(times, inner, ok)}


def verify(work: Path, job: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from pocketvit.bench._common import crops_of, target_outputs
    from pocketvit.runtime import Bundle

    bundle = Bundle.open(work / "bundle")
    spec = bundle.input_spec
    data = np.load(work / "inputs.npz")
    images, crops = list(data["images"]), data["crops"]
    # the bundle's preprocessing (colour, resize, crop) on this device vs the host's crops the outputs are fed
    mine = crops_of(images, spec)
    pixel_diff = int(np.abs(mine.astype(np.int16) - crops.astype(np.int16)).max())
    entries: dict[str, dict[str, Any]] = {}
    outputs: dict[str, np.ndarray] = {}
    for t in job["targets"]:
        p, why = _open_checked(bundle, t, job.get("threads"), False)
        if p is None:
            entries[t] = {"error": why}
            continue
        try:
            outputs[t] = target_outputs(p, spec, crops, images)
            entries[t] = {"outputs": p.outputs, **_runtime_note(p)}
        except Exception as e:  # noqa: BLE001 - reported per target
            entries[t] = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
        finally:
            p.close()
    tmp = work / "outputs.tmp.npz"
    np.savez(tmp, **{f"t{i}": outputs[t] for i, t in enumerate(job["targets"]) if t in outputs})
    os.replace(tmp, work / "outputs.npz")
    return {"results": entries, "keys": {t: f"t{i}" for i, t in enumerate(job["targets"]) if t in outputs},
            "preprocessing_max_pixel_diff": pixel_diff}


def _watch_stdin() -> None:
    """Stop this process group when stdin closes: the ssh session that started us is gone (Ctrl-C, lost link)."""
    def watch():
        try:
            while os.read(0, 4096):  # the file descriptor, not sys.stdin: its lock would block interpreter exit
                pass
        except OSError:
            pass
        os.killpg(os.getpgrp(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="stdin-watch").start()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("probe", "bench", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    work, command = Path(argv[0]), argv[1]
    if command == "probe":
        _write_json(work / "probe.json", probe())
        return 0
    if os.getpgrp() != os.getpid():  # a group of our own, so that stopping it stops only us and our workers
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
    (work / "runner.pgid").write_text(str(os.getpgrp()))
    _watch_stdin()
    job = json.loads((work / "job.json").read_text())
    t0 = time.perf_counter()
    result = (bench if command == "bench" else verify)(work, job)
    result["seconds"] = time.perf_counter() - t0
    _write_json(work / "result.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
