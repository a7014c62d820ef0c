"""The client-side limiter, on a fake clock (no assertion ever depends on wall time)."""

from __future__ import annotations

import asyncio
import bisect
import threading

import pytest

from dagster_kie.rate_limit import RateLimiter, RateLimits, SlidingWindow

from .helpers import Api, FakeClock, Script, reply


def max_in_any_window(times: list[float], window: float) -> int:
    """The most events inside any half-open interval [t, t + window)."""
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered))


def test_burst_of_1000_goes_out_at_exactly_the_allowed_pace() -> None:
    clock = FakeClock(now=0.0)
    window = SlidingWindow(20, 10.0, margin_s=0.0, clock=clock.monotonic)
    sends = [clock.now + window.reserve() for _ in range(1000)]
    assert sends == sorted(sends)
    assert max_in_any_window(sends, 10.0) == 20
    # exactly the allowed pace: the n-th batch of 20 leaves at n * 10 s
    assert sends[19] == 0.0
    assert sends[20] == 10.0
    assert sends[-1] == pytest.approx(49 * 10.0)


def test_margin_spaces_windows_a_little_more() -> None:
    clock = FakeClock(now=0.0)
    window = SlidingWindow(20, 10.0, margin_s=0.05, clock=clock.monotonic)
    sends = [window.reserve() for _ in range(41)]
    assert sends[20] == pytest.approx(10.05)
    assert sends[40] == pytest.approx(20.10)


def test_reservations_made_as_time_passes_respect_the_window() -> None:
    clock = FakeClock(now=0.0)
    window = SlidingWindow(5, 1.0, clock=clock.monotonic)
    sends: list[float] = []
    for step in range(200):
        clock.now = step * 0.07  # callers arrive faster than allowed
        sends.append(clock.now + window.reserve())
    assert max_in_any_window(sends, 1.0) <= 5


def test_queries_per_second_window() -> None:
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(queries_per_second=10.0, margin_s=0.0), clock=clock.monotonic)
    sends = [limiter.query.reserve() for _ in range(100)]
    assert max_in_any_window(sends, 1.0) == 10
    assert sends[-1] == pytest.approx(9.0)


def test_fractional_query_rate() -> None:
    limiter = RateLimiter(
        RateLimits(queries_per_second=2.5, margin_s=0.0), clock=FakeClock(now=0.0).monotonic
    )
    assert limiter.query.limit == 2
    assert limiter.query.window_s == pytest.approx(0.8)


def test_pause_after_429_holds_back_new_reservations() -> None:
    clock = FakeClock(now=0.0)
    limiter = RateLimiter(RateLimits(margin_s=0.0, penalty_s=1.5), clock=clock.monotonic)
    limiter.throttle("create", retry_after=3.0)
    assert limiter.create.reserve() == pytest.approx(3.0)
    limiter.throttle("query", retry_after=None)
    assert limiter.query.reserve() == pytest.approx(1.5)


def test_limiter_is_thread_safe() -> None:
    clock = FakeClock(now=0.0)
    lock = threading.Lock()
    window = SlidingWindow(20, 10.0, clock=clock.monotonic)
    sends: list[float] = []

    def worker() -> None:
        for _ in range(125):
            delay = window.reserve()
            with lock:
                sends.append(delay)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sends) == 1000
    assert max_in_any_window(sends, 10.0) == 20


def test_limiter_paces_asyncio_tasks() -> None:
    clock = FakeClock(now=0.0)
    window = SlidingWindow(3, 1.0, clock=clock.monotonic)

    async def one() -> float:
        delay = window.reserve()
        await asyncio.sleep(0)  # the real client sleeps `delay`; here only order matters
        return delay

    async def many() -> list[float]:
        return list(await asyncio.gather(*(one() for _ in range(12))))

    delays = asyncio.run(many())
    assert delays == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        RateLimits(create_per_window=0)
    with pytest.raises(ValueError):
        RateLimits(queries_per_second=0)


def test_client_paces_create_task_calls(make_api: object, script: Script, clock: FakeClock) -> None:
    """Every createTask of a client goes through its create window (fake clock)."""
    api: Api = make_api(
        rate_limits=RateLimits(
            create_per_window=4,
            create_window_s=2.0,  # type: ignore[operator]
            margin_s=0.0,
        )
    )
    sent_at: list[float] = []

    def create(request: object) -> object:
        sent_at.append(clock.now)
        return reply({"taskId": f"task_{len(sent_at)}"})

    script.on("POST", "/api/v1/jobs/createTask", create)  # type: ignore[arg-type]
    body = {"model": "ideogram/v3-text-to-image", "input": {"prompt": "a fox"}}
    for _ in range(20):
        api.create_task(body)
    assert max_in_any_window(sent_at, 2.0) == 4
    assert sent_at[-1] - sent_at[0] == pytest.approx(8.0)


