"""`msteams serve` as a live process on the fake tenant, for the HTTP API's tests: started with
the config of the `cfg_file` fixture, its URL read from --write-url, stopped with SIGTERM (it
must exit 0). Keys are made with the CLI, as a user would."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Service:
    def __init__(self, cfg_file, tmp_path, *args: str, name: str = "svc", verify=True):
        self.cfg_file = str(cfg_file)
        url_file = tmp_path / f"{name}.url"
        env = dict(os.environ, MSTEAMS_CONFIG=self.cfg_file)
        self.proc = subprocess.Popen([sys.executable, "-m", "integration.frontends.cli", "serve", "--write-url",
                                      str(url_file), *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not url_file.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"msteams serve exited: {self.proc.communicate()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("msteams serve did not start")
            time.sleep(0.02)
        self.url = url_file.read_text().strip()
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = verify
        self.stdout = self.stderr = ""

    def post(self, command: str, body=None, *, key: str | None = None, headers: dict | None = None, data=None,
             **kw) -> requests.Response:
        h = dict(headers or {})
        if key:
            h["Authorization"] = f"Bearer {key}"
        if data is None:
            return self.http.post(f"{self.url}/v1/commands/{command}", json=body if body is not None else {},
                                  headers=h, timeout=60, **kw)
        return self.http.post(f"{self.url}/v1/commands/{command}", data=data, headers=h, timeout=60, **kw)

    def get(self, path: str, *, key: str | None = None) -> requests.Response:
        return self.http.get(self.url + path, headers={"X-API-Key": key} if key else {}, timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.stdout, self.stderr = self.proc.communicate(timeout=30)
        self.http.close()
        assert self.proc.returncode == 0, self.stderr
        assert "HTTP API stopped." in self.stdout

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.stop()
        else:
            self.proc.kill()
            self.proc.communicate(timeout=30)


def cli(cfg_file, *argv: str) -> tuple[int, list[str], list[str]]:
    """`msteams ARGV` in this process, with the test's config."""
    from integration.frontends import cli as cli_mod

    out, err = [], []
    code = cli_mod.main(["--config", str(cfg_file), *argv], out=out.append, err=err.append)
    return code, out, err


def make_key(cfg_file, name: str, *scopes: str, expires: str | None = None) -> str:
    argv = ["-o", "json", "api-key", "create", "--name", name]
    for s in scopes:
        argv += ["--scope", s]
    if expires:
        argv += ["--expires", expires]
    code, out, err = cli(cfg_file, *argv)
    assert code == 0, err
    return json.loads(out[0])["key"]
