"""The pacer: sliding windows per published limit class, on a fake clock, a shared pause after
a 429, and the classes a Graph or Bot Connector request belongs to."""
from __future__ import annotations

import threading

from integration.delivery import limits
from integration.delivery.pacer import Pacer, Window, bot_windows, graph_windows


class FakeTime:
    def __init__(self):
        self.t = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def send(pacer: Pacer, windows) -> None:
    """One request, answered at once."""
    pacer.done(pacer.acquire(windows))


def sends_within(pacer: Pacer, ft: FakeTime, windows, n: int) -> list[float]:
    times = []
    for _ in range(n):
        send(pacer, windows)
        times.append(ft.t)
    return times


def test_a_conversation_gets_seven_per_second_and_eight_per_two_seconds():
    ft = FakeTime()
    p = Pacer(clock=ft.clock, sleep=ft.sleep)
    wins = bot_windows("POST", "/v3/conversations/a%3A1/activities")
    times = sends_within(p, ft, wins, 20)
    for i in range(len(times)):
        in_1s = [t for t in times if times[i] <= t < times[i] + 1.0]
        in_2s = [t for t in times if times[i] <= t < times[i] + 2.0]
        assert len(in_1s) <= 7 and len(in_2s) <= 8
    # and it is not slower than the tightest window allows: 8 per 2 s sustained
    assert times[-1] - times[0] < (20 / 8) * 2.0 * 1.1


def test_sixty_per_thirty_seconds_holds_over_time():
    ft = FakeTime()
    p = Pacer(clock=ft.clock, sleep=ft.sleep)
    wins = bot_windows("POST", "/v3/conversations/c/activities")
    times = sends_within(p, ft, wins, 130)
    for i in range(len(times)):
        assert len([t for t in times if times[i] <= t < times[i] + 30.0]) <= 60


def test_conversations_have_their_own_windows_but_share_the_apps():
    ft = FakeTime()
    p = Pacer(clock=ft.clock, sleep=ft.sleep)
    start = ft.t
    times = []
    for i in range(200):  # one message per conversation: only the app's 50 per second applies
        send(p, bot_windows("POST", f"/v3/conversations/c{i}/activities"))
        times.append(ft.t)
    for t0 in times:
        assert len([t for t in times if t0 <= t < t0 + 1.0]) <= 50
    assert times[49] == start  # the whole first window goes at once...
    assert times[50] > start + 1.0  # ...the next waits for it to free...
    # ...and each window is spent as it frees: 200 take the throttle bound, (200 - 50) / 50 s, not a
    # window more (half a window at once and an even pace after took 4 s)
    assert times[-1] - start < (200 - 50) / 50 * 1.02


def test_a_429_pauses_the_class_for_every_sender():
    ft = FakeTime()
    p = Pacer(clock=ft.clock, sleep=ft.sleep)
    wins = graph_windows("POST", "/chats/19%3Aa/messages")
    p.pause(wins, 5.0)
    before = ft.t
    send(p, graph_windows("POST", "/chats/19%3Ab/messages"))  # another chat, same class
    assert ft.t - before >= 5.0
    assert p.paused == 1


def test_an_injected_sleep_that_does_not_move_the_clock_still_drains_windows():
    slept: list[float] = []
    p = Pacer(sleep=slept.append)  # real clock, fake sleep: as the test runtimes inject
    wins = [Window("k", 2, 1.0)]
    for _ in range(6):
        send(p, wins)  # would spin for ever if the pacer trusted only the clock
    assert len(slept) >= 2 and p.waited > 0


def test_speed_scales_windows_like_the_fake_tenant():
    ft = FakeTime()
    p = Pacer(clock=ft.clock, sleep=ft.sleep, speed=10.0)
    times = sends_within(p, ft, [Window("k", 4, 1.0)], 40)
    assert times[-1] - times[0] < 1.2  # ten times 4 per second


