"""The transport of `--device ssh://USER@HOST[:PORT]`: the user's own OpenSSH client, nothing installed on the device.

Every step is a plain `ssh` command, so ~/.ssh/config (Host aliases, IdentityFile, ProxyJump), keys and agents
apply as in the user's terminal; one connection is opened and shared by the others (ControlMaster), so a password
or a key's passphrase is asked once. A session makes a temporary folder on the device (``mktemp -d``), streams a
tar of the torch-free runner into it (pocketvit/runtime, errors.py, the timing core and bench/device_runner.py,
see ``runner_files``) with the bundle's files and the job, runs it with the device's Python, fetches the JSON it
writes, and removes the folder, also after an error or Ctrl-C (the runner stops by itself when its ssh connection
goes). Problems a user can meet are one-line DeviceErrors: host unreachable, authentication refused, unknown host
key, no Python, disk full, run failed or interrupted.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pocketvit.errors import DeviceError

RUNNER_MODULE = "pocketvit.bench.device_runner"
# the package files the runner needs on the device (all torch-free); bench/__init__.py is replaced by a stub there
RUNNER_FILES = ("__init__.py", "errors.py", "bench/isolated.py", "bench/timing.py", "bench/_common.py",
                "bench/device_runner.py")
BENCH_STUB = '"""pocketvit.bench as shipped to a device by `--device`: the torch-free timing core and the runner."""\n'
CONNECT_TIMEOUT_S = 20
EXIT_MARK = "pocketvit-runner-exit "
# ssh children of their own session: a terminal's Ctrl-C reaches only us, and we stop the run and clean up in order
# (they run with BatchMode and the shared connection, so they never need the terminal)
_DETACHED: dict[str, Any] = {"start_new_session": True} if os.name == "posix" else {}


class DeviceInterrupted(DeviceError):
    """Ctrl-C during a device run; the device has been cleaned up."""

    exit_code = 130


@dataclass(frozen=True)
class DeviceAddress:
    host: str
    user: str | None = None
    port: int | None = None

    @property
    def label(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}{f':{self.port}' if self.port else ''}"


def parse_device(spec: str) -> DeviceAddress:
    """``ssh://USER@HOST[:PORT]`` (USER and PORT optional: ~/.ssh/config and ssh's defaults fill them in)."""
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme != "ssh" or not parts.hostname or port == -1 or parts.path not in ("", "/") or parts.query:
        raise DeviceError(f"--device {spec!r}: expected ssh://USER@HOST or ssh://USER@HOST:PORT "
                          "(HOST may be a Host alias of ~/.ssh/config), e.g. ssh://pi@raspberrypi.local")
    return DeviceAddress(parts.hostname, parts.username, port)


def runner_files() -> dict[str, Path]:
    """arcname (under pv/pocketvit/) -> file of this installation, for everything the device runner imports."""
    pkg = Path(__file__).resolve().parents[1]
    files = {rel: pkg / rel for rel in RUNNER_FILES}
    for f in sorted((pkg / "runtime").rglob("*.py")):
        files[f.relative_to(pkg).as_posix()] = f
    return files


def _classify_ssh_failure(address: DeviceAddress, stderr: str) -> DeviceError:
    err = stderr.strip()
    last = err.splitlines()[-1] if err else "no message from ssh"
    low = err.lower()
    if "could not resolve hostname" in low or "name or service not known" in low:
        return DeviceError(f"cannot reach {address.label}: the host name does not resolve ({last}); check the name "
                           "or use its IP address")
    if any(s in low for s in ("connection refused", "timed out", "no route to host", "network is unreachable",
                              "connection closed", "connection reset", "kex_exchange_identification")):
        return DeviceError(f"cannot reach {address.label}: {last}. Is the device on, on this network, and is its "
                           "SSH server running (Raspberry Pi OS: sudo raspi-config, Interface Options, SSH)?")
    if "host key verification failed" in low or "remote host identification has changed" in low:
        return DeviceError(f"{address.label}: the device's host key is not known or has changed ({last}); connect "
                           f"once with `ssh {address.label}` to check and accept it")
    if "permission denied" in low or "too many authentication failures" in low:
        return DeviceError(f"{address.label} refused the login ({last}); set up a key first: "
                           f"ssh-copy-id {address.label} (or name the key with IdentityFile in ~/.ssh/config)")
    return DeviceError(f"ssh to {address.label} failed: {last}")


