"""Token requests safe across processes (issue 9, part 4): the store's lock (one token request
at a time per token cache; a killed holder or a lapsed lease does not block; a clear error
when it cannot be taken), the cache re-read under the lock (a token another process just got
is used, not fetched again), and real `msteams` processes refreshing one delegated token at
the same moment with no failure. The fake tenant's refresh tokens are single-use."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from engine_fixtures import STORE_BACKEND

from engine_fixtures import make_config
from integration.dispatch import Runtime, execute
from integration.engine.errors import AuthError
from integration.store.sqlite import Store
from integration.graph.tokenlock import HOST, StoreLock, process_start

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def token_posts(emu) -> int:
    return sum(1 for e in emu.request_log if e["path"].endswith("/oauth2/v2.0/token"))


@pytest.fixture
def short_tokens(emu):
    """Access tokens that live 30 s: under MSAL's 5-minute margin, so every use must refresh."""
    emu.tokens.lifetime = 30
    yield emu
    emu.tokens.lifetime = emu.token_lifetime


# ---- the fake tenant ----
def test_refresh_tokens_are_single_use(emu, signed_in):
    blob = signed_in.store.load_tokens("delegated")
    import json

    rt = next(iter(json.loads(blob)["RefreshToken"].values()))["secret"]
    app_id = emu.config()["client_id"]
    before = emu.tokens.refresh_stats()
    assert emu.tokens.redeem_refresh_token(rt, app_id) is not None
    assert emu.tokens.redeem_refresh_token(rt, app_id) is None  # rotated: the second use is refused
    after = emu.tokens.refresh_stats()
    assert (after["redeemed"] - before["redeemed"], after["refused"] - before["refused"]) == (1, 1)


# ---- the lock ----
def lock(store, timeout=0.3, lease=60.0, name="tokens:test"):
    return StoreLock(store, name, lease=lease, timeout=timeout, what="the test token cache")


def test_lock_excludes_then_frees(tmp_path):
    a, b = Store(tmp_path / "s.sqlite3"), Store(tmp_path / "s.sqlite3")
    with lock(a):
        t0 = time.monotonic()
        with pytest.raises(AuthError) as e:
            lock(b).acquire()
        assert 0.25 <= time.monotonic() - t0 < 3
        msg = str(e.value)
        assert f"process {os.getpid()} on {HOST}" in msg and "the test token cache" in msg and "try again" in msg
        assert e.value.exit_code == 3
    with lock(b):  # released: free at once
        pass
    with lock(a, name="tokens:other"), lock(b):  # one lock per name
        pass


def test_a_killed_holder_does_not_block(tmp_path):
    path = tmp_path / "s.sqlite3"
    Store(path)
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from integration.store.sqlite import Store;"
            "from integration.graph.tokenlock import StoreLock;"
            "StoreLock(Store(sys.argv[2]), 'tokens:test', lease=3600, timeout=5).acquire();"
            "print('held', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, REPO, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(AuthError, match=f"process {p.pid}"):
            lock(Store(path), timeout=0.2).acquire()
    finally:
        p.kill()
        p.wait()
    t0 = time.monotonic()
    with lock(Store(path), timeout=5):  # its lease has an hour to run, but the process is gone
        assert time.monotonic() - t0 < 1


