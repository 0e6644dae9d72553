"""Resumable playbook runs against the fake tenant: a run killed (SIGKILL) in the middle of a
fan-out and resumed reaches every recipient exactly once, or names the ones whose delivery
is unknown; a run key resumes instead of starting again; `parallel:` keeps results in order."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from engine_fixtures import make_config, store_settings
from fake_tenant import Emulator
from integration.dispatch import Runtime
from integration.playbooks.runner import resume_playbook, run_playbook

FANOUT = """\
    name: fanout
    inputs:
      users: {type: array, required: true}
    steps:
      - id: notify
        command: send-notification
        foreach: ${inputs.users}
        parallel: 2
        args:
          user: ${item}
          message: "IR-77: please confirm you have rotated your password"
        outputs:
          ref: ${result.outputs.0.messageRef}
      - id: done
        command: cache-show
"""


@pytest.fixture(scope="module")
def big():
    with Emulator(users=60, throttling=False) as emu:
        yield emu


@pytest.fixture
def tenant(big, tmp_path):
    big.reset()
    big.faults.clear()
    cfg = tmp_path / "config.yml"
    big.write_config(str(cfg))
    with open(cfg, "a", encoding="utf-8") as f:
        for key, value in store_settings(tmp_path).items():  # the store runtime_for uses too
            f.write(f"{key}: {value}\n")
    pb = tmp_path / "fanout.yml"
    pb.write_text(textwrap.dedent(FANOUT))
    users = sorted(u["id"] for u in big.state.users.values())[:50]
    return big, cfg, pb, users


def per_conversation(emu) -> collections.Counter:
    return collections.Counter(a["conversationId"] for a in emu.state.activities.values())


def runtime_for(emu, tmp_path):
    rt = Runtime(make_config(emu, tmp_path))
    rt.echo = lambda s: None
    return rt


def test_a_run_killed_mid_fanout_resumes_without_resending(tenant, tmp_path):
    emu, cfg, pb, users = tenant
    emu.faults.add(method="POST", path=r"/activities$", delay=0.04, count=1000)  # a slow Bot Connector
    code = ("import sys, json; from integration.dispatch import Runtime; from integration.engine.config import load; "
            "from integration.playbooks.runner import run_playbook; "
            f"rt = Runtime(load({str(cfg)!r})); "
            f"run_playbook({str(pb)!r}, {{'users': {users!r}}}, rt, run_key='IR-77')")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(emu.state.activities) < 15 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = len(emu.state.activities)
    assert 15 <= before < 50, proc.stderr.read()
    emu.faults.clear()

    rt = runtime_for(emu, tmp_path)
    try:
        (run,) = rt.store.run_list()
        assert run["status"] == "running" and run["run_key"] == "IR-77"
        lines: list[str] = []
        result = resume_playbook(run["id"], rt, out=lines.append)
    finally:
        rt.close()
    counts = per_conversation(emu)
    assert max(counts.values()) == 1, "a recipient got the message twice"
    notify = result.step("notify")
    unknown = [i for i in notify["items"] if i["status"] == "failed"]
    # at most the sends in flight at the kill (parallel: 2) can be unknown, and they are named
    assert len(unknown) <= 2 and all("unknown" in i["error"] for i in unknown)
    assert len(counts) + 0 >= 50 - len(unknown)
    assert sum(1 for i in notify["items"] if i["status"] == "ok") == 50 - len(unknown)
    assert any("resumed at step 1" in line for line in lines)


def test_the_same_run_key_resumes_instead_of_starting_again(tenant, tmp_path):
    emu, cfg, pb, users = tenant
    rt = runtime_for(emu, tmp_path)
    try:
        emu.faults.add(method="POST", path=r"/activities$", status=403, count=1)  # one recipient refused
        first = run_playbook(str(pb), {"users": users[:6]}, rt, out=lambda s: None, run_key="R1")
        assert first.status == "failed" and len(emu.state.activities) == 5
        again = run_playbook(str(pb), {"users": users[:6]}, rt, out=lambda s: None, run_key="R1")
        assert again.ok and again.run_id == first.run_id
        assert len(emu.state.activities) == 6 and max(per_conversation(emu).values()) == 1
        done = run_playbook(str(pb), {"users": users[:6]}, rt, out=lambda s: None, run_key="R1")
        assert done.ok and len(emu.state.activities) == 6
        assert [r["status"] for r in rt.store.run_list()] == ["ok"]
    finally:
        rt.close()


def test_parallel_foreach_keeps_input_order(tenant, tmp_path):
    emu, cfg, pb, users = tenant
    rt = runtime_for(emu, tmp_path)
    try:
        r = run_playbook(str(pb), {"users": users[:12]}, rt, out=lambda s: None)
    finally:
        rt.close()
    items = r.step("notify")["items"]
    assert [i["item"] for i in items] == users[:12]
    assert len(set(r.step("notify")["outputs"]["ref"])) == 12
    assert len(emu.state.activities) == 12


def test_runs_and_resume_from_the_command_line(tenant, tmp_path):
    from integration.frontends.cli import main

    emu, cfg, pb, users = tenant
    out, err = [], []
    emu.faults.add(method="POST", path=r"/activities$", status=403, count=1)
    code = main(["--config", str(cfg), "playbook", "run", str(pb), "--input", f"users={','.join(users[:3])}"],
                out=out.append, err=err.append)
    assert code == 6  # partial: one of three recipients refused (403), the others reached
    started = next(line for line in err if line.startswith("run ") and "started" in line)
    run_id = started.split()[1]
    assert any(f"msteams playbook resume {run_id}" in line for line in err)
    out.clear()
    assert main(["--config", str(cfg), "playbook", "runs"], out=out.append, err=err.append) == 0
    assert run_id in out[0] and "failed" in out[0]
    out.clear()
    assert main(["--config", str(cfg), "playbook", "resume", run_id], out=out.append, err=err.append) == 0
    assert "Playbook fanout: ok" in out[0]
    assert len(emu.state.activities) == 3 and max(per_conversation(emu).values()) == 1
    missing = []
    assert main(["--config", str(cfg), "playbook", "resume", "nosuchrun"], out=out.append, err=missing.append) == 5
    assert "no playbook run 'nosuchrun'" in missing[0]
