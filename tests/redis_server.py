"""A real redis-server for the tests: started on a free loopback port with its own temporary
directory, no persistence, and stopped at the end. Under CI=true a machine without
redis-server is a failure, never a skip (.ci/run installs Debian's redis-server)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """``tls``: TLS only (rediss://), with a certificate from a throwaway CA (``ca_path``)."""

    def __init__(self, tls: bool = False):
        self.dir = tempfile.mkdtemp(prefix="msteams-test-redis-")
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.tls = None
        if tls:
            from fake_tenant.tls import TlsMaterial

            self.tls = TlsMaterial(directory=tempfile.mkdtemp(dir=self.dir))

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    @property
    def ca_path(self) -> str | None:
        return self.tls.ca_path if self.tls else None

    def start(self) -> "RedisServer":
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        listen = ["--port", str(self.port)]
        if self.tls:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls.cert_path,
                      "--tls-key-file", self.tls.key_path, "--tls-ca-cert-file", self.tls.ca_path,
                      "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(
            [exe, *listen, "--bind", "127.0.0.1", "--dir", self.dir, "--save", "",
             "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.proc.stderr.read().decode(errors='replace')[:500]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    if self.tls:
                        import ssl

                        s = ssl.create_default_context(cafile=self.tls.ca_path).wrap_socket(s, server_hostname="127.0.0.1")
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not answer within 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_or_skip(tls: bool = False) -> RedisServer:
    """A started server; without redis-server, a skip, except under CI=true, where it fails."""
    try:
        return RedisServer(tls=tls).start()
    except (RuntimeError, OSError) as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI needs a real Redis and none could be started: {exc}", pytrace=False)
        pytest.skip(f"no Redis server: {exc}")
