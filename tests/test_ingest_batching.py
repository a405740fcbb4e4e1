"""The hand-offs between the ingest threads: the inbox and the forming batch.

The closing rules run on a fake clock (``take(timeout=0)`` never waits), so
nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import threading

import pytest

from aggregator.ingest.batching import FormingBatch, Inbox


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_inbox_hands_out_chunks_in_arrival_order() -> None:
    inbox: Inbox[int] = Inbox(100)
    for i in range(10):
        inbox.put(i)
    assert len(inbox) == 10
    assert inbox.take(4, timeout=0) == [0, 1, 2, 3]
    assert inbox.take(100, timeout=0) == [4, 5, 6, 7, 8, 9]
    assert inbox.take(100, timeout=0) == []


def test_a_full_inbox_blocks_the_producer_until_taken_from() -> None:
    inbox: Inbox[int] = Inbox(2)
    inbox.put(1)
    inbox.put(2)
    third = threading.Thread(target=inbox.put, args=(3,), daemon=True)
    third.start()
    third.join(timeout=0.3)
    assert third.is_alive(), "put on a full inbox returned: it must wait, never drop"
    assert inbox.take(1, timeout=0) == [1]
    third.join(timeout=10)
    assert not third.is_alive()
    assert inbox.take(10, timeout=0) == [2, 3]


def test_inbox_refuses_a_useless_capacity() -> None:
    with pytest.raises(ValueError):
        Inbox(0)


def test_light_traffic_closes_the_batch_at_once() -> None:
    clock = FakeClock()
    forming: FormingBatch[str] = FormingBatch(500, 0.025, clock=clock)
    forming.add(["a"], caught_up=True)
    # Everything received is prepared: the scan does not wait for company.
    assert forming.take(timeout=0) == ["a"]
    assert forming.take(timeout=0) == []


def test_a_busy_stream_fills_the_batch_until_it_is_old_enough() -> None:
    clock = FakeClock()
    forming: FormingBatch[int] = FormingBatch(500, 0.025, clock=clock)
    forming.add(range(10), caught_up=False)
    assert forming.take(timeout=0) == []  # more is being prepared: wait for it
    clock.now += 0.010
    forming.add(range(10, 20), caught_up=False)
    assert forming.take(timeout=0) == []
    clock.now += 0.016  # the first message has now waited batch_ms
    assert forming.take(timeout=0) == list(range(20))


def test_a_full_batch_goes_at_once_and_the_rest_waits() -> None:
    clock = FakeClock()
    forming: FormingBatch[int] = FormingBatch(8, 10.0, capacity=100, clock=clock)
    forming.add(range(20), caught_up=False)
    assert forming.take(timeout=0) == list(range(8))
    assert forming.take(timeout=0) == list(range(8, 16))
    assert forming.take(timeout=0) == []  # 4 left, young, more coming
    forming.caught_up()
    assert forming.take(timeout=0) == [16, 17, 18, 19]


def test_closing_hands_over_what_is_left_then_says_so() -> None:
    clock = FakeClock()
    forming: FormingBatch[int] = FormingBatch(500, 10.0, clock=clock)
    forming.add([1, 2], caught_up=False)
    forming.close()
    assert forming.take(timeout=0) == [1, 2]
    assert forming.take(timeout=0) is None


def test_the_store_thread_wakes_when_a_batch_is_ready() -> None:
    forming: FormingBatch[int] = FormingBatch(500, 10.0)
    got: list[list[int] | None] = []
    taker = threading.Thread(target=lambda: got.append(forming.take(timeout=30)), daemon=True)
    taker.start()
    forming.add([7], caught_up=False)  # not ready: young, more coming
    taker.join(timeout=0.3)
    assert taker.is_alive()
    forming.caught_up()
    taker.join(timeout=10)
    assert got == [[7]]


def test_a_batch_at_capacity_holds_the_prepare_thread_back() -> None:
    forming: FormingBatch[int] = FormingBatch(4, 10.0, capacity=4, clock=FakeClock())
    forming.add(range(4), caught_up=False)
    adder = threading.Thread(target=lambda: forming.add([4, 5], caught_up=True), daemon=True)
    adder.start()
    adder.join(timeout=0.3)
    assert adder.is_alive(), "add beyond capacity returned"
    assert forming.take(timeout=0) == [0, 1, 2, 3]
    adder.join(timeout=10)
    assert not adder.is_alive()
    assert forming.take(timeout=0) == [4, 5]