def _runner_exit(stderr: str) -> int | None:
    """The runner's exit status from the line the remote script adds, or None when that line never came."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(EXIT_MARK) and line[len(EXIT_MARK):].strip().isdigit():
            return int(line[len(EXIT_MARK):])
    return None


def _disk_full(stderr: str) -> bool:
    low = stderr.lower()
    return "no space left" in low or "wrote only" in low or "disk quota exceeded" in low


class DeviceSession:
    """One device over ssh: ``with DeviceSession(addr) as s: s.probe(); s.upload(...); s.run("bench")``."""

    def __init__(self, address: DeviceAddress, ssh_config: str | os.PathLike | None = None,
                 python: str = "python3", base_dir: str | None = None):
        self.address = address
        self.ssh_config = os.fspath(ssh_config) if ssh_config else None
        self.python = python
        self.base_dir = base_dir
        self.remote_dir: str | None = None
        self._control: str | None = None
        self._mux = os.name != "nt"  # Windows' OpenSSH has no connection sharing

    # ------------------------------------------------------------------ ssh
    def _ssh(self, *extra: str) -> list[str]:
        exe = shutil.which("ssh")
        if exe is None:
            raise DeviceError("no `ssh` client found: install OpenSSH (Debian/Ubuntu: apt install openssh-client)")
        cmd = [exe]
        if self.ssh_config:
            cmd += ["-F", self.ssh_config]
        if self.address.port:
            cmd += ["-p", str(self.address.port)]
        if self.address.user:
            cmd += ["-l", self.address.user]
        cmd += ["-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}", "-o", "ServerAliveInterval=15"]
        if self._control:
            cmd += ["-o", f"ControlPath={self._control}", "-o", "ControlMaster=no"]
        return [*cmd, *extra]

    def _connect(self) -> None:
        """The shared connection (asks for a password or passphrase here, once, when the terminal allows)."""
        interactive = sys.stdin.isatty()
        if not self._mux:
            self._check_login(interactive)
            return
        control_dir = tempfile.mkdtemp(prefix="pv-ssh-")
        control = os.path.join(control_dir, "%C")
        with tempfile.TemporaryFile() as err:
            cmd = self._ssh("-o", "ControlMaster=yes", "-o", f"ControlPath={control}", "-o", "ControlPersist=60",
                            *([] if interactive else ["-o", "BatchMode=yes"]), "-f", "-N", "--", self.address.host)
            r = subprocess.run(cmd, stdin=None if interactive else subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=err, check=False)
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        if r.returncode != 0:
            shutil.rmtree(control_dir, ignore_errors=True)
            raise _classify_ssh_failure(self.address, stderr)
        self._control = control
        self._control_dir = control_dir

    def _check_login(self, interactive: bool) -> None:
        r = subprocess.run(self._ssh(*([] if interactive else ["-o", "BatchMode=yes"]), "--", self.address.host,
                                     "true"), stdin=None if interactive else subprocess.DEVNULL,
                           capture_output=not interactive, text=True, check=False)
        if r.returncode != 0:
            raise _classify_ssh_failure(self.address, r.stderr or "")

    def shell(self, script: str, stdin: Any = subprocess.DEVNULL, timeout: float | None = 120) -> subprocess.CompletedProcess:
        """``sh -c script`` on the device (whatever the login shell is); raises on an ssh failure (exit 255)."""
        r = subprocess.run(self._ssh("-o", "BatchMode=yes", "--", self.address.host, "sh -c " + shlex.quote(script)),
                           stdin=stdin, capture_output=True, timeout=timeout, check=False, **_DETACHED)
        if r.returncode == 255:
            raise _classify_ssh_failure(self.address, r.stderr.decode(errors="replace"))
        return r

    # ------------------------------------------------------------------ steps
    def __enter__(self) -> DeviceSession:  # noqa: PYI034 - Python 3.10 has no typing.Self
        self._connect()
        try:
            self._make_dir()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _make_dir(self) -> None:
        py = shlex.quote(self.python)
        base = shlex.quote(self.base_dir) if self.base_dir else '"${TMPDIR:-/tmp}"'
        r = self.shell(f"command -v {py} >/dev/null 2>&1 || {{ echo NOPYTHON; exit 0; }}; "
                       f"d=$(mktemp -d {base}/pocketvit.XXXXXX) && echo \"DIR $d\"")
        out = r.stdout.decode(errors="replace")
        if "NOPYTHON" in out:
            raise DeviceError(f"{self.address.label} has no {self.python!r}: install Python 3 there (Raspberry Pi "
                              "OS / Debian: sudo apt install python3 python3-numpy) or pass --device-python PATH "
                              "(e.g. a venv's bin/python)")
        line = next((x for x in out.splitlines() if x.startswith("DIR /")), None)
        if r.returncode != 0 or line is None:
            err = r.stderr.decode(errors="replace")
            if _disk_full(err):
                raise DeviceError(f"no space left on {self.address.label} for a temporary folder in "
                                  f"{self.base_dir or '$TMPDIR or /tmp'}: free some space or pass --device-dir DIR")
            raise DeviceError(f"could not make a temporary folder on {self.address.label}: "
                              f"{(err.strip().splitlines() or ['mktemp failed'])[-1]}")
        self.remote_dir = line[4:].strip()

    def upload(self, files: dict[str, Path], blobs: dict[str, bytes]) -> None:
        """Stream a tar of ``files`` (arcname -> local file or folder) and ``blobs`` (arcname -> bytes) into the
        temporary folder; nothing is written on this machine."""
        need = sum(_size(p) for p in files.values()) + sum(len(b) for b in blobs.values())
        d = shlex.quote(self.remote_dir)
        proc = subprocess.Popen(self._ssh("-o", "BatchMode=yes", "--", self.address.host,
                                          "sh -c " + shlex.quote(f"tar -C {d} -xf -")),
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                **_DETACHED)
        broken = False
        try:
            with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for arc, path in files.items():
                    tar.add(str(path), arcname=arc)
                for arc, data in blobs.items():
                    info = tarfile.TarInfo(arc)
                    info.size = len(data)
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(data))
        except BrokenPipeError:
            broken = True
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                broken = True
        err = proc.stderr.read().decode(errors="replace")
        rc = proc.wait()
        if rc == 255:
            raise _classify_ssh_failure(self.address, err)
        if rc != 0 or broken:
            if _disk_full(err):
                raise DeviceError(f"no space left on {self.address.label} in {self.remote_dir.rsplit('/', 1)[0]}: "
                                  f"this run needs about {need / 1e6:.1f} MB; free some space or pass --device-dir DIR")
            raise DeviceError(f"copying to {self.address.label} failed: "
                              f"{(err.strip().splitlines() or ['tar failed'])[-1]}")

    def run(self, command: str) -> dict[str, Any]:
        """Run the device runner's ``command`` (probe | bench | verify) and return the JSON it wrote."""
        d = shlex.quote(self.remote_dir)
        # the exit status is echoed: ssh's own failures are 255 too
        script = (f"cd {d} && PYTHONPATH={d}/pv PYTHONDONTWRITEBYTECODE=1 "
                  f"{shlex.quote(self.python)} -m {RUNNER_MODULE} {d} {command}; echo \"{EXIT_MARK}$?\" >&2")
        # stdin stays open (and empty) while it runs: the runner stops when it closes
        with tempfile.TemporaryFile() as err_f:
            proc = subprocess.Popen(self._ssh("-o", "BatchMode=yes", "--", self.address.host,
                                              "sh -c " + shlex.quote(script)),
                                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err_f, **_DETACHED)
            try:
                proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                proc.stdin.close()
            err_f.seek(0)
            err = err_f.read().decode(errors="replace")
        rc = _runner_exit(err)
        if rc is None:  # the runner never finished: ssh failed or the link went
            raise _classify_ssh_failure(self.address, err)
        err = err.split(EXIT_MARK)[0]
        if rc != 0:
            if _disk_full(err):
                raise DeviceError(f"no space left on {self.address.label} while running: free some space or pass "
                                  "--device-dir DIR")
            last = next((x for x in reversed(err.strip().splitlines()) if x.strip()), "no message")
            raise DeviceError(f"the {command} run on {self.address.label} failed ({self.python}, exit "
                              f"{rc}): {last}" + ("" if os.environ.get("POCKETVIT_DEBUG") == "1" else
                                                               "; POCKETVIT_DEBUG=1 shows its whole output")
                              + (f"\n{err}" if os.environ.get("POCKETVIT_DEBUG") == "1" else ""))
        name = "probe.json" if command == "probe" else "result.json"
        return json.loads(self.fetch(name))

    def fetch(self, name: str) -> bytes:
        r = self.shell(f"cat {shlex.quote(self.remote_dir + '/' + name)}", timeout=600)
        if r.returncode != 0:
            raise DeviceError(f"could not fetch {name} from {self.address.label}: "
                              f"{(r.stderr.decode(errors='replace').strip().splitlines() or ['cat failed'])[-1]}")
        return r.stdout

    def close(self) -> None:
        """Stop the runner if it still runs, remove the temporary folder, close the shared connection. Ctrl-C is
        held off meanwhile, so that an impatient second Ctrl-C cannot leave the folder behind."""
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        try:
            if self.remote_dir and "/pocketvit." in self.remote_dir:
                d = shlex.quote(self.remote_dir)
                try:
                    self.shell(f"if [ -f {d}/runner.pgid ]; then g=$(cat {d}/runner.pgid); "
                               f"grep -q device_runner /proc/$g/cmdline 2>/dev/null && kill -TERM -- -$g 2>/dev/null; "
                               f"fi; rm -rf {d}", timeout=60)
                    self.remote_dir = None
                except (DeviceError, subprocess.TimeoutExpired):
                    pass
            if self._control:
                subprocess.run(self._ssh("-O", "exit", "--", self.address.host), stdin=subprocess.DEVNULL,
                               capture_output=True, check=False, timeout=30)
                shutil.rmtree(self._control_dir, ignore_errors=True)
                self._control = None
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def device_label(info: dict[str, Any]) -> str:
    """'Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72, 4 cores, 3.7 GB, Debian GNU/Linux 12 (bookworm), Python 3.11.2)'"""
    bits = [b for b in (info.get("cpu"), f"{info.get('cores')} cores",
                        f"{info['memory_mb'] / 1024:.1f} GB" if info.get("memory_mb") else None,
                        info.get("os"), f"Python {info.get('python')}") if b]
    return f"{info.get('model') or info.get('hostname')} ({', '.join(bits)})"
