"""Nothing lost in parallel (issue 24, part 0): on a cold process, many threads asking at once
whether the delegated flow is signed in all see the token cache the store holds. The cache used
to be visible to other threads before it was loaded, so some of them answered "not signed in"
(92 of 160 in the issue's measurement) and their playbook items failed."""
from __future__ import annotations

import threading

from engine_fixtures import make_config
from integration.dispatch import Runtime, execute


def test_200_threads_on_a_cold_process_all_see_the_sign_in(emu, tmp_path, sleeps):
    cfg = make_config(emu, tmp_path)
    first = Runtime(cfg, sleep=sleeps)
    first.echo = lambda s: None
    execute("auth-login", {}, first)  # signed in, in the store
    first.close()

    for _ in range(3):  # a few cold starts: the race needed threads to meet in a small window
        cold = Runtime(cfg, sleep=sleeps)
        auth = cold.auth
        start = threading.Barrier(200)
        answers: list[bool] = []
        lock = threading.Lock()

        def ask():
            start.wait()
            ok = auth.ready("delegated")
            with lock:
                answers.append(ok)

        threads = [threading.Thread(target=ask) for _ in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(answers) == 200 and all(answers), f"{answers.count(False)} of 200 answered 'not signed in'"
        cold.close()


def test_a_parallel_foreach_on_a_cold_process_sends_every_item(emu, cfg_file, tmp_path):
    """The issue's reproduction: a 50-item parallel foreach of delegated sends, in a new process
    (its token cache cold), lost items to "not signed in" and still said ok."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, MSTEAMS_CONFIG=str(cfg_file))
    cli = [sys.executable, "-m", "integration.frontends.cli"]
    assert subprocess.run([*cli, "auth", "login"], env=env, capture_output=True, timeout=120).returncode == 0
    users = [u["mail"] for u in list(emu.state.users.values()) if u["mail"] != emu.config()["service_account"]][:50]
    pb = tmp_path / "parallel.yml"
    pb.write_text("name: parallel\ninputs:\n  users: {type: array, required: true}\nsteps:\n"
                  "  - id: post\n    command: message-send-to-chat\n    foreach: ${inputs.users}\n"
                  "    parallel: 8\n    args: {chat: \"${item}\", content: \"parallel check\"}\n")
    r = subprocess.run([*cli, "-q", "-o", "json", "playbook", "run", str(pb)]
                       + [a for u in users for a in ("--input", f"users={u}")],
                       env=env, capture_output=True, text=True, timeout=300)
    result = json.loads(r.stdout)
    items = result["steps"][0]["items"]
    assert r.returncode == 0 and result["status"] == "ok", r.stderr[-2000:]
    assert len(items) == len(users) and {i["status"] for i in items} == {"ok"}
    posted = sum(1 for c in emu.state.chats.values() for m in c.messages
                 if "parallel check" in (m.body or {}).get("content", ""))
    assert posted == len(users)
