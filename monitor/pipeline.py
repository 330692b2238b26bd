"""The per-event path: decode, validate, detect, join; then rules.

Processing steps, each pure (no I/O, no clock) and therefore safe to repeat
from a checkpoint:

1. ``Pipeline.process(records)`` decodes and validates every record, feeds
   valid predictions to the detectors of their model version, joins
   outcomes to predictions and feeds the error stream. It returns a
   :class:`BatchOutput`: dead letters, signals, decisions and counts.
2. The run loop (``monitor.daemon``) writes the output to the store in one
   transaction and updates the metrics.

State lives in :class:`ShardState` objects (one per shard: a file replay has
one, Kafka one per partition): detectors, the join, the rules' windows and
counts. All of it pickles, so a checkpoint is the pickled state next to the
source positions it reflects, and a shard's state moves with its partition
between processes. What must hold across shards (a rule's cooldown per
model) is enforced by the store when a decision is written.
"""

from __future__ import annotations

import pickle
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.base import OUTCOMES, PREDICTIONS, Record
from detectors.base import StreamDetector
from detectors.registry import make_detector
from monitor.config import DriftdConfig, ModelConfig, target_kind
from monitor.events import (
    InvalidEvent,
    ModelSchema,
    OutcomeEvent,
    PredictionEvent,
    decode,
    epoch_seconds,
)
from monitor.join import JoinBuffer
from monitor.store import DeadLetter
from monitor.windows import WindowBuffer, window_spec
from triggers.base import Decision, Rule, Signal
from triggers.registry import make_rule

STATE_VERSION = 2

# One detector on one value stream: (target label, detector type, spec index, detector).
Slot = tuple[str, str, int, StreamDetector]