def test_threads_share_one_budget():
    ft = FakeTime()
    lock = threading.Lock()

    def sleep(s):
        with lock:
            ft.t += s

    p = Pacer(clock=ft.clock, sleep=sleep)
    start = ft.t
    stamps: list[float] = []
    wins = [Window("k", 5, 1.0)]

    def worker():
        for _ in range(10):
            send(p, wins)
            with lock:
                stamps.append(ft.t)

    ts = [threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert len(stamps) == 40
    # 40 requests at 5 per second take about 7 s however many threads send them (each thread
    # with a budget of its own would have finished in under 2 s)
    assert max(stamps) - start >= 7.0


def test_graph_classes_follow_the_published_table():
    post_chat = graph_windows("POST", "https://graph.example/v1.0/chats/19%3Aa%40thread.v2/messages")
    assert [w.key for w in post_chat] == ["graph:chat_message_post"]
    assert post_chat[0].capacity == limits.TEAMS_LIMITS["chat_message_post"][0]
    chan = graph_windows("POST", "/teams/T1/channels/19%3Ac/messages")
    assert {w.key for w in chan} == {"graph:channel_message_post", "graph:channel:19:c", "graph:day:19:c"}
    assert graph_windows("GET", "/teams/T1")[1].key == "graph:team:t1"
    users = graph_windows("GET", "/users")
    assert users[0].key == "graph:identity" and users[0].cost == 2.0
    assert graph_windows("GET", "/users/abc")[0].cost == 1.0
    assert graph_windows("POST", "/communications/calls") == []  # calls: no published rps class


def test_creating_a_conversation_counts_only_for_the_app():
    assert [w.key for w in bot_windows("POST", "/v3/conversations")] == ["bot:app:1.0"]
    keys = {w.key for w in bot_windows("PUT", "/v3/conversations/a%3Ab/activities/1")}
    assert "bot:conversation:a:b:1.0" in keys and "bot:conversation:a:b:3600.0" in keys


def test_a_request_counts_from_its_answer_not_from_its_send():
    """A request that waited 0.3 s for a connection reached the service up to 0.3 s after it was
    stamped: once answered it counts from then, so the window frees 0.3 s later."""
    ft = FakeTime()
    p = Pacer(clock=ft.clock, sleep=ft.sleep)
    wins = [Window("x", 1, 1.0)]
    first = p.acquire(wins)
    ft.t += 0.3
    p.done(first)  # the first answer came 0.3 s after its send
    start = ft.t
    send(p, wins)
    assert ft.t - start >= 1.0 - 0.01  # a full window after the answer, not 0.7 s
    assert first.waited == 0.0 and first.entries and first.at == 1000.0  # stamped on the pacer's clock


def test_a_request_in_flight_keeps_its_slot_until_answered():
    """The service may count a request at any moment until its answer: one in flight for longer
    than its window still holds its slot, and frees it a window after the answer comes."""
    ft = FakeTime()
    p = Pacer(clock=ft.clock, sleep=ft.sleep)
    wins = [Window("x", 1, 1.0)]
    slow = p.acquire(wins)
    answered = {}

    def sleep(s):  # the slow request's answer comes 3 s after its send, while the next waits
        ft.sleep(s)
        if ft.t >= 1003.0 and not answered:
            answered["at"] = ft.t
            p.done(slow)

    p.sleep = sleep
    send(p, wins)
    assert answered and ft.t >= answered["at"] + 1.0 - 0.01
    assert max(ft.slept) < 1.1  # it looked again each step while the slot was in flight (not a lease)


def test_a_ticket_never_handed_back_frees_its_slot_after_the_lease():
    ft = FakeTime()
    p = Pacer(clock=ft.clock, sleep=ft.sleep)
    p.lease = 5.0
    wins = [Window("x", 1, 1.0)]
    p.acquire(wins)  # its sender died before the answer
    send(p, wins)
    assert 1005.0 + 1.0 <= ft.t < 1005.0 + 1.1
