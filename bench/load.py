"""An open-model load generator: requests leave at a constant arrival rate whatever the server
does (as k6's constant-arrival-rate or wrk2), and each latency is measured from the moment the
request was *due*, so a slow server cannot hide its queueing (no coordinated omission).

Written in asyncio + aiohttp because no open-model tool (wrk2, k6, vegeta) is packaged for this
machine; it runs in its own process so that it does not share a core with the server's GIL."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class LoadResult:
    offered_rate: float
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    dropped: int = 0  # requests that could not even start on time (generator saturated)

    @property
    def achieved_rate(self) -> float:
        return sum(self.statuses.values()) / self.duration_s if self.duration_s else 0.0


async def at_constant_rate(
    rate: float, duration_s: float, one: Callable[[int, float], Coroutine[Any, Any, None]], max_in_flight: int
) -> int:
    """Starts `one(index, due)` at each due time of a constant arrival rate, whatever the earlier
    ones are doing, and waits for all; returns how many could not start on time (more than
    `max_in_flight` still running: the generator, not the server, would then set the pace)."""
    start = time.perf_counter()
    in_flight: set[asyncio.Task[None]] = set()
    dropped = 0
    for index in range(int(rate * duration_s)):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_in_flight:
            dropped += 1
            continue
        task = asyncio.create_task(one(index, due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight)
    return dropped


async def _run(
    url: str,
    method: str,
    rate: float,
    duration_s: float,
    headers: dict[str, str],
    body: Callable[[int], dict] | None,
    max_in_flight: int,
) -> LoadResult:
    result = LoadResult(offered_rate=rate, duration_s=duration_s)
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:

        async def one(index: int, due: float) -> None:
            try:
                payload = body(index) if body else None
                async with session.request(method, url, json=payload) as response:
                    await response.read()
                    result.statuses[response.status] += 1
            except Exception:
                result.errors += 1
            result.latencies_ms.append((time.perf_counter() - due) * 1000)

        start = time.perf_counter()
        result.dropped = await at_constant_rate(rate, duration_s, one, max_in_flight)
        result.duration_s = time.perf_counter() - start
    return result


def run_load(
    url: str,
    *,
    rate: float,
    duration_s: float,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: Callable[[int], dict] | None = None,
    max_in_flight: int = 512,
) -> LoadResult:
    return asyncio.run(_run(url, method, rate, duration_s, headers or {}, body, max_in_flight))
