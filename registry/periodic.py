"""One shape for every background loop: run a job now and then until stopped.

A :class:`Periodic` runs its job every ``interval`` seconds (each wait jittered by a
factor), or at the times a ``next_time`` function gives (a cron schedule; the clock is
read again at least every ``step`` seconds, since it may be set or the host suspended),
with up to ``spread`` seconds more so that nodes do not all wake at once. A job that
raises is logged (``"<name> failed"``, on the caller's logger) and counted (a Prometheus
counter passed in, a callback, and :attr:`Periodic.failures`); the loop goes on.
Cancellation is never swallowed. The clock, the sleep and the random draw are given at
construction, so tests run a loop without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

Clock = Callable[[], float]  # epoch seconds
Sleep = Callable[[float], Awaitable[None]]
Uniform = Callable[[float, float], float]  # random.uniform
Job = Callable[[], Awaitable[object]]


class Counter(Protocol):
    """A Prometheus counter (or one of its labelled children)."""

    def inc(self, amount: float = 1) -> None: ...


class Periodic:
    """Runs ``job`` every ``interval`` seconds, or at each time ``next_time(now)`` gives.

    Interval mode: the first run comes after ``first`` seconds (a ``(low, high)`` range
    drawn uniformly; default one jittered interval), each next one ``interval`` times a
    factor drawn from ``jitter`` after the previous run ended. Schedule mode: ``next_time``
    maps the time now to the next due time (strictly later); the job runs at it plus up to
    ``spread`` seconds, and :attr:`due` holds the due time while it runs.
    """

    def __init__(
        self,
        name: str,
        job: Job,
        log: logging.Logger,
        *,
        interval: float | None = None,
        first: tuple[float, float] | None = None,
        jitter: tuple[float, float] = (1.0, 1.0),
        next_time: Callable[[float], float] | None = None,
        step: float = 300.0,
        spread: float = 0.0,
        errors: Counter | None = None,
        on_error: Callable[[Exception], None] | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        uniform: Uniform = random.uniform,
    ) -> None:
        if (interval is None) == (next_time is None):
            raise ValueError("a Periodic needs an interval or a next_time, not both")
        if interval is not None and interval <= 0:
            raise ValueError("the interval must be positive")
        self.name = name
        self.job = job
        self.log = log
        self.interval = interval
        self.first = first
        self.jitter = jitter
        self.next_time = next_time
        self.step = step
        self.spread = spread
        self.errors = errors
        self.on_error = on_error
        self.clock = clock
        self.sleep = sleep
        self.uniform = uniform
        self.runs = 0  # jobs run (failed ones included)
        self.failures = 0
        self.due: float | None = None  # schedule mode: when the job running now was due
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> bool:
        """Run the job once; False if it raised (logged and counted, not raised)."""
        self.runs += 1
        try:
            await self.job()
        except Exception as e:
            self.failures += 1
            self.log.exception("%s failed", self.name)
            if self.errors is not None:
                self.errors.inc()
            if self.on_error is not None:
                self.on_error(e)
            return False
        return True

    async def run(self) -> None:
        """Run the job on its schedule until cancelled."""
        if self.next_time is not None:
            await self._run_scheduled(self.next_time)
            return
        assert self.interval is not None
        low, high = self.first if self.first is not None else self._jittered()
        await self.sleep(self.uniform(low, high))
        while True:
            await self.run_once()
            await self.sleep(self.uniform(*self._jittered()))

    def _jittered(self) -> tuple[float, float]:
        assert self.interval is not None
        return self.interval * self.jitter[0], self.interval * self.jitter[1]

    async def _run_scheduled(self, next_time: Callable[[float], float]) -> None:
        while True:
            due = next_time(self.clock())
            wait = due - self.clock()
            if wait > self.step:  # read the clock again now and then
                await self.sleep(self.step)
                continue
            await self.sleep(max(wait, 0.0) + self.uniform(0.0, self.spread))
            self.due = due
            try:
                await self.run_once()
            finally:
                self.due = None

    def start(self) -> asyncio.Task[None]:
        """Run in a task of its own (named after the loop); :meth:`stop` ends it."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name=self.name)
        return self._task

    def cancel(self) -> None:
        """Stop without waiting (an ``ExitStack`` callback); a running job is cancelled."""
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        """Stop, and wait until the task has ended."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])  # the caller's own cancellation still reaches it
