"""A real OpenSSH server for the `--device ssh://` tests: Debian's sshd on 127.0.0.1 with its own config, host key
and a throwaway client key (no mocks: `pocketvit bench --device` talks to it with the real `ssh` client).

    server = SSHServer(tmp_path)                 # this machine's sshd (loopback x86 "device")
    server = SSHServer(tmp_path, prefix=[...])   # an sshd run by a prefix command, e.g. inside the emulated Pi
    with server:
        cfg = server.client_config("dev")        # an ssh config with Host "dev" -> pocketvit ... --ssh-config cfg
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def ssh_tools_missing() -> str | None:
    """Why the tests cannot run an sshd here, or None."""
    for exe in (SSHD, shutil.which("ssh") or "ssh", shutil.which("ssh-keygen") or "ssh-keygen"):
        if not os.path.exists(exe):
            return (f"{exe} not found: `make test` installs Debian's openssh-server and openssh-client "
                    "(apt-get install openssh-server openssh-client)")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=60)


class SSHServer:
    """sshd -D on 127.0.0.1:port. ``prefix`` runs it some other way (the emulated Pi's sshd through enter.sh);
    ``guest_dir`` is where that sshd sees ``work`` (its config, keys), ``user`` the account to log in as."""

    def __init__(self, work: Path, prefix: list[str] | None = None, guest_dir: str | None = None,
                 user: str | None = None, extra: str = "", start_timeout: float = 30.0):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix or []
        self.guest = guest_dir or str(self.work)
        self.user = user or getpass.getuser()
        self.port = free_port()
        self.extra = extra
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.log = self.work / "sshd.log"

    def _write_config(self) -> None:
        for name in ("host_key", "client_key"):
            if not (self.work / name).exists():
                _keygen(self.work / name)
        shutil.copy(self.work / "client_key.pub", self.work / "authorized_keys")
        (self.work / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {self.guest}/host_key\n"
            f"AuthorizedKeysFile {self.guest}/authorized_keys\nPidFile none\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PrintMotd no\nLogLevel VERBOSE\n" + self.extra)

    def __enter__(self) -> SSHServer:  # noqa: PYI034 - Python 3.10 has no typing.Self
        self._write_config()
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory
        cmd = [*self.prefix, SSHD, "-D", "-e", "-f", f"{self.guest}/sshd_config"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"sshd exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            if "Server listening" in self.log.read_text(errors="replace"):
                return self
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"sshd did not start within {self.start_timeout:.0f} s: {self.log.read_text()[-2000:]}")

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def client_config(self, alias: str = "device", key: Path | None = None, port: int | None = None) -> Path:
        """An ssh config (for `--ssh-config`) in which Host ``alias`` is this server with the throwaway key."""
        path = self.work / f"ssh_config-{alias}"
        path.write_text(
            f"Host {alias}\n  HostName 127.0.0.1\n  Port {port or self.port}\n  User {self.user}\n"
            f"  IdentityFile {key or self.work / 'client_key'}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.work / 'known_hosts'}\n  StrictHostKeyChecking accept-new\n"
            "  LogLevel ERROR\n")
        return path
