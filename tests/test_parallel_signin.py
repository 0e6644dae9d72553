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