def test_a_late_caller_does_not_let_one_send_too_many_through() -> None:
    """Booked slots assume everyone is on time; admit() checks the sends actually made."""
    clock = FakeClock(now=0.0)
    window = SlidingWindow(2, 1.0, clock=clock.monotonic)
    sends: list[float] = []

    def go(delay: float) -> None:
        clock.now = max(clock.now, start + delay)
        while True:
            wait, ticket = window.admit()
            if ticket is not None:
                sends.append(clock.now)
                window.done(ticket)
                return
            clock.now += wait

    start = 0.0
    delays = [window.reserve() for _ in range(4)]  # booked: 0, 0, 1, 1
    assert delays == [0.0, 0.0, 1.0, 1.0]
    go(delays[0])
    clock.now = 0.5  # the second caller wakes up late
    go(delays[1])
    go(delays[2])
    go(delays[3])  # booked for 1.0, but 0.5 and 1.0 are in its window: it must wait
    assert sends == [0.0, 0.5, 1.0, 1.5]
    assert max_in_any_window(sends, 1.0) <= 2


def test_a_send_counts_until_its_reply_arrives() -> None:
    clock = FakeClock(now=0.0)
    window = SlidingWindow(1, 1.0, clock=clock.monotonic)
    _, first = window.admit()
    assert first is not None
    clock.now = 1.5  # no reply yet: the server may see the first request right now
    wait, ticket = window.admit()
    assert ticket is None and 0 < wait < 0.1
    clock.now = 1.6
    window.done(first)
    wait, ticket = window.admit()
    assert ticket is None and wait == pytest.approx(1.0)
    clock.now = 2.6
    assert window.admit()[1] is not None


def test_pause_also_holds_back_admission() -> None:
    clock = FakeClock(now=0.0)
    window = SlidingWindow(5, 1.0, clock=clock.monotonic)
    window.pause(2.0)
    wait, ticket = window.admit()
    assert ticket is None and wait == pytest.approx(2.0)


def _server_accepts(arrivals: list[float], limit: int, window_s: float) -> bool:
    """The emulator's rule: a request arriving at a is refused when ``limit`` arrivals lie in
    (a - window, a]."""
    ordered = sorted(arrivals)
    return all(
        sum(1 for b in ordered[:i] if b > a - window_s) < limit for i, a in enumerate(ordered)
    )


def test_the_next_window_waits_for_the_replies_not_the_sends() -> None:
    """kie.ai may receive a send any time before its reply: the k-th send of the next window
    waits for the k-th reply of this one plus the window, which is safe and not more than that."""
    clock = FakeClock(now=0.0)
    window = SlidingWindow(3, 1.0, margin_s=0.01, clock=clock.monotonic)
    tickets = [window.admit()[1] for _ in range(3)]
    for reply_at, ticket in zip([0.1, 0.2, 0.3], tickets, strict=True):
        clock.now = reply_at
        window.done(ticket)
    clock.now = 1.0  # a limiter counting from the sends would let the fourth one go now...
    wait, ticket = window.admit()
    assert ticket is None and wait == pytest.approx(0.11)
    # ...and a server that received the first three just before replying would refuse it:
    assert not _server_accepts([0.1, 0.2, 0.3, 1.0], 3, 1.0)
    clock.now += wait  # the caller sleeps as told

    sends = []
    for _ in range(3):
        while True:
            wait, ticket = window.admit()
            if ticket is not None:
                sends.append(clock.now)
                window.done(ticket)  # an instant reply, so the next send waits on window 1
                break
            clock.now += wait
    assert sends == pytest.approx([1.11, 1.21, 1.31])
    # Worst-case arrivals (each earlier one just before its reply, each new one at its send):
    assert _server_accepts([0.1, 0.2, 0.3, *sends], 3, 1.0)


def test_a_send_ages_out_exactly_when_the_delay_says() -> None:
    """1.2 - 1.0 < 0.2 in floats: comparing against ``now - window`` kept answering 0 s."""
    clock = FakeClock(now=0.0)
    window = SlidingWindow(1, 1.0, clock=clock.monotonic)
    _, ticket = window.admit()
    clock.now = 0.2
    window.done(ticket)
    clock.now = 1.2
    wait, again = window.admit()
    assert again is not None and wait == 0.0


def test_callers_turned_away_together_wake_one_by_one() -> None:
    """A window's worth of callers turned away at once each sleep until their own slot: they do
    not all wake for every freed slot (that costs limit**2 wake-ups at each window boundary)."""
    import heapq

    limit = 50
    clock = FakeClock(now=0.0)
    window = SlidingWindow(limit, 1.0, clock=clock.monotonic)
    for index in range(limit):
        _, ticket = window.admit()
        clock.now = 0.001 * (index + 1)  # replies spread over 50 ms
        window.done(ticket)
    clock.now = 1.0
    sleepers = [(1.0, caller) for caller in range(limit)]
    calls, sends = 0, []
    while sleepers:
        clock.now, caller = heapq.heappop(sleepers)
        calls += 1
        wait, ticket = window.admit()
        if ticket is None:
            heapq.heappush(sleepers, (clock.now + wait, caller))
        else:
            sends.append(clock.now)
            window.done(ticket)
    assert len(sends) == limit
    assert calls <= 3 * limit, calls  # one wake-up or two each, not ~limit**2 / 2
    # ...and no later than the replies allow: the k-th send right after the k-th reply ages out.
    assert sends == pytest.approx([1.0 + 0.001 * (k + 1) for k in range(limit)])
