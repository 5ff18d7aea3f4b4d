import asyncio

import pytest

from analyzer.runtime.supervisor import Supervisor


def test_a_crashing_task_is_restarted_then_takes_the_process_down() -> None:
    async def go() -> tuple[Supervisor, int]:
        stop = asyncio.Event()
        sup = Supervisor(stop, max_crashes=3, base_backoff=0.01)
        runs = 0

        async def flaky() -> None:
            nonlocal runs
            runs += 1
            raise RuntimeError("broker gone")

        sup.spawn("kafka-ingest", flaky)
        await asyncio.wait_for(stop.wait(), 5)
        await sup.shutdown(1)
        return sup, runs

    sup, runs = asyncio.run(go())
    assert runs == 3 and sup.crashes == {"kafka-ingest": 3}
    assert sup.fatal is not None and "kafka-ingest" in sup.fatal


def test_a_task_that_recovers_keeps_running_and_stop_ends_it() -> None:
    async def go() -> tuple[Supervisor, list[str]]:
        stop = asyncio.Event()
        sup = Supervisor(stop, max_crashes=3, base_backoff=0.01)
        seen: list[str] = []

        async def once_then_fine() -> None:
            if not seen:
                seen.append("crash")
                raise ValueError("transient")
            seen.append("running")
            await stop.wait()

        sup.spawn("watch", once_then_fine)
        await asyncio.sleep(0.2)
        await sup.shutdown(1)
        return sup, seen

    sup, seen = asyncio.run(go())
    assert seen == ["crash", "running"] and sup.fatal is None


def test_cancellation_is_not_swallowed() -> None:
    async def go() -> None:
        sup = Supervisor(asyncio.Event())

        async def forever() -> None:
            await asyncio.sleep(3600)

        task = sup.spawn("leader-election", forever)
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
