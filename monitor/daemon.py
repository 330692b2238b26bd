"""Wiring and the run loop.

The loop: poll a batch from each source, run it through the pipeline, write
what it derived (dead letters, signals, decisions with their outbox rows) in
one transaction, update metrics; every ``checkpoint_interval_seconds`` write
the pipeline state and the positions it reflects in one transaction, then
tell the source (Kafka commits). A stop request (SIGTERM, SIGINT) only sets a
flag: the loop finishes the batch in hand, checkpoints and closes.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from alerts.registry import make_channel
from connectors.base import Source
from connectors.registry import make_source
from monitor.batch import BatchRunner, CheckOutcome
from monitor.config import DriftdConfig, VersionsConfig
from monitor.dispatcher import Dispatcher
from monitor.http import HttpServer
from monitor.logs import RateLimitedLog
from monitor.metrics import Metrics
from monitor.pipeline import (
    STATE_VERSION,
    BatchOutput,
    Pipeline,
    ShardState,
    decision_payload,
    iter_signal_rows,
)
from monitor.store import Checkpoint, DecisionRow, Store, make_engine, model_versions
from monitor.versions import ROLLBACK_RULE, rollback_row, sequential_look
from monitor.windows import Window, merge
from triggers.base import Decision, Deliverer, Rule, Signal
from triggers.registry import make_action, make_rule

log = logging.getLogger("driftd")


def shard_key(source: str, shard: int) -> str:
    return f"shard/{source}/{shard}"


@dataclass
class _SourceState:
    source: Source
    positions: dict[str, int] = field(default_factory=dict)
    partition_shard: dict[str, int] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)

    def forget(self, shards: frozenset[int]) -> None:
        for p in [p for p, n in self.partition_shard.items() if n in shards]:
            self.positions.pop(p, None)
            del self.partition_shard[p]
        self.dirty -= shards


class Daemon:
    """One driftd process. Everything it is handed (engine, registry, sources)
    it uses and leaves open; what it makes itself it closes."""

    def __init__(
        self,
        config: DriftdConfig,
        *,
        engine: Engine | None = None,
        registry: CollectorRegistry | None = None,
        sources: Sequence[Source] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.metrics.build_info.info({"version": _version()})
        self._own_engine = engine is None
        pw = config.storage.password.reveal() if config.storage.password else None
        self.engine = engine if engine is not None else make_engine(config.storage.url, pw)
        self.store = Store(self.engine, clock=clock)
        self.pipeline = Pipeline(config)
        self._own_sources = sources is None
        self.sources: list[_SourceState] = []
        if sources is not None:
            self.sources = [_SourceState(s) for s in sources]
        else:
            for sc in config.sources:
                # The source needs the callback before its state holder exists.
                holder: list[_SourceState] = []
                src = make_source(sc, partial(self._positions_for, holder))
                holder.append(_SourceState(src))
                self.sources.append(holder[0])
        for st in self.sources:
            st.source.set_rebalance_listener(partial(self._on_rebalance, st))
        targets: dict[tuple[str, str], Deliverer] = {}
        for a in config.actions:
            targets[("action", a.name)] = make_action(a)
        for ac in config.alerts:
            targets[("alert", ac.name)] = make_channel(ac)
        self.dispatcher = Dispatcher(self.store, targets, self.metrics, clock=clock)
        self._clock = clock
        self._stop = threading.Event()
        self._heartbeat = time.monotonic()
        self._invalid_log = RateLimitedLog(
            logging.getLogger("driftd.input"), config.logging.invalid_log_interval_seconds
        )
        self.http: HttpServer | None = None
        # The scheduler's thread only says which model's check is due; the loop,
        # which owns the shard state, runs it.
        self._due: queue.SimpleQueue[str] = queue.SimpleQueue()
        # Rules for a scheduled check no shard here took part in (in memory).
        self._model_rules = [make_rule(r) for r in config.rules]
        self._lead: tuple[str, int] | None = None
        self.batch = BatchRunner(
            config, self.store, self.metrics, self._due.put, self._on_check, clock
        )
        self._exported: dict[str, int] = {}
        self._cooldowns = {r.name: r.cooldown_seconds for r in config.rules}
        self._max_concurrent = {r.name: r.max_concurrent for r in config.rules}

    # -- control --------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the loop to stop after the batch in hand. Safe from a signal handler."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def health(self) -> tuple[bool, str]:
        age = time.monotonic() - self._heartbeat
        limit = max(30.0, 20 * self.config.runtime.poll_timeout_seconds)
        return (age < limit, f"loop heartbeat {age:.1f}s ago")

    def ready(self) -> tuple[bool, str]:
        for st in self.sources:
            if not st.source.ready():
                return (False, f"source {st.source.name} not connected")
        if not self.store.ping():
            return (False, "store unreachable")
        return (True, "ok")

    # -- lifecycle ------------------------------------------------------------
    def run(
        self, *, keep_serving: bool = False, serve_http: bool = True, dry_run: bool = False
    ) -> int:
        """Run until the sources end (files) or a stop is requested. Blocks.

        ``dry_run`` decides but delivers nothing (``driftd replay``)."""
        self.store.create_schema()
        self._restore()
        if serve_http:
            from monitor.api import Api

            self.http = HttpServer(
                self.config.http.host,
                self.config.http.port,
                self.registry,
                self.health,
                self.ready,
                api=Api(self.store, self.config, clock=self._clock),
            )
            self.http.start()
        if not dry_run:
            self.dispatcher.start()
        self.batch.start()
        try:
            for st in self.sources:
                st.source.open(st.positions)
            # What start-up built (config, libraries, restored state) lives as
            # long as the process: keep it out of every later collection, which
            # otherwise rescans it (~5% of the per-event path).
            gc.collect()
            gc.freeze()
            self._loop()
            self.batch.stop()
            if all(st.source.exhausted for st in self.sources):
                # A finished replay: judge what is left in the windows.
                for st in self.sources:
                    for source, n in list(self.pipeline.shards):
                        if source == st.source.name:
                            self._judge_closed(st, n, final=True)
                for m in self.config.models:
                    if m.batch is not None and not m.batch.closed_by_events:
                        self.scheduled_check(m.name)
            self.checkpoint()
            if not dry_run and all(st.source.exhausted for st in self.sources):
                log.info(
                    "replay finished; waiting up to %.0fs for deliveries",
                    self.config.runtime.drain_timeout_seconds,
                )
                if not self.dispatcher.drain(self.config.runtime.drain_timeout_seconds):
                    log.warning(
                        "%d deliveries still pending; they resume on the next start",
                        self.store.pending_deliveries(),
                    )
            if not dry_run:
                self._print_summary()
            if keep_serving and not self._stop.is_set():
                log.info("keep-serving: /metrics stays up until SIGTERM/SIGINT")
                while not self._stop.wait(0.5):
                    self._heartbeat = time.monotonic()
                    self._service()
        finally:
            self.close()
        return 0

    def close(self) -> None:
        self.batch.stop()
        self.dispatcher.stop()
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self._own_sources:
            for st in self.sources:
                st.source.close()
        if self._own_engine:
            self.engine.dispose()

    def _restore(self) -> None:
        """At start, restore every stored shard of the sources that own all
        their shards (files); sources with assignments restore per shard."""
        for st in self.sources:
            if not st.source.assigns_shards:
                self._load_shards(st, None)

    def _positions_for(self, holder: list[_SourceState], shards: frozenset[int]) -> dict[str, int]:
        return self._load_shards(holder[0], shards)

    def _load_shards(self, st: _SourceState, shards: frozenset[int] | None) -> dict[str, int]:
        """Restore the stored state of ``shards`` (None: all stored) of a source;
        return their positions. A shard with no checkpoint starts fresh."""
        name = st.source.name
        if shards is not None:
            for n in shards:
                self.pipeline.drop_shard((name, n))  # any stale copy from an earlier assignment
        positions: dict[str, int] = {}
        for cp in self.store.load_checkpoints(f"shard/{name}/"):
            n = int(cp.key.rsplit("/", 1)[1])
            if shards is not None and n not in shards:
                continue
            if cp.state_version != STATE_VERSION:
                log.warning(
                    "checkpoint %s has state version %d (want %d): starting it fresh",
                    cp.key,
                    cp.state_version,
                    STATE_VERSION,
                )
                continue
            self.pipeline.load_shard((name, n), cp.state)
            positions.update(cp.positions)
            st.partition_shard.update({p: n for p in cp.positions})
            log.info("restored %s at %s", cp.key, dict(cp.positions))
        st.positions.update(positions)
        return positions

    def _on_rebalance(self, st: _SourceState, lost: frozenset[int], gained: frozenset[int]) -> None:
        """Shards leave: checkpoint them first, then forget them. Shards that
        arrive are restored by ``_load_shards`` when the source asks for their
        positions. Runs inside ``poll``, between batches."""
        if lost:
            self.checkpoint(only=(st, lost))
            for n in lost:
                self.pipeline.drop_shard((st.source.name, n))
            st.forget(lost)
            log.info("source %s: shards %s moved away", st.source.name, sorted(lost))
        if gained:
            log.info("source %s: assigned shards %s", st.source.name, sorted(gained))

    def _loop(self) -> None:
        cfg = self.config.runtime
        next_checkpoint = time.monotonic() + cfg.checkpoint_interval_seconds
        while not self._stop.is_set():
            self._heartbeat = time.monotonic()
            active = [st for st in self.sources if not st.source.exhausted]
            if not active:
                break
            for st in active:
                records = st.source.poll(cfg.batch_size, cfg.poll_timeout_seconds)
                if records:
                    self._process(st, records)
                if st.source.exhausted:
                    self.metrics.source_exhausted.labels(st.source.name).set(1)
            self._service()
            if time.monotonic() >= next_checkpoint:
                self.checkpoint()
                next_checkpoint = time.monotonic() + cfg.checkpoint_interval_seconds

    # -- batch checks ---------------------------------------------------------------
    def scheduled_check(self, model: str) -> CheckOutcome:
        """Run ``model``'s scheduled check now, in the loop thread (between
        batches). Closing its windows is checkpointed before they are judged,
        and they are dropped only once the check is stored (a check that
        errs puts them back), so a crash neither loses nor double-judges them;
        a restart judges what was closed (see :meth:`_judge_groups`). Blocks."""
        taken: list[int] = []
        self._lead = self._lead_shard(model, None)
        cfg = self.config.model(model)
        sliding = cfg is not None and cfg.batch is not None and cfg.batch.window == "sliding"

        def get(m: str, take: bool) -> Window | None:
            if not take or sliding:  # a sliding window stays open: judged as it is
                return self._merged_windows(m)
            group = time.time_ns()  # unique across restarts (checkpointed with the windows)
            parts = []
            for (source, n), state in self.pipeline.shards.items():
                if state.windows is not None:
                    w = state.windows.close(m, group)
                    if w is not None:
                        parts.append(w)
                        self._mark_dirty(source, n)
            taken.append(group)
            self.checkpoint()  # the boundary is durable before anything is judged
            return merge(parts)

        outcome = self.batch.run_scheduled(model, get)
        for group in taken:
            self._settle(model, group, outcome.status != "error")
        return outcome

    def _lead_shard(self, model: str, group: int | None) -> tuple[str, int] | None:
        """The shard whose rules take a scheduled check of ``model`` (of closed
        ``group``, or of its open windows): the first one here with a part of
        it. Its rules are checkpointed with it, so their state (persistence over
        checks) survives a restart and moves with the shard."""
        for key in sorted(self.pipeline.shards):
            windows = self.pipeline.shards[key].windows
            if windows is None:
                continue
            if group is None and windows.has_open(model):
                return key
            if any(w.model == model and w.group == group for w in windows.closed):
                return key
        return None

    def _merged_windows(self, model: str) -> Window | None:
        """``model``'s open windows of every shard here, merged (a copy)."""
        found = [
            w
            for state in self.pipeline.shards.values()
            if state.windows is not None and (w := state.windows.peek(model)) is not None
        ]
        return merge(found)

    def _settle(self, model: str, group: int, judged: bool) -> None:
        """Drop the windows of a judged scheduled check (``judged``), or put
        them back into the open ones."""
        for (source, n), state in self.pipeline.shards.items():
            if state.windows is None:
                continue
            for w in [w for w in state.windows.closed if w.group == group]:
                if judged:
                    state.windows.ack(model, w.seq)
                else:
                    state.windows.reopen(model, w.seq)
                self._mark_dirty(source, n)

    def _mark_dirty(self, source: str, n: int) -> None:
        for st in self.sources:
            if st.source.name == source:
                st.dirty.add(n)

    def _judge_groups(self) -> None:
        """Judge scheduled checks' windows closed before a restart (restored
        with their shards): each group merged across the shards here, as it
        would have been. Safe to repeat: a check stored before the crash is
        found again (same bounds and size), its signals keep their keys."""
        groups: dict[tuple[str, int], list[Window]] = {}
        for state in self.pipeline.shards.values():
            if state.windows is not None:
                for w in state.windows.closed:
                    if w.group is not None:
                        groups.setdefault((w.model, w.group), []).append(w)
        for (model, group), parts in sorted(groups.items(), key=lambda kv: kv[0][1]):
            if self.config.model(model) is None:
                continue
            window = merge(parts)
            self._lead = self._lead_shard(model, group)
            outcome = self.batch.run(model, window, repeatable=True)
            if outcome.status in ("ok", "failed") and window is not None:
                outcome.n, outcome.event_time = window.n, window.last_time
                self._on_check(outcome)
            self._settle(model, group, outcome.status != "error")

    def _on_check(self, check: CheckOutcome) -> None:
        """A judged scheduled check: its failures go to the rules of its lead
        shard (see :meth:`_lead_shard`), else to process-level ones."""
        lead = self._lead
        state = self.pipeline.shards.get(lead) if lead is not None else None
        rules = state.rules if state is not None else self._model_rules
        self._write(BatchOutput(signals=check.signals, decisions=observe(check, rules)))
        if lead is not None:
            self._mark_dirty(*lead)

    def _service(self) -> None:
        """Between batches (loop thread): judge windows left closed (restored
        with a shard after a crash, on a partition that has received nothing
        since), then run the scheduled checks that fell due."""
        for st in self.sources:
            for source, n in [k for k, v in self.pipeline.shards.items() if _waiting(v)]:
                if source == st.source.name:
                    self._judge_closed(st, n)
        self._judge_groups()
        due: set[str] = set()
        while True:
            try:
                due.add(self._due.get_nowait())
            except queue.Empty:
                break
        for model in sorted(due):
            self.scheduled_check(model)

    def _process(self, st: _SourceState, records: Sequence[object]) -> None:
        t0 = time.perf_counter()
        out = self.pipeline.process(records, st.source.name)  # type: ignore[arg-type]
        for dl in out.dead:
            st.source.dead_letter(
                dl.partition, dl.offset, dl.payload, f"{dl.reason_code}: {dl.reason}"
            )
        self._write(out)
        st.positions.update(out.positions)
        st.partition_shard.update(out.shards)
        st.dirty.update(out.shards.values())
        for n in set(out.shards.values()):
            self._judge_closed(st, n)
        elapsed = time.perf_counter() - t0
        self.metrics.batch_seconds.observe(elapsed)
        self.metrics.event_seconds.observe(elapsed / len(records))

    def _judge_closed(self, st: _SourceState, n: int, final: bool = False) -> None:
        """Judge the windows shard ``n`` closed itself (``window_rows`` /
        ``window_seconds``), oldest first, in the loop thread: the shard's own
        rules take the signals, and a window is dropped only once its check is
        stored, so a crash judges it again (same check, same signal keys: no
        second decision). ``final``: also close and judge the open windows (a
        finished replay). Blocks for the checks (the loop's backpressure)."""
        state = self.pipeline.shards.get((st.source.name, n))
        if state is None or state.windows is None:
            return
        windows = state.windows
        if final:
            for m in self.config.models:
                if m.batch is not None and m.batch.closed_by_events:
                    windows.close(m.name)
        for w in [w for w in windows.closed if w.group is None]:
            check = self.batch.run_closed(w)
            if check.status in ("ok", "failed"):
                self._write(
                    BatchOutput(signals=check.signals, decisions=observe(check, state.rules))
                )
            windows.ack(w.model, w.seq)
            st.dirty.add(n)

    def _write(self, out: BatchOutput) -> None:
        """Store what a batch derived (one transaction) and report it."""
        rows = [
            DecisionRow(
                d.idempotency_key,
                d.rule,
                d.model,
                d.model_version,
                d.severity,
                d.event_time,
                decision_payload(d),
                [("action", a) for a in d.actions] + [("alert", a) for a in d.alerts],
                self._cooldowns[d.rule],
                d.outcome,
                d.resolves,
                self._max_concurrent[d.rule],
                *self._model_limits(d.model),
            )
            for d in out.decisions
        ]
        written = self.store.write_batch(out.dead, iter_signal_rows(out.signals), rows)
        for key, why in written.suppressed_by.items():
            log.info("decision %s suppressed: %s", key, why, extra={"decision": key})
        self._report(out, written.decisions, written.suppressed, written.silenced, written.resolved)
        fired = set(written.decisions)
        for d in out.decisions:
            if d.severity == "critical" and d.rule != ROLLBACK_RULE and d.idempotency_key in fired:
                self._critical_rollback(d.model, d.model_version, d.rule, d.idempotency_key)

    def _model_limits(self, model: str) -> tuple[float, int | None, float]:
        """DecisionRow's per-model fields: action cooldown, retrains in flight."""
        m = self.config.model(model)
        if m is None:
            return (0.0, None, 86400.0)
        return (m.action_cooldown_seconds, m.max_concurrent_retrains, m.retrain_timeout_seconds)

    # -- new model versions: rollback ------------------------------------------------
    def _critical_rollback(self, model: str, version: str, rule: str, key: str) -> None:
        """A critical decision about a candidate version rolls it back."""
        row = self.store.model_version(model, version)
        if row is not None and row["status"] == "candidate":
            self._rollback(row, f"critical rule {rule!r} fired", {"decision_id": key})

    def _check_versions(self) -> None:
        """Compare each candidate version with the one it replaced, on the
        error tallies of this process's shards, at the looks of the
        group-sequential schedule (``versions.sequential_look``): roll back one
        that is worse at a look, promote one that passed ``promote_after_looks``."""
        c = model_versions.c
        for row in self.store.rows(model_versions, c.status == "candidate"):
            model = self.config.model(row["model"])
            if model is None or row["previous_version"] is None:
                continue
            vc = model.versions or VersionsConfig()
            tallies = self.pipeline.error_tallies(model.name)
            cand, prev = tallies.get(row["version"]), tallies.get(row["previous_version"])
            if cand is None or prev is None:
                continue
            done = int(row["looks"] or 0)
            look = sequential_look(
                model.task,
                cand,
                prev,
                vc.rollback_margin,
                vc.rollback_alpha,
                vc.min_outcomes,
                done,
            )
            if look is None:
                continue
            # Claimed atomically: with several processes, each look is made once.
            if not self.store.record_looks(
                model.name, row["version"], done, look.looks, look.describe()
            ):
                continue
            log.info(
                "model %s: candidate %s vs %s, %s",
                model.name,
                row["version"],
                row["previous_version"],
                look.describe(),
                extra={"model": model.name, "model_version": row["version"]},
            )
            if look.comparison.worse:
                detail = {**look.detail(), "n_candidate": cand[0], "n_previous": prev[0]}
                detail |= {"margin": vc.rollback_margin, "alpha": vc.rollback_alpha}
                self._rollback(row, "worse than the previous version", detail)
            elif look.looks >= vc.promote_after_looks:
                self._promote(row, look.looks)

    def _promote(self, row: dict[str, Any], looks: int) -> None:
        """A candidate that passed its looks becomes active; the previous one retires."""
        model, version = row["model"], row["version"]
        if not self.store.promote_version(model, version):
            return
        self.metrics.version_promotions.labels(model).inc()
        log.warning(
            "model %s: candidate %s promoted to active after %d looks; %s retired",
            model,
            version,
            looks,
            row["previous_version"],
            extra={"model": model, "model_version": version},
        )

    def _rollback(self, row: dict[str, Any], reason: str, detail: dict[str, Any]) -> None:
        model, version = row["model"], row["version"]
        cfg = self.config.model(model)
        vc = (cfg.versions if cfg is not None else None) or VersionsConfig()
        dec = rollback_row(
            model,
            version,
            row["previous_version"],
            list(vc.rollback_actions),
            self._clock(),
            reason,
            detail,
        )
        written = self.store.write_batch(decs=[dec])
        self.store.update_version(
            model, version, status="rolled_back", rollback_key=dec.idempotency_key
        )
        outcome = "replayed"  # stored before (a restart): nothing new
        for name, keys in (
            ("fired", written.decisions),
            ("silenced", written.silenced),
            ("suppressed", written.suppressed),
        ):
            if keys:
                outcome = name
        self.metrics.decisions.labels(ROLLBACK_RULE, model, outcome).inc()
        log.warning(
            "decision %s: rollback of %s %s (to %s): %s; actions: %s",
            dec.idempotency_key,
            model,
            version,
            row["previous_version"],
            reason,
            ", ".join(vc.rollback_actions) or "none",
            extra={"decision": dec.idempotency_key, "model": model, "rule": ROLLBACK_RULE},
        )
        if written.decisions:
            self.dispatcher.wake()

    def _report(
        self,
        out: BatchOutput,
        new_decisions: list[str],
        suppressed: list[str],
        silenced: list[str],
        resolved: list[str],
    ) -> None:
        m = self.metrics
        for labels, n in out.counts.items():
            kind = labels[0]
            if kind == "events":
                m.events.labels(labels[1], labels[2]).inc(n)
            elif kind == "invalid":
                m.invalid.labels(labels[1], labels[2], labels[3]).inc(n)
            elif kind == "updates":
                m.detector_updates.labels(labels[1], "all").inc(n)
            elif kind == "missing":
                m.missing_values.labels(labels[1]).inc(n)
            elif kind == "unexpected":
                m.unexpected_features.labels(labels[1]).inc(n)
        for dl in out.dead:
            m.dead_letters.labels(dl.model or "unknown", dl.stream).inc()
            self._invalid_log.warning(
                f"{dl.stream}:{dl.reason_code}",
                "bad %s record at %s@%d: %s",
                dl.stream,
                dl.partition,
                dl.offset,
                dl.reason,
            )
        for s in out.signals:
            m.signals.labels(s.model, s.model_version, s.target, s.detector).inc()
            log.info(
                "drift detected: model=%s version=%s target=%s detector=%s %s=%.4g at event %d",
                s.model,
                s.model_version,
                s.target,
                s.detector,
                s.statistic,
                s.value,
                s.position,
                extra={"model": s.model, "model_version": s.model_version},
            )
        outcomes = {k: "fired" for k in new_decisions}
        outcomes.update({k: "suppressed" for k in suppressed})
        outcomes.update({k: "silenced" for k in silenced})
        outcomes.update({k: "resolved" for k in resolved})
        fresh = set(new_decisions) | set(resolved)
        for d in out.decisions:
            outcome = outcomes.get(d.idempotency_key, "replayed")
            m.decisions.labels(d.rule, d.model, outcome).inc()
            if outcome == "fired":
                log.warning(
                    "decision %s: rule %s fired for %s %s on %d signal(s); actions: %s; alerts: %s",
                    d.idempotency_key,
                    d.rule,
                    d.model,
                    d.model_version,
                    len(d.signals),
                    ", ".join(d.actions) or "none",
                    ", ".join(d.alerts) or "none",
                    extra={"decision": d.idempotency_key, "model": d.model, "rule": d.rule},
                )
        preds, outs = self.pipeline.join_sizes()
        m.join_buffer.labels("predictions").set(preds)
        m.join_buffer.labels("outcomes").set(outs)
        if fresh:
            self.dispatcher.wake()

    def checkpoint(self, only: tuple[_SourceState, frozenset[int]] | None = None) -> None:
        """Write changed shards' state with their positions in one transaction,
        then let the sources commit those positions. ``only`` limits it to some
        shards of one source (a rebalance). A source whose dead letters cannot
        be flushed (its broker is away) sits this round out: nothing of it is
        written or committed, its shards stay dirty, the next checkpoint tries
        again; the failure is logged (rate-limited) and counted. Safe to repeat."""
        # What a source raises when its broker fails (the daemon has no other
        # use for the Kafka contract, hence imported here).
        from connectors.kafka_backend import BackendError

        t0 = time.perf_counter()
        cps: list[Checkpoint] = []
        todo = [(only[0], set(only[1]))] if only else [(st, set(st.dirty)) for st in self.sources]
        flushed: list[tuple[_SourceState, set[int]]] = []
        for st, shards in todo:
            try:
                st.source.flush_dead_letters()  # before positions move past them
            except BackendError as exc:
                name = st.source.name
                self.metrics.dead_letter_flush_failures.labels(name).inc()
                self._invalid_log.warning(
                    f"dead-letter-flush:{name}",
                    "source %s: %s; its checkpoint is skipped until they are delivered",
                    name,
                    exc,
                )
                continue
            flushed.append((st, shards))
        for st, shards in flushed:
            name = st.source.name
            for n in sorted(shards):
                if (name, n) not in self.pipeline.shards:
                    continue
                positions = {
                    p: o for p, o in st.positions.items() if st.partition_shard.get(p) == n
                }
                cps.append(
                    Checkpoint(
                        shard_key(name, n),
                        positions,
                        self.pipeline.dump_shard((name, n)),
                        STATE_VERSION,
                    )
                )
        if cps:
            self.store.save_checkpoints(cps)
        for st, shards in flushed:
            if shards:
                st.source.commit(
                    {p: o for p, o in st.positions.items() if st.partition_shard.get(p) in shards}
                )
            st.dirty -= shards
        for st, _ in todo:
            lag = getattr(st.source, "lag", None)
            if callable(lag):
                for partition, value in lag().items():
                    self.metrics.consumer_lag.labels(st.source.name, partition).set(value)
        self._export_join_stats()
        if only is None:
            self._check_versions()
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - t0)
        self.metrics.last_checkpoint.set(self._clock())

    def _export_join_stats(self) -> None:
        # The pipeline keeps running totals (checkpointed state); the counter
        # gets what was added since the last export.
        for result, value in self.pipeline.join_stats().items():
            delta = value - self._exported.get(result, 0)
            if delta > 0:
                self.metrics.join_events.labels(result).inc(delta)
            self._exported[result] = value

    def _print_summary(self) -> None:
        from monitor.summary import render_summary

        print(
            render_summary(self.store, self.pipeline.totals(), self.pipeline.join_stats()),
            flush=True,
        )


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("driftd")
    except Exception:
        return "dev"


def _waiting(state: ShardState) -> bool:
    return state.windows is not None and any(w.group is None for w in state.windows.closed)


def observe(check: CheckOutcome, rules: Sequence[Rule]) -> list[Decision]:
    """What ``rules`` decide on one judged batch check: each failure as a
    signal, then the check itself (persistence over checks) and the passing
    of event time (resolution)."""
    decisions = [d for s in check.signals for r in rules if (d := r.observe(s)) is not None]
    marker = Signal(
        f"{check.model}|check|{check.check_ids}",
        check.model,
        "*",
        "check",
        "check",
        "failed",
        float(bool(check.signals)),
        check.n,
        check.event_time,
    )
    for r in rules:
        for dec in (
            r.observe_check(check.model, check.signals, marker),
            r.tick(check.model, check.event_time),
        ):
            if dec is not None:
                decisions.append(dec)
    return decisions