class VersionState:
    """Detectors of one model version in one shard."""

    __slots__ = (
        "_fns",
        "categorical",
        "err_n",
        "err_sq",
        "err_sum",
        "error",
        "n",
        "n_outcomes",
        "numeric",
        "score",
    )

    def __init__(self, model: ModelConfig, schema: ModelSchema) -> None:
        self.n = 0  # predictions seen
        self.n_outcomes = 0  # joined outcomes seen
        # Per-event errors of the joined outcomes (0/1, or |prediction - label|):
        # count, sum and sum of squares, for comparing versions (rollback).
        self.err_n = 0
        self.err_sum = 0.0
        self.err_sq = 0.0
        self.numeric: list[list[Slot]] = [[] for _ in schema.numeric]
        self.categorical: list[list[Slot]] = [[] for _ in schema.categorical]
        self.score: list[Slot] = []
        self.error: list[Slot] = []
        for index, spec in enumerate(model.detectors):
            for target in spec.on:
                for label, slots in self._targets(target, model, schema):
                    slots.append((label, spec.type, index, make_detector(spec.type, spec.params)))
        self._bind()

    def _bind(self) -> None:
        # Bound ``update`` methods next to their slots, per value position:
        # the hot loop then does no attribute lookups. Rebuilt on unpickle.
        self._fns: tuple[list[list[tuple[Any, Slot]]], ...] = tuple(
            [[(slot[3].update, slot) for slot in slots] for slots in group]
            for group in (self.numeric, self.categorical, [self.score], [self.error])
        )

    def __getstate__(self) -> tuple[Any, ...]:
        return (
            self.n,
            self.n_outcomes,
            self.numeric,
            self.categorical,
            self.score,
            self.error,
            (self.err_n, self.err_sum, self.err_sq),
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.n, self.n_outcomes, self.numeric, self.categorical, self.score, self.error = state[:6]
        # Checkpoints written before the error tallies existed have 6 fields.
        self.err_n, self.err_sum, self.err_sq = state[6] if len(state) > 6 else (0, 0.0, 0.0)
        self._bind()

    def _targets(
        self, target: str, model: ModelConfig, schema: ModelSchema
    ) -> list[tuple[str, list[Slot]]]:
        if target == "numeric_features":
            return [(f"feature:{f}", self.numeric[i]) for i, f in enumerate(schema.numeric)]
        if target == "categorical_features":
            return [(f"feature:{f}", self.categorical[i]) for i, f in enumerate(schema.categorical)]
        if target == "score":
            return [("score", self.score)]
        if target == "error":
            return [("error", self.error)]
        name = target[len("feature:") :]
        if target_kind(model, target) == "numeric":
            return [(target, self.numeric[schema.numeric.index(name)])]
        return [(target, self.categorical[schema.categorical.index(name)])]


@dataclass
class Waiting:
    """What the join keeps of a prediction until its outcome arrives."""

    model_version: str
    prediction: float | str | bool
    position: int  # the prediction's position among its version's events
    score: float | None = None
    segment: str | None = None  # the batch segment_by feature's value


@dataclass
class ShardState:
    """Everything one shard has accumulated: detectors, join, counts."""

    join: JoinBuffer[Waiting, tuple[float, Any]]
    rules: list[Rule]
    # Current windows for batch checks (None when no model has batch checks).
    windows: WindowBuffer | None = None
    versions: dict[str, OrderedDict[str, VersionState]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class BatchOutput:
    dead: list[DeadLetter] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    # Metric increments: (metric, labels...) -> amount.
    counts: Counter[tuple[str, ...]] = field(default_factory=Counter)
    # Next offset to read per partition, and each partition's shard.
    positions: dict[str, int] = field(default_factory=dict)
    shards: dict[str, int] = field(default_factory=dict)


class Pipeline:
    def __init__(self, config: DriftdConfig) -> None:
        self.config = config
        self.models = {m.name: m for m in config.models}
        self.schemas = {m.name: ModelSchema(m) for m in config.models}
        # Keyed by (source name, shard): two sources never share join state.
        self.shards: dict[tuple[str, int], ShardState] = {}
        self._max_versions = config.runtime.max_versions_per_model
        self._source = ""
        # Where each model's batch segment_by value sits among its categorical values.
        self._segment_index = {
            m.name: m.categorical_features().index(m.batch.segment_by)
            for m in config.models
            if m.batch is not None and m.batch.segment_by is not None
        }
        # Newest event time per (shard, model) in the batch being processed.
        self._latest: dict[tuple[tuple[str, int], str], float] = {}

    # -- state --------------------------------------------------------------
    def shard(self, n: tuple[str, int]) -> ShardState:
        state = self.shards.get(n)
        if state is None:
            j = self.config.join
            rules = [make_rule(r) for r in self.config.rules]
            state = self.shards[n] = ShardState(JoinBuffer(j.ttl_seconds, j.max_size), rules)
            batch = [m.batch for m in self.config.models if m.batch is not None]
            if batch:
                state.windows = WindowBuffer(
                    specs={
                        m.name: window_spec(m.batch)
                        for m in self.config.models
                        if m.batch is not None
                    },
                    # Not hash(): str hashes differ between processes.
                    seed=zlib.crc32(f"{n[0]}/{n[1]}".encode()),
                )
        return state

    def dump_shard(self, n: tuple[str, int]) -> bytes:
        return pickle.dumps(self.shard(n), protocol=pickle.HIGHEST_PROTOCOL)

    def load_shard(self, n: tuple[str, int], blob: bytes) -> None:
        # Our own checkpoint from our own store: trusted bytes.
        self.shards[n] = pickle.loads(blob)

    def drop_shard(self, n: tuple[str, int]) -> None:
        self.shards.pop(n, None)

    def _version(self, state: ShardState, model: ModelConfig, version: str) -> VersionState:
        versions = state.versions.get(model.name)
        if versions is None:
            versions = state.versions[model.name] = OrderedDict()
        vs = versions.get(version)
        if vs is None:
            vs = versions[version] = VersionState(model, self.schemas[model.name])
            if len(versions) > self._max_versions:
                versions.popitem(last=False)  # least recently used version goes
        else:
            versions.move_to_end(version)
        return vs

    # -- the per-event path ---------------------------------------------------
    def process(self, records: Sequence[Record], source: str = "") -> BatchOutput:
        """Run one batch of ``source``'s records through the per-event path. Pure."""
        out = BatchOutput()
        self._source = source
        counts = out.counts
        signals = out.signals
        for rec in records:
            out.positions[rec.partition] = rec.offset + 1
            out.shards[rec.partition] = rec.shard
            first_new = len(signals)
            try:
                if rec.stream == PREDICTIONS:
                    self._prediction(rec, out)
                elif rec.stream == OUTCOMES:
                    self._outcome(rec, out)
                else:
                    raise InvalidEvent("stream", f"unknown stream {rec.stream!r}")
            except InvalidEvent as exc:
                model = exc.model or "unknown"
                counts[("invalid", model, rec.stream, exc.code)] += 1
                self.shard((source, rec.shard)).counts[f"invalid:{model}:{rec.stream}"] += 1
                out.dead.append(
                    DeadLetter(
                        rec.partition,
                        rec.offset,
                        rec.stream,
                        exc.model,
                        exc.code,
                        str(exc),
                        _raw(rec.value),
                    )
                )
            if len(signals) > first_new:
                for rule in self.shard((source, rec.shard)).rules:
                    for sig in signals[first_new:]:
                        decision = rule.observe(sig)
                        if decision is not None:
                            out.decisions.append(decision)
        # Event time moved on: rules with hysteresis may resolve.
        for (shard_key, model_name), now in self._latest.items():
            for rule in self.shards[shard_key].rules:
                resolved = rule.tick(model_name, now)
                if resolved is not None:
                    out.decisions.append(resolved)
        self._latest.clear()
        return out

    def _prediction(self, rec: Record, out: BatchOutput) -> None:
        ev = decode(PREDICTIONS, rec.value)
        assert isinstance(ev, PredictionEvent)
        schema = self.schemas.get(ev.model)
        if schema is None:
            raise InvalidEvent("unknown_model", f"model: unknown model {ev.model!r}")
        ts = epoch_seconds(ev.timestamp)
        numeric, categorical, score, unexpected = schema.check_prediction(ev)
        version = str(ev.model_version)
        model = schema.config
        shard_key = (self._source, rec.shard)
        state = self.shard(shard_key)
        self._latest[(shard_key, model.name)] = ts
        vs = self._version(state, model, version)
        vs.n += 1
        n = vs.n
        updates = missing = 0
        signals = out.signals
        numeric_fns, categorical_fns, (score_fns,), _ = vs._fns
        for values, fns_by_index in ((numeric, numeric_fns), (categorical, categorical_fns)):
            for x, fns in zip(values, fns_by_index, strict=True):
                if x is None:
                    missing += 1
                    continue
                for update, slot in fns:
                    if update(x):
                        signals.append(_signal(shard_key, model.name, version, slot, n, ts))
                updates += len(fns)
        if score is not None:
            for update, slot in score_fns:
                if update(score):
                    signals.append(_signal(shard_key, model.name, version, slot, n, ts))
            updates += len(score_fns)
        counts = out.counts
        counts[("events", model.name, PREDICTIONS)] += 1
        if updates:
            counts[("updates", model.name)] += updates
        if missing:
            counts[("missing", model.name)] += missing
        if unexpected:
            counts[("unexpected", model.name)] += unexpected
        state.counts[f"events:{model.name}:{PREDICTIONS}"] += 1
        if state.windows is not None and model.batch is not None:
            state.windows.add(
                model.name, version, ev.prediction_id, numeric, categorical, score, ts, unexpected
            )
        segment_at = self._segment_index.get(model.name)
        segment = categorical[segment_at] if segment_at is not None else None
        waiting = state.join.add_prediction(
            (model.name, ev.prediction_id), ts, Waiting(version, ev.prediction, n, score, segment)
        )
        if waiting is not None:
            self._joined(
                state,
                schema,
                version,
                ev.prediction,
                n,
                waiting[1],
                waiting[0],
                out,
                score,
                segment,
                shard=shard_key,
            )

    def _outcome(self, rec: Record, out: BatchOutput) -> None:
        ev = decode(OUTCOMES, rec.value)
        assert isinstance(ev, OutcomeEvent)
        schema = self.schemas.get(ev.model)
        if schema is None:
            raise InvalidEvent("unknown_model", f"model: unknown model {ev.model!r}")
        ts = epoch_seconds(ev.timestamp)
        if schema.task == "regression":
            schema.error(0.0, ev.label)  # validates the label before it is held
        shard_key = (self._source, rec.shard)
        state = self.shard(shard_key)
        self._latest[(shard_key, ev.model)] = ts
        out.counts[("events", ev.model, OUTCOMES)] += 1
        state.counts[f"events:{ev.model}:{OUTCOMES}"] += 1
        pred = state.join.add_outcome((ev.model, ev.prediction_id), ts, (ts, ev.label))
        if pred is not None:
            self._joined(
                state,
                schema,
                pred.model_version,
                pred.prediction,
                pred.position,
                ev.label,
                ts,
                out,
                pred.score,
                pred.segment,
                shard=shard_key,
            )

    def _joined(
        self,
        state: ShardState,
        schema: ModelSchema,
        version: str,
        prediction: Any,
        position: int,
        label: Any,
        ts: float,
        out: BatchOutput,
        score: float | None = None,
        segment: str | None = None,
        *,
        shard: tuple[str, int],
    ) -> None:
        model = schema.config
        versions = state.versions.get(model.name)
        vs = versions.get(version) if versions is not None else None
        if vs is None:
            return  # that version's detectors were evicted (LRU); its errors no longer matter
        vs.n_outcomes += 1
        try:
            err = schema.error(prediction, label)
        except InvalidEvent:
            return  # the outcome was validated on arrival; the prediction's type is the mismatch
        vs.err_n += 1
        vs.err_sum += err
        vs.err_sq += err * err
        for update, slot in vs._fns[3][0]:
            if update(err):
                # Positioned at the prediction whose outcome tripped it, so
                # every signal of a version counts in the same events.
                out.signals.append(
                    _signal(shard, model.name, version, slot, position, ts, vs.n_outcomes)
                )
        if vs.error:
            out.counts[("updates", model.name)] += len(vs.error)
        if state.windows is not None and model.batch is not None:
            state.windows.add_labeled(
                model.name, prediction, label, score, ts, len(model.features), segment
            )
        out.counts[("joined", model.name)] += 1

    # -- views ------------------------------------------------------------------
    def join_sizes(self) -> tuple[int, int]:
        preds = sum(s.join.waiting_predictions for s in self.shards.values())
        outs = sum(s.join.waiting_outcomes for s in self.shards.values())
        return preds, outs

    def join_stats(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for s in self.shards.values():
            total.update(s.join.stats.as_dict())
        return dict(total)

    def error_tallies(self, model: str) -> dict[str, tuple[int, float, float]]:
        """Per version of ``model``: joined outcomes, error sum and sum of
        squares, merged across this process's shards."""
        out: dict[str, tuple[int, float, float]] = {}
        for s in self.shards.values():
            for version, vs in s.versions.get(model, {}).items():
                n, total, sq = out.get(version, (0, 0.0, 0.0))
                out[version] = (n + vs.err_n, total + vs.err_sum, sq + vs.err_sq)
        return out

    def totals(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for s in self.shards.values():
            total.update(s.counts)
        return dict(total)


def _signal(
    shard: tuple[str, int],
    model: str,
    version: str,
    slot: Slot,
    position: int,
    ts: float,
    seq: int | None = None,
) -> Signal:
    """A signal with a key that a replay re-derives exactly (``seq`` disambiguates
    error signals, whose positions need not grow)."""
    target, dtype, index, det = slot
    statistic, value = det.statistic()
    return Signal(
        # Positions count per shard: the shard keeps keys of different shards apart.
        key=f"{shard[0]}/{shard[1]}|{model}|{version}|{target}|{dtype}|{index}|"
        f"{position if seq is None else seq}",
        model=model,
        model_version=version,
        target=target,
        detector=dtype,
        statistic=statistic,
        value=value,
        position=position,
        event_time=ts,
        details=det.details(),
    )


def _raw(value: bytes | Mapping[str, Any]) -> bytes:
    if isinstance(value, bytes):
        return value
    import json

    return json.dumps(dict(value), default=str, sort_keys=True).encode()


def decision_payload(d: Decision) -> dict[str, Any]:
    """The JSON body of a decision, as stored and as sent to actions and alerts."""
    return {
        "decision_id": d.idempotency_key,
        "idempotency_key": d.idempotency_key,
        "outcome": d.outcome,
        "resolves": d.resolves,
        "rule": d.rule,
        "model": d.model,
        "model_version": d.model_version,
        "severity": d.severity,
        "event_time": d.event_time,
        "signals": [
            {
                "target": s.target,
                "detector": s.detector,
                "statistic": s.statistic,
                "value": s.value if s.value == s.value else None,
                "position": s.position,
                "event_time": s.event_time,
                **({"report": s.details["report"]} if "report" in s.details else {}),
            }
            for s in d.signals
        ],
        "actions": list(d.actions),
        "alerts": list(d.alerts),
    }


def iter_signal_rows(sigs: Iterable[Signal]) -> Iterable[Any]:
    from monitor.store import SignalRow

    for s in sigs:
        yield SignalRow(
            s.key,
            s.model,
            s.model_version,
            s.target,
            s.detector,
            s.statistic,
            s.value,
            s.details,
            s.position,
            s.event_time,
        )
