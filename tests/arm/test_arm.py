"""`make test-arm`: pocketvit on an emulated 64-bit Raspberry Pi 4 (tests/arm/setup.sh: Debian bookworm arm64 under
qemu user mode, Cortex-A72, Python 3.11), for real:

a. the torch-free runtime (numpy<2, tflite-runtime 2.14, onnxruntime) on every litert / drop-in / onnx target gives
   the same top-1 as this x86 machine on 512 Fashion-MNIST test images, scores within 1e-5;
b. ExecuTorch's aarch64 wheel (with torch and numpy 2, its own venv) runs the .pte with the same labels;
c. apps/raspberry-pi/install.sh runs inside it as a user runs it on a Pi, then the demo on a video file, headless;
d. `pocketvit bench/verify --device ssh://` reach its own sshd and run their runtimes on aarch64.

Emulated timings say nothing about a Pi's speed: the tests print none as a latency.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FMNIST, ROOT, TINY, run_cli
from tests.sshkit import SSHServer, ssh_tools_missing

pytestmark = pytest.mark.arm
HERE = Path(__file__).resolve().parent
N_IMAGES = 512
N_EXECUTORCH = 48
GUEST_SDK, GUEST_TESTS, GUEST_BUNDLE, GUEST_WORK = "/pocketvit-sdk", "/pocketvit-tests", "/data/bundle", "/data/work"
EVIDENCE = ROOT / "runs" / "test-arm" / "arm-results.json"  # what each check found (docs/results/arm-emulated.json)


def record(key: str, value: object) -> None:
    """Add one check's findings to the run's evidence file (rewritten after each test, so a partial run keeps its
    part). Emulated timings in it are the emulator's, never a device latency."""
    data = json.loads(EVIDENCE.read_text()) if EVIDENCE.is_file() else {}
    data.setdefault("note", "qemu user mode on an x86-64 host, Cortex-A72 CPU model: agreement and install results; "
                            "any timing here measures the emulator, not a Raspberry Pi")
    data[key] = value
    EVIDENCE.parent.mkdir(parents=True, exist_ok=True)
    EVIDENCE.write_text(json.dumps(data, indent=2, default=str))


@pytest.fixture(scope="session")
def pi_image() -> Path:
    """The emulated Pi's image folder (built once, cached outside the clone; see setup.sh)."""
    r = subprocess.run(["bash", str(HERE / "setup.sh")], capture_output=True, text=True, timeout=7200, check=False,
                       env={**os.environ, "HOST_PY": sys.executable})
    if r.returncode == 77:
        pytest.skip(r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr[-4000:]
    image = Path(r.stdout.strip().splitlines()[-1])
    costs = json.loads((image / "costs.json").read_text())
    print(f"\nemulated Raspberry Pi: {image} ({(image / 'mode').read_text().strip()} mode); costs {costs}")
    record("image", {"mode": (image / "mode").read_text().strip(), "costs": costs})
    return image


def _binfmt(image: Path) -> None:
    if (image / "mode").read_text().strip() != "binfmt":
        pytest.skip("the emulated Pi is in direct mode (binfmt_misc could not be registered here, or "
                    "POCKETVIT_ARM_MODE=direct): only check (a) runs, with qemu-aarch64-static called directly")


@pytest.fixture(scope="session")
def arm_bundle(fmnist_root) -> Path:
    """The tiny recipe with every Linux target, built by the CLI into runs/test-arm (a rerun reuses its stages)."""
    out = ROOT / "runs" / "test-arm"
    r = run_cli("build", str(TINY), "--out", str(out), "--set", "export.targets=[executorch,litert,onnx]",
                "--set", f"data.test_limit={N_IMAGES}")
    assert r.returncode == 0, r.stderr[-4000:]
    return out / "bundle"


def _test_images(n: int) -> np.ndarray:
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n].copy()


def in_pi(image: Path, *cmd: str, binds: tuple[str, ...] = (), overlay: Path | None = None,
          timeout: float = 3600) -> subprocess.CompletedProcess:
    args = ["bash", str(HERE / "enter.sh"), str(image)]
    if overlay is not None:
        args += ["--overlay", str(overlay)]
    for b in binds:
        args += ["--bind", b]
    return subprocess.run([*args, "--", *cmd], capture_output=True, text=True, timeout=timeout, check=False)