def test_a_killed_unreaped_holder_and_a_reused_pid_do_not_block(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    now = time.time()
    lock(store).acquire()  # creates the table
    with store.transaction() as c:  # our own pid, but a different start time: the pid was reused
        c.execute("UPDATE locks SET owner='someone-else', started='1', expires=? WHERE name='tokens:test'",
                  (now + 3600,))
    assert process_start(os.getpid()) not in (None, "1")
    with lock(Store(tmp_path / "s.sqlite3"), timeout=1):
        pass


def test_a_lapsed_lease_is_taken_over_but_a_live_one_elsewhere_is_not(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    lock(store).acquire()
    with store.transaction() as c:  # another host: its process cannot be checked, only its lease
        c.execute("UPDATE locks SET owner='x', host='elsewhere', pid=1, expires=? WHERE name='tokens:test'",
                  (time.time() + 3600,))
    with pytest.raises(AuthError, match="on elsewhere"):
        lock(Store(tmp_path / "s.sqlite3"), timeout=0.2).acquire()
    with store.transaction() as c:
        c.execute("UPDATE locks SET expires=? WHERE name='tokens:test'", (time.time() - 1,))
    with lock(Store(tmp_path / "s.sqlite3"), timeout=1):
        pass


# ---- the cache re-read under the lock ----
def test_a_token_another_process_just_refreshed_is_used_not_fetched_again(emu, signed_in, tmp_path, sleeps):
    other = Runtime(make_config(emu, tmp_path), sleep=sleeps)  # a second process on the same store
    try:
        mine = signed_in.auth.acquire("delegated")
        assert other.auth.acquire("delegated").token == mine.token  # from the store, no request
        before, stats = token_posts(emu), emu.tokens.refresh_stats()
        fresh = other.auth.acquire("delegated", force_refresh=True)  # the other process refreshes
        assert fresh.token != mine.token and token_posts(emu) == before + 1
        # This one's token was refused too: under the lock it finds the other's new token in the store.
        again = signed_in.auth.acquire("delegated", force_refresh=True)
        assert again.token == fresh.token and token_posts(emu) == before + 1
        assert emu.tokens.refresh_stats()["refused"] == stats["refused"]
        # and its next refresh redeems the newest refresh token, not the one it loaded at first
        signed_in.auth.acquire("delegated", force_refresh=True)
        assert emu.tokens.refresh_stats()["refused"] == stats["refused"]
    finally:
        other.close()


def test_app_first_token_is_fetched_once_for_two_processes(emu, tmp_path, sleeps):
    a = Runtime(make_config(emu, tmp_path), sleep=sleeps)
    b = Runtime(make_config(emu, tmp_path), sleep=sleeps)
    try:
        before = token_posts(emu)
        assert a.auth.acquire("app").token == b.auth.acquire("app").token
        assert a.auth.acquire("bot").token == b.auth.acquire("bot").token
        assert token_posts(emu) == before + 2
    finally:
        a.close()
        b.close()


def test_sign_in_keeps_the_store_consistent_and_private(emu, tmp_path, sleeps):
    rt = Runtime(make_config(emu, tmp_path), sleep=sleeps)
    rt.echo = lambda s: None
    try:
        execute("channel-list", {"team": "IT Helpdesk"}, rt)  # the app token is in the store first
        execute("auth-login", {}, rt)
        other = Runtime(make_config(emu, tmp_path), sleep=sleeps)
        assert other.auth.ready("delegated") and other.auth.acquire("app").token == rt.auth.acquire("app").token
        other.close()
        for suffix in ("", "-wal", "-shm"):
            p = tmp_path / f"store.sqlite3{suffix}"
            if p.exists():
                assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
    finally:
        rt.close()


# ---- real processes ----
def run_cli(cfg_file, *args, timeout=120):
    env = dict(os.environ, MSTEAMS_CONFIG=str(cfg_file))
    env.pop("MSTEAMS_CLIENT_SECRET", None)
    return subprocess.Popen([sys.executable, "-m", "integration.frontends.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_refreshing_one_delegated_token_at_once_all_succeed(short_tokens, cfg_file, tmp_path):
    emu = short_tokens
    login = run_cli(cfg_file, "auth", "login")
    out, err = login.communicate(timeout=120)
    assert login.returncode == 0, err
    before = emu.tokens.refresh_stats()
    n, rounds = 8, 2
    failures = []
    for _ in range(rounds):
        procs = [run_cli(cfg_file, "--flow", "delegated", "channel-list", "--team", "IT Helpdesk") for _ in range(n)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            if p.returncode != 0:
                failures.append(err)
    after = emu.tokens.refresh_stats()
    assert failures == []
    assert after["refused"] == before["refused"]  # no refresh token was presented twice
    assert after["redeemed"] - before["redeemed"] >= n * rounds  # each command had to refresh
    if STORE_BACKEND == "sqlite":  # in Redis the caches are encrypted instead (test_redis_store)
        assert stat.S_IMODE(os.stat(tmp_path / "store.sqlite3").st_mode) == 0o600
    status = run_cli(cfg_file, "auth", "status")
    out, err = status.communicate(timeout=120)
    assert status.returncode == 0 and "soar-svc@contoso.example" in out
