"""Group commit (plumbing.batches.Group): requests of the same moment share one unit of work, each
caller gets its own result only once that unit of work is done, in its own trace context."""

import asyncio
from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from plumbing.batches import Group, Within


async def test_requests_of_the_same_moment_share_one_unit_of_work() -> None:
    units: list[list[int]] = []
    release = asyncio.Event()

    async def work(items: Sequence[int], _: Within) -> list[int]:
        units.append(list(items))
        await release.wait()
        return [item * 10 for item in items]

    group: Group[int, int] = Group(work)
    first = asyncio.create_task(group(1))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(group(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert not any(task.done() for task in [first, *waiting]), "nothing answered before commit"
    release.set()
    assert await asyncio.gather(first, *waiting) == [10, 20, 30, 40]
    assert units == [[1], [2, 3, 4]], "the requests that waited went through together"


async def test_each_item_is_worked_on_in_its_callers_context() -> None:
    tracer = TracerProvider().get_tracer("test")
    seen: dict[int, str] = {}

    async def work(items: Sequence[int], within: Within) -> list[None]:
        for index, item in enumerate(items):
            with within(index):
                seen[item] = format(trace.get_current_span().get_span_context().trace_id, "032x")
        return [None] * len(items)

    group: Group[int, None] = Group(work)

    async def call(item: int) -> str:
        with tracer.start_as_current_span(f"request {item}") as span:
            await group(item)
            return format(span.get_span_context().trace_id, "032x")

    traces = await asyncio.gather(*(call(n) for n in range(5)))
    assert [seen[n] for n in range(5)] == traces
    assert len(set(traces)) == 5


async def test_a_failed_unit_of_work_fails_each_of_its_callers_and_the_next_one_runs() -> None:
    fail = True

    async def work(items: Sequence[int], _: Within) -> list[int]:
        if fail:
            raise RuntimeError("the database is gone")
        return list(items)

    group: Group[int, int] = Group(work)
    results = await asyncio.gather(group(1), group(2), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    fail = False
    assert await group(3) == 3


@pytest.mark.parametrize("most", [1, 2])
async def test_a_unit_of_work_takes_at_most_most_items(most: int) -> None:
    sizes: list[int] = []

    async def work(items: Sequence[int], _: Within) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        return list(items)

    group: Group[int, int] = Group(work, most=most)
    assert await asyncio.gather(*(group(n) for n in range(5))) == list(range(5))
    assert max(sizes) <= most and sum(sizes) == 5
