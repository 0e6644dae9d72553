"""A plain (non-editable) install: the wheel carries the registry, its schema, the shipped
playbooks and the fake tenant's data, and from that install (outside the checkout) the demo
runs and a shipped playbook runs by name against the fake tenant."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(out), str(REPO)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (whl,) = out.glob("*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel unpacked as pip installs it, into a directory of its own (dependencies come from
    this interpreter's site-packages, the package itself only from the wheel)."""
    target = tmp_path_factory.mktemp("site")
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, inst.stderr
    return target


def _msteams(site: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "HOME": str(cwd), "XDG_CACHE_HOME": str(cwd / "cache"),
           "XDG_DATA_HOME": str(cwd / "data")}
    env.pop("MSTEAMS_CONFIG", None)
    code = "import sys, integration.frontends.cli as c; sys.exit(c.main())"
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_wheel_carries_registry_playbooks_and_fake_tenant_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("integration/commands.yml", "integration/commands.schema.json", "integration/playbooks/schema.json",
                   "integration/playbooks/library/incident-war-room.yml", "integration/playbooks/library/access-request.yml",
                   "integration/playbooks/library/page-oncall.yml", "integration/playbooks/library/examples/notify.yml",
                   "fake_tenant/default_tenant.yaml", "fake_tenant/permission_map.json", "fake_tenant/server.py"):
        assert needed in names, needed
    assert not any(n.startswith("tests/") for n in names)


def test_plain_install_runs_the_demo_outside_the_checkout(installed, tmp_path):
    r = _msteams(installed, tmp_path, "demo")
    assert r.returncode == 0, r.stderr
    assert "Done:" in r.stdout
    assert _msteams(installed, tmp_path, "docs").returncode == 0
    # what ran is the installed copy, not the checkout
    env = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run([sys.executable, "-c", "import integration, fake_tenant; print(integration.__file__); "
                            "print(fake_tenant.__file__)"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert all(line.startswith(str(installed)) for line in where.stdout.split()), where.stdout


def test_plain_install_runs_a_shipped_playbook_by_name(installed, tmp_path):
    serve = subprocess.Popen([sys.executable, "-c", "import sys, integration.frontends.cli as c; sys.exit(c.main())",
                              "emulator", "serve", "--port", "0", "--write-config", str(tmp_path / "emu.yml")],
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(installed), "HOME": str(tmp_path)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(300):
            if (tmp_path / "emu.yml").exists() and (tmp_path / "emu.yml").stat().st_size:
                break
            if serve.poll() is not None:
                pytest.fail(serve.stdout.read())
            time.sleep(0.05)
        cfg = str(tmp_path / "emu.yml")
        assert _msteams(installed, tmp_path, "--config", cfg, "auth", "login").returncode == 0
        r = _msteams(installed, tmp_path, "--config", cfg, "playbook", "run", "page-oncall",
                     "--input", "oncall=priya.patel@contoso.example", "--input", "reason=IR-7: test page")
        assert r.returncode == 0, r.stderr + r.stdout
        assert "Playbook page-oncall: ok" in r.stdout
        unknown = _msteams(installed, tmp_path, "--config", cfg, "playbook", "run", "no-such-playbook")
        assert unknown.returncode == 2
        assert "no shipped playbook of that name" in unknown.stderr and "incident-war-room" in unknown.stderr
    finally:
        serve.terminate()
        serve.wait(timeout=10)