def _predict_on_pi(image: Path, bundle: Path, work: Path, python: str, targets: list[str], images: str) -> dict:
    if (image / "mode").read_text().strip() == "binfmt":
        r = in_pi(image, "env", f"PYTHONPATH={GUEST_SDK}", python, f"{GUEST_TESTS}/predict_images.py", GUEST_BUNDLE,
                  f"{GUEST_WORK}/{images}", f"{GUEST_WORK}/pi.npz", *targets,
                  binds=(f"{ROOT / 'sdk'}:{GUEST_SDK}:ro", f"{HERE}:{GUEST_TESTS}:ro", f"{bundle}:{GUEST_BUNDLE}:ro",
                         f"{work}:{GUEST_WORK}"))
    else:  # no binfmt: qemu-aarch64-static runs the guest's Python directly, host paths as they are
        r = subprocess.run(["bash", str(HERE / "enter.sh"), str(image), "--direct", "--", "/usr/bin/python3.11",
                            str(HERE / "predict_images.py"), str(bundle), str(work / images), str(work / "pi.npz"),
                            *targets], capture_output=True, text=True, timeout=3600, check=False,
                           env={**os.environ, "GUEST_PYTHONPATH": f"{ROOT / 'sdk'}:/opt/pv-rt-site"})
    assert r.returncode == 0, r.stderr[-4000:]
    return _load(work / "pi.npz")


def _predict_here(bundle: Path, work: Path, targets: list[str], images: str) -> dict:
    r = subprocess.run([sys.executable, str(HERE / "predict_images.py"), str(bundle), str(work / images),
                        str(work / "x86.npz"), *targets], capture_output=True, text=True, timeout=1800, check=False)
    assert r.returncode == 0, r.stderr[-4000:]
    return _load(work / "x86.npz")


def _load(path: Path) -> dict:
    with np.load(path) as z:
        out = {k: z[k] for k in z.files if k != "meta"}
        out["meta"] = json.loads(str(z["meta"]))
    return out


def _agreement(pi: dict, x86: dict, targets: list[str], tol: float, key: str) -> list[str]:
    lines, bad, found = [], [], {}
    for t in targets:
        a, b = pi[f"scores:{t}"], x86[f"scores:{t}"]
        same = int((a.argmax(1) == b.argmax(1)).sum())
        diff = float(np.abs(a.astype(np.float64) - b).max())
        found[t] = {"images": len(a), "same_top1": same, "max_abs_score_diff": diff,
                    "aarch64_module": pi["meta"]["modules"][t], "x86_module": x86["meta"]["modules"][t]}
        lines.append(f"  {t:<14} {same}/{len(a)} same top-1 as x86, max |Δ score| {diff:.2e} "
                     f"(aarch64: {pi['meta']['modules'][t]}; x86: {x86['meta']['modules'][t]})")
        if same != len(a) or diff > tol:
            bad.append(t)
    print("\n".join(lines))
    record(key, {"pi": pi["meta"], "targets": found, "tolerance": tol})
    assert not bad, f"targets differing from x86: {bad}"
    return lines


def test_torch_free_runtime_agrees_with_x86(pi_image, arm_bundle, tmp_path):
    manifest = json.loads((arm_bundle / "manifest.json").read_text())
    targets = [t for t, e in manifest["files"].items() if e["runtime"] in ("litert", "onnx")]
    assert {"litert", "litert-dropin", "onnx"} <= set(targets)
    np.save(tmp_path / "images.npy", _test_images(N_IMAGES))
    pi = _predict_on_pi(pi_image, arm_bundle, tmp_path, "/opt/pv-rt/bin/python", targets, "images.npy")
    x86 = _predict_here(arm_bundle, tmp_path, targets, "images.npy")
    meta = pi["meta"]
    print(f"\n(a) torch-free pocketvit.runtime on the emulated Pi ({meta['machine']}, Python {meta['python']}, numpy "
          f"{meta['numpy']}, torch importable: {meta['torch_importable']}) vs this x86 machine, {N_IMAGES} "
          "Fashion-MNIST test images:")
    _agreement(pi, x86, targets, 1e-5, "a_torch_free_runtime")
    assert meta["machine"] == "aarch64" and meta["numpy"].startswith("1.")
    assert not meta["torch_importable"] and not meta["torch_imported"]
    assert meta["modules"]["litert"] == "tflite_runtime.interpreter"  # the fallback a Pi has


