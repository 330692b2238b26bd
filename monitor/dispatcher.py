"""The outbox dispatcher: delivers stored decisions to actions and alert channels.

A decision and its deliveries are written in one transaction by the run loop;
this thread sends them. Delivery is at-least-once: a crash between a send and
its record means the send is repeated after restart with the same
idempotency key, which receivers use to drop the duplicate. Failed attempts
back off exponentially with jitter up to a cap; after ``max_attempts`` the
delivery is dead, which is logged and counted.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping

from monitor.metrics import Metrics
from monitor.store import Store
from triggers.base import Deliverer, DeliveryError

log = logging.getLogger("driftd.dispatch")


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter-lite: between half and all of ``min(cap, base * 2**(attempt-1))``.

    >>> backoff_delay(1, 1.0, 60.0, random.Random(1)) <= 1.0
    True
    >>> 30.0 <= backoff_delay(10, 1.0, 60.0, random.Random(1)) <= 60.0
    True
    """
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    return ceiling * rng.uniform(0.5, 1.0)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        targets: Mapping[tuple[str, str], Deliverer],
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 0.2,
        seed: int | None = None,
    ) -> None:
        self._store = store
        self._targets = targets
        self._metrics = metrics
        self._clock = clock
        self._poll = poll_seconds
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="driftd-dispatch", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New deliveries were stored: look now rather than at the next tick."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending (or ``timeout``); True if drained."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._store.pending_deliveries() == 0:
                return True
            self._wake.set()
            time.sleep(0.05)
        return self._store.pending_deliveries() == 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
            except Exception:  # the store may be briefly unreachable: keep the thread alive
                log.exception("dispatcher pass failed")
                sent = 0
            if not sent:
                self._wake.wait(self._poll)
                self._wake.clear()

    def run_once(self) -> int:
        """Try every due delivery once. Returns how many were attempted."""
        due = self._store.due_deliveries(self._clock())
        for row in due:
            if self._stop.is_set():
                break
            self._attempt(row)
        self._metrics.outbox_pending.set(self._store.pending_deliveries())
        return len(due)

    def _attempt(self, row: object) -> None:
        r = row._mapping  # type: ignore[attr-defined]
        kind, name, attempt = r["kind"], r["target"], r["attempts"] + 1
        counter = self._metrics.actions if kind == "action" else self._metrics.alerts
        target = self._targets.get((kind, name))
        started = self._clock()
        t0 = time.monotonic()
        if target is None:
            detail = f"{kind} {name!r} is no longer configured"
            self._store.record_attempt(
                r["id"], attempt, False, detail, started, 0.0, "dead", started
            )
            counter.labels(name, "dead").inc()
            log.error("delivery %s dead: %s", r["id"], detail)
            return
        payload = r["payload"]
        if payload.get("resolves"):
            # Follow up where the fired decision was told (its Slack thread).
            first = self._store.delivery_result(payload["resolves"], kind, name)
            if first and first.get("ts"):
                payload = {
                    **payload,
                    "thread": {"ts": first["ts"], "channel": first.get("channel")},
                }
        try:
            result = target.deliver(payload, r["decision_key"], attempt)
        except DeliveryError as exc:
            duration = time.monotonic() - t0
            final = not exc.retryable or attempt >= target.max_attempts
            delay = backoff_delay(
                attempt, target.backoff_seconds, target.backoff_max_seconds, self._rng
            )
            if exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            status = "dead" if final else "pending"
            self._store.record_attempt(
                r["id"], attempt, False, str(exc), started, duration, status, started + delay
            )
            counter.labels(name, "dead" if final else "failed").inc()
            if final:
                log.error(
                    "%s %s gave up on decision %s after %d attempt(s): %s",
                    kind,
                    name,
                    r["decision_key"],
                    attempt,
                    exc,
                )
            else:
                log.warning(
                    "%s %s attempt %d for decision %s failed (%s); retry in %.1fs",
                    kind,
                    name,
                    attempt,
                    r["decision_key"],
                    exc,
                    delay,
                )
            return
        except Exception as exc:  # a bug in a target must not kill the dispatcher
            log.exception("%s %s raised", kind, name)
            duration = time.monotonic() - t0
            self._store.record_attempt(
                r["id"], attempt, False, repr(exc), started, duration, "dead", started
            )
            counter.labels(name, "dead").inc()
            return
        duration = time.monotonic() - t0
        self._store.record_attempt(
            r["id"],
            attempt,
            True,
            result.detail,
            started,
            duration,
            "delivered",
            started,
            result=dict(result.data),
        )
        counter.labels(name, "delivered").inc()
        log.info("%s %s delivered decision %s: %s", kind, name, r["decision_key"], result.detail)
