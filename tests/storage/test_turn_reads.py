"""``TurnReads`` hands the reads of one turn of the event loop over together, leaves out a
read whose caller gave up, and starts afresh on a new loop when a loop stopped with reads still
waiting for their turn's end."""

from __future__ import annotations

import asyncio

from storage.turn_reads import TurnReads

Handed = list[list[str]]


def echoing(handed: Handed) -> TurnReads[str, str]:
    def read(waiting: list[tuple[str, asyncio.Future[str]]]) -> None:
        handed.append([ask for ask, _ in waiting])
        for ask, future in waiting:
            future.set_result(ask.upper())

    return TurnReads(read)


async def test_the_asks_of_one_turn_are_handed_over_together() -> None:
    handed: Handed = []
    turns = echoing(handed)

    first = await asyncio.gather(turns.ask("a"), turns.ask("b"))
    second = await turns.ask("c")

    assert (list(first), second) == (["A", "B"], "C")
    assert handed == [["a", "b"], ["c"]]


async def test_an_ask_given_up_before_its_turn_ends_is_left_out() -> None:
    handed: Handed = []
    turns = echoing(handed)
    kept, given_up = asyncio.create_task(turns.ask("a")), asyncio.create_task(turns.ask("b"))
    await asyncio.sleep(0)  # both have asked
    given_up.cancel()

    assert await kept == "A"
    assert handed == [["a"]]


def test_a_new_loop_is_served_after_a_loop_stopped_with_asks_waiting() -> None:
    handed: Handed = []
    turns = echoing(handed)
    stopped = asyncio.new_event_loop()

    left: list[asyncio.Task[str]] = []

    async def ask_and_leave() -> None:
        # The task asks in the loop's last turn; the turn's end would come in the next one.
        left.append(stopped.create_task(turns.ask("lost")))

    stopped.run_until_complete(ask_and_leave())
    assert not left[0].done()
    stopped.close()
    fresh = asyncio.new_event_loop()
    try:
        answer = fresh.run_until_complete(asyncio.wait_for(turns.ask("next"), 5))
    finally:
        fresh.close()

    assert answer == "NEXT"
    assert handed == [["next"]]