def test_executorch_wheel_on_arm(pi_image, arm_bundle, tmp_path):
    _binfmt(pi_image)
    np.save(tmp_path / "images.npy", _test_images(N_EXECUTORCH))
    pi = _predict_on_pi(pi_image, arm_bundle, tmp_path, "/opt/pv-et/bin/python", ["executorch"], "images.npy")
    x86 = _predict_here(arm_bundle, tmp_path, ["executorch"], "images.npy")
    costs = json.loads((pi_image / "costs.json").read_text())["et"]
    print(f"\n(b) ExecuTorch on the emulated Pi (numpy {pi['meta']['numpy']}), {N_EXECUTORCH} images; installing "
          f"{costs['requirements']} there: {costs['download_mb']} MB downloaded, {costs['installed_mb']} MB installed")
    _agreement(pi, x86, ["executorch"], 1e-5, "b_executorch")


def _write_video(path: Path, n: int = 20) -> None:
    cv2 = pytest.importorskip("cv2", reason="writing the test video needs OpenCV here: pip install 'pocketvit[demo]'")
    side = 112
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (side, side))
    for img in _test_images(n):
        w.write(cv2.cvtColor(cv2.resize(img, (side, side), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR))
    w.release()


def _checkout_copy(dst: Path) -> None:
    """This checkout's files as a clone has them (tracked and new, not ignored)."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def test_install_script_on_the_pi(pi_image, arm_bundle, tmp_path):
    """apps/raspberry-pi/install.sh as a user runs it (sudo, on the Pi, from a clone, a bundle copied over), then the
    demo it installed on a video file, headless; the labels are the x86 demo's."""
    _binfmt(pi_image)
    overlay = tmp_path / "overlay"
    home = overlay / "upper" / "home" / "pi"
    _checkout_copy(home / "pocketvit")
    shutil.copytree(arm_bundle, home / "bundle")
    _write_video(home / "clip.mp4")
    r = in_pi(pi_image, "bash", "/home/pi/pocketvit/apps/raspberry-pi/install.sh", "--bundle", "/home/pi/bundle",
              "--source", "/home/pi/clip.mp4", "--no-service", overlay=overlay)
    print(f"\n(c) install.sh inside the emulated Pi: exit {r.returncode}\n{r.stdout[-2500:]}")
    assert r.returncode == 0, r.stderr[-4000:]
    assert "bundle ok:" in r.stdout and "tflite_runtime.interpreter" in r.stdout  # the wheel a Pi gets from PyPI
    unit = overlay / "upper" / "etc" / "systemd" / "system" / "pocketvit-demo.service"
    assert "ExecStart=/opt/pocketvit/venv/bin/pocketvit demo" in unit.read_text()
    r = in_pi(pi_image, "/opt/pocketvit/venv/bin/pocketvit", "demo", "/var/lib/pocketvit/bundle", "--target", "litert",
              "--source", "/home/pi/clip.mp4", "--headless", "--out", "/home/pi/demo", overlay=overlay)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "tflite_runtime.interpreter" in r.stderr
    lines = [json.loads(x) for x in (home / "demo" / "frames.jsonl").read_text().splitlines()]
    assert len(lines) == 20 and len(list((home / "demo" / "frames").glob("*.jpg"))) == 20
    here = run_cli("demo", str(arm_bundle), "--target", "litert", "--source", str(home / "clip.mp4"), "--headless",
                   "--out", str(tmp_path / "x86-demo"))
    assert here.returncode == 0, here.stderr[-3000:]
    x86 = [json.loads(x)["label"] for x in (tmp_path / "x86-demo" / "frames.jsonl").read_text().splitlines()]
    assert [x["label"] for x in lines] == x86
    print(f"    the demo installed by install.sh: {len(lines)} frames, written, same labels as the x86 demo")
    record("c_install_sh", {"exit": 0, "demo_frames": len(lines), "same_labels_as_x86": True})


@pytest.fixture(scope="module")
def pi_sshd(pi_image, tmp_path_factory):
    """The emulated Pi's own OpenSSH server (aarch64 sshd under qemu) on a loopback port, user `pi`."""
    _binfmt(pi_image)
    missing = ssh_tools_missing()
    if missing:
        pytest.skip(missing)
    work = tmp_path_factory.mktemp("pi-sshd")
    keys = work / "keys"
    prefix = ["bash", str(HERE / "enter.sh"), str(pi_image), "--overlay", str(work / "overlay"),
              "--bind", f"{keys}:/etc/pocketvit-ssh:ro", "--"]
    # sshd starts session processes with a fresh environment: SetEnv keeps the emulated CPU a Cortex-A72 there
    with SSHServer(keys, prefix=prefix, guest_dir="/etc/pocketvit-ssh", user="pi",
                   extra="SetEnv QEMU_CPU=cortex-a72\n", start_timeout=300) as server:
        yield server


def test_bench_and_verify_on_the_emulated_pi_over_ssh(pi_sshd, arm_bundle, tmp_path):
    cfg = pi_sshd.client_config("pi-emu")
    ssh = ["--device", "ssh://pi-emu", "--ssh-config", str(cfg), "--device-python", "/opt/pv-rt/bin/python"]
    out = tmp_path / "bench.json"
    r = run_cli("bench", str(arm_bundle), *ssh, "--runs", "50", "--out", str(out), "--plot", str(tmp_path / "b.png"))
    assert r.returncode == 0, r.stderr[-4000:]
    print(f"\n(d) pocketvit bench --device ssh://pi-emu (the emulated Pi's sshd):\n{r.stdout}")
    res = json.loads(out.read_text())
    d = res["device"]
    assert d["model"] == "Raspberry Pi 4 Model B Rev 1.4" and d["cpu"] == "Cortex-A72" and d["machine"] == "aarch64"
    assert d["emulated"] and "qemu" in d["emulated"] and "EMULATED" in r.stdout and "emulated" in res["notes"][0]
    # QEMU_CPU=cortex-a72 reached the session: no ARMv8.1+ atomics, no dot product (qemu's default "max" has both)
    assert "asimd" in d["cpu_features"] and "atomics" not in d["cpu_features"] and "asimddp" not in d["cpu_features"]
    assert d["modules"]["tflite_runtime"] == "2.14.0" and d["modules"]["torch"] is None
    dev = res["device_bench"]["results"]
    for t in ("litert", "litert-dropin", "onnx"):
        assert dev[t]["median_ms"] > 0, dev[t]
    assert dev["litert"]["module"] == "tflite_runtime.interpreter"
    assert "pip install executorch" in dev["executorch"]["note"]
    r = run_cli("verify", str(arm_bundle), *ssh, "--inputs", "16", "--json")
    assert r.returncode == 0, r.stderr[-4000:]
    v = json.loads(r.stdout)
    assert v["passed"] and v["targets"]["onnx"]["status"] == "pass" and v["targets"]["executorch"]["status"] == "not run"
    for t, row in v["vs_local"].items():
        print(f"    verify on the Pi, {t}: vs eager max |Δ| {v['targets'][t]['max_abs_diff']:.2e}, vs x86 runtime "
              f"max |Δ| {row['max_abs_diff']:.2e}, top-1 agreement {row['top1_agreement']:.3f}")
    record("d_device_over_ssh", {"device": d, "emulated_medians_ms": {t: dev[t]["median_ms"] for t in dev
                                                                       if dev[t].get("median_ms")},
                                 "verify_vs_x86_runtime": v["vs_local"]})
    r = run_cli("bench", str(arm_bundle), *ssh, "--target", "executorch", "--runs", "50", "--no-local")
    assert r.returncode == 10 and "pip install executorch" in r.stderr and "Traceback" not in r.stderr
