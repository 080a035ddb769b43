"""`bench --device ssh://` and `verify --device` over a real OpenSSH server on 127.0.0.1 (tests/sshkit.py): this
machine as the "device" (its own Python and runtimes), the user's failures as one-line errors, and Ctrl-C leaving
nothing behind. The emulated Raspberry Pi behind the same transport is in tests/arm/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pocketvit.bench.remote import DeviceAddress, parse_device
from pocketvit.errors import DeviceError

from tests.bench.testkit import all_targets_build
from tests.conftest import ROOT, run_cli
from tests.sshkit import SSHServer, ssh_tools_missing


def test_parse_device():
    assert parse_device("ssh://pi@raspberrypi.local") == DeviceAddress("raspberrypi.local", "pi", None)
    assert parse_device("ssh://pi@10.0.0.7:2222") == DeviceAddress("10.0.0.7", "pi", 2222)
    assert parse_device("ssh://jetson").label == "jetson"  # a Host alias of ~/.ssh/config
    for bad in ("pi@raspberrypi", "http://pi@host", "ssh://pi@host:port", "ssh://pi@host/tmp", "ssh://"):
        with pytest.raises(DeviceError, match="ssh://USER@HOST"):
            parse_device(bad)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    missing = ssh_tools_missing()
    if missing:
        pytest.skip(missing)
    with SSHServer(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="module")
def bundle(tiny_build, tmp_path_factory) -> Path:
    return all_targets_build(tiny_build, tmp_path_factory) / "bundle"


def _device(sshd, tmp_path, *extra: str, python: str = sys.executable) -> list[str]:
    remote = tmp_path / "device-tmp"
    remote.mkdir(exist_ok=True)
    return ["--device", "ssh://dev", "--ssh-config", str(sshd.client_config("dev")), "--device-python", python,
            "--device-dir", str(remote), *extra]


def _one_line_error(r: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    assert "Traceback" not in r.stderr, r.stderr
    err = next(x for x in lines if x.startswith("error:"))
    for n in needles:
        assert n in r.stderr, (n, r.stderr)
    return err


@pytest.mark.slow
def test_bench_on_loopback_device_beside_local(sshd, bundle, tmp_path):
    """This machine through ssh vs this machine directly: the same method on the same files, so the figures agree
    within the noise of a shared machine (printed, not asserted: a benchmark, not a timed test)."""
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    r = run_cli("bench", str(bundle), *_device(sshd, tmp_path), "--runs", "50", "--out", str(out), "--plot", str(plot))
    assert r.returncode == 0, r.stderr[-4000:]
    res = json.loads(out.read_text())
    dev, local = res["device_bench"]["results"], res["local"]["results"]
    assert res["device"]["machine"] == os.uname().machine and res["device"]["emulated"] is None
    assert res["device"]["modules"]["onnxruntime"] and res["device_bench"]["method"] in ("isolated", "interleaved")
    for t in ("executorch", "onnx", "litert", "litert-dropin"):
        assert dev[t]["median_ms"] > 0 and dev[t]["runs"] == 50 and local[t]["median_ms"] > 0
        print(f"{t}: device {dev[t]['median_ms']:.4f} ms, local {local[t]['median_ms']:.4f} ms, "
              f"ratio {dev[t]['median_ms'] / local[t]['median_ms']:.2f}")
    assert "latency per runtime" in r.stdout and "device ÷ here" in r.stdout
    assert plot.stat().st_size > 10_000
    assert list((tmp_path / "device-tmp").iterdir()) == []  # cleaned up


@pytest.mark.slow
def test_verify_on_loopback_device(sshd, bundle, tmp_path):
    out = tmp_path / "verify.json"
    r = run_cli("verify", str(bundle), *_device(sshd, tmp_path), "--inputs", "16", "--json")
    assert r.returncode == 0, r.stderr[-4000:]
    out.write_text(r.stdout)
    res = json.loads(r.stdout)
    assert res["passed"] and res["device_preprocessing_max_pixel_diff"] == 0
    for t in ("executorch", "onnx", "litert", "litert-dropin"):
        assert res["targets"][t]["status"] == "pass"
        assert res["vs_local"][t]["max_abs_diff"] == 0.0  # the same machine, the same runtime: the same bits
    assert list((tmp_path / "device-tmp").iterdir()) == []


def test_unreachable_host(bundle, tmp_path):
    missing = ssh_tools_missing()
    if missing:
        pytest.skip(missing)
    from tests.sshkit import free_port

    r = run_cli("bench", str(bundle), "--device", f"ssh://nobody@127.0.0.1:{free_port()}", "--runs", "50")
    _one_line_error(r, 10, "cannot reach nobody@127.0.0.1", "Connection refused")


def test_auth_refused(sshd, bundle, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    cfg = sshd.client_config("stranger", key=other)
    r = run_cli("verify", str(bundle), "--device", "ssh://stranger", "--ssh-config", str(cfg))
    _one_line_error(r, 10, "refused the login", "ssh-copy-id")


def test_no_python_and_no_numpy(sshd, bundle, tmp_path):
    r = run_cli("bench", str(bundle), *_device(sshd, tmp_path, python="/nonexistent/python3"), "--runs", "50")
    _one_line_error(r, 10, "has no '/nonexistent/python3'", "--device-python")
    if Path("/usr/bin/python3").exists() and subprocess.run(["/usr/bin/python3", "-c", "import numpy"],
                                                            capture_output=True, check=False).returncode != 0:
        r = run_cli("bench", str(bundle), *_device(sshd, tmp_path, python="/usr/bin/python3"), "--runs", "50")
        _one_line_error(r, 10, "has no numpy", "pip install numpy")
    assert list((tmp_path / "device-tmp").iterdir()) == []


def test_runtime_missing_names_the_package(sshd, bundle, tmp_path):
    """A device Python with numpy and no runtime: a named target is an error naming its pip package."""
    venv = tmp_path / "numpy-only"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    if subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "numpy"], capture_output=True, check=False,
                      timeout=600).returncode:
        pytest.skip("cannot install numpy into a venv here (no package index)")
    py = str(venv / "bin" / "python")
    r = run_cli("bench", str(bundle), *_device(sshd, tmp_path, python=py), "--target", "onnx", "--runs", "50")
    _one_line_error(r, 10, "onnx cannot run on dev", "pip install onnxruntime")
    r = run_cli("verify", str(bundle), *_device(sshd, tmp_path, python=py))
    _one_line_error(r, 10, "can run none of this bundle's targets", "pip install executorch",
                    "pip install ai-edge-litert")
    assert list((tmp_path / "device-tmp").iterdir()) == []


def test_disk_full(sshd, bundle, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the device's full disk needs root")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(small)], capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        r = run_cli("bench", str(bundle), "--device", "ssh://dev", "--ssh-config", str(sshd.client_config("dev")),
                    "--device-python", sys.executable, "--device-dir", str(small), "--runs", "50", "--no-local")
        _one_line_error(r, 10, "no space left on dev", "free some space or pass --device-dir")
        assert list(small.iterdir()) == []  # what did fit was removed
    finally:
        subprocess.run(["umount", str(small)], check=False)


def _runner_processes(marker: str) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and "device_runner" in cmd:
            out.append(int(pid))
    return out


@pytest.mark.slow  # left device processes behind once on a machine loaded 4x over (see docs/device.md); make test-slow runs it
def test_ctrl_c_leaves_nothing_behind(sshd, bundle, tmp_path):
    """SIGINT while the device times: exit 130, one line, the runner and its workers gone, the folder removed."""
    cmd = [sys.executable, "-m", "pocketvit.cli.main", "bench", str(bundle), *_device(sshd, tmp_path),
           "--runs", "2000", "--no-local"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    remote = tmp_path / "device-tmp"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(remote.glob("pocketvit.*/runner.pgid")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert list(remote.glob("pocketvit.*/runner.pgid")), "the device run never started"
    time.sleep(2)  # the workers are up and timing
    assert _runner_processes(str(remote))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted: stopped the bench run on dev" in err and "Traceback" not in err
    assert list(remote.iterdir()) == []
    deadline = time.monotonic() + 20
    while _runner_processes(str(remote)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _runner_processes(str(remote)) == []
