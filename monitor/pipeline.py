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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import call, itemgetter
from typing import Any

import msgspec

from connectors.base import OUTCOMES, PREDICTIONS, Record
from detectors.base import StreamDetector
from detectors.registry import make_detector
from monitor.config import DriftdConfig, ModelConfig, target_kind
from monitor.events import (
    InvalidEvent,
    ModelSchema,
    OutcomeEvent,
    PredictionEvent,
    RawPrediction,
    decode,
    decode_outcome_json,
    decode_prediction_json,
    decode_raw_prediction_json,
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
# A prediction's detector feed: the detectors' hot update callables in feed
# order, their slots, and which value each takes from [*numeric, *categorical,
# score]: a picker, or None when the values line up with the callables as they
# are (one detector per value, the common case), and the plain index list.
Plan = tuple[list[Callable[[Any], bool]], list[Slot], Callable[[list[Any]], Any] | None, list[int]]


class VersionState:
    """Detectors of one model version in one shard."""

    __slots__ = (
        "_err",
        "_plans",
        "_stale",
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
        # The per-event plans (never pickled: rebuilt on unpickle, and after a
        # detection, when a detector may hand out another callable). A
        # prediction's values are fed in the order numeric positions,
        # categorical positions, score; at one position its detectors in
        # config order, as always. ``_plans[False]`` is for a prediction
        # without a score, ``_plans[True]`` with one.
        fns: list[Callable[[Any], bool]] = []
        slots: list[Slot] = []
        take: list[int] = []
        steady = True
        groups = (*self.numeric, *self.categorical, self.score)
        for position, group in enumerate(groups):
            for slot in group:
                fn, ok = slot[3].hot_update()
                steady = steady and ok
                fns.append(fn)
                slots.append(slot)
                take.append(position)
        n_score = len(self.score)
        cut = len(fns) - n_score
        self._plans: tuple[Plan, Plan] = (
            _plan(fns[:cut], slots[:cut], take[:cut]),
            _plan(fns, slots, take),
        )
        self._err: list[tuple[Callable[[Any], bool], Slot]] = []
        for slot in self.error:
            fn, ok = slot[3].hot_update()
            steady = steady and ok
            self._err.append((fn, slot))
        # Not steady: some callable is good for one value only; bind again
        # before the next event.
        self._stale = not steady

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


def _plan(fns: list[Callable[[Any], bool]], slots: list[Slot], take: list[int]) -> Plan:
    pick: Callable[[list[Any]], Any] | None
    if take == list(range(len(take))):
        pick = None  # map() stops at the shorter: a trailing score None is never fed
    elif len(take) == 1:
        only = take[0]
        pick = lambda values: (values[only],)  # noqa: E731 - itemgetter(i) gives no tuple
    else:
        pick = itemgetter(*take)
    return fns, slots, pick, take


class _Model:
    """What the per-event path needs of one model, looked up once per event."""

    __slots__ = (
        "batch",
        "config",
        "events_out",
        "events_pred",
        "joined",
        "missing",
        "n_features",
        "name",
        "schema",
        "segment_at",
        "shard_out",
        "shard_pred",
        "unexpected",
        "updates",
    )

    def __init__(self, config: ModelConfig, schema: ModelSchema, segment_at: int | None) -> None:
        name = self.name = config.name
        self.config = config
        self.schema = schema
        self.batch = config.batch is not None
        self.n_features = len(config.features)
        self.segment_at = segment_at
        # Counter keys, built once rather than per event.
        self.events_pred = ("events", name, PREDICTIONS)
        self.events_out = ("events", name, OUTCOMES)
        self.updates = ("updates", name)
        self.missing = ("missing", name)
        self.unexpected = ("unexpected", name)
        self.joined = ("joined", name)
        self.shard_pred = f"events:{name}:{PREDICTIONS}"
        self.shard_out = f"events:{name}:{OUTCOMES}"


#: What the join keeps of a prediction until its outcome arrives:
#: (model_version, prediction, position among its version's events, score,
#: the batch segment_by feature's value). A plain tuple of atoms, not a class:
#: the collector stops tracking such a tuple once it survived a collection,
#: and a join holds up to max_size of them per shard (as class instances they
#: were rescanned by every full collection: ~20% of the Kafka path).
WaitingPrediction = tuple[str, float | str | bool, int, float | None, str | None]


@dataclass
class Waiting:
    """Legacy form of :data:`WaitingPrediction`, in checkpoints written before
    it; :meth:`Pipeline.load_shard` turns them into tuples."""

    model_version: str
    prediction: float | str | bool
    position: int
    score: float | None = None
    segment: str | None = None


def _legacy_waiting(value: Any) -> WaitingPrediction | None:
    """A :class:`Waiting` of an older checkpoint as a tuple; None if it is one."""
    if isinstance(value, Waiting):
        return (value.model_version, value.prediction, value.position, value.score, value.segment)
    return None


@dataclass
class ShardState:
    """Everything one shard has accumulated: detectors, join, counts."""

    join: JoinBuffer[WaitingPrediction, tuple[float, Any]]
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
        # Where each model's batch segment_by value sits among its categorical values.
        self._segment_index = {
            m.name: m.categorical_features().index(m.batch.segment_by)
            for m in config.models
            if m.batch is not None and m.batch.segment_by is not None
        }
        # Newest event time per (shard, model) in the batch being processed.
        self._latest: dict[tuple[tuple[str, int], str], float] = {}
        self._models = {
            m.name: _Model(m, self.schemas[m.name], self._segment_index.get(m.name))
            for m in config.models
        }

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
        state: ShardState = pickle.loads(blob)
        state.join.migrate_predictions(_legacy_waiting)
        self.shards[n] = state

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
        counts = out.counts
        signals = out.signals
        positions = out.positions
        shards = out.shards
        # Records of one batch nearly always share a shard: look it up on change.
        shard_n: int | None = None
        shard_key = (source, 0)
        state: ShardState | None = None
        for rec in records:
            partition = rec.partition
            positions[partition] = rec.offset + 1
            shards[partition] = n = rec.shard
            if n != shard_n or state is None:
                shard_n = n
                shard_key = (source, n)
                state = self.shard(shard_key)
            first_new = len(signals)
            stream = rec.stream
            try:
                if stream == PREDICTIONS:
                    self._prediction(rec, state, shard_key, out)
                elif stream == OUTCOMES:
                    self._outcome(rec, state, shard_key, out)
                else:
                    raise InvalidEvent("stream", f"unknown stream {stream!r}")
            except InvalidEvent as exc:
                model = exc.model or "unknown"
                counts[("invalid", model, stream, exc.code)] += 1
                state.counts[f"invalid:{model}:{stream}"] += 1
                out.dead.append(
                    DeadLetter(
                        partition,
                        rec.offset,
                        stream,
                        exc.model,
                        exc.code,
                        str(exc),
                        _raw(rec.value),
                    )
                )
            if len(signals) > first_new:
                for rule in state.rules:
                    for sig in signals[first_new:]:
                        decision = rule.observe(sig)
                        if decision is not None:
                            out.decisions.append(decision)
        # Event time moved on: rules with hysteresis may resolve.
        for (key, model_name), now in self._latest.items():
            for rule in self.shards[key].rules:
                resolved = rule.tick(model_name, now)
                if resolved is not None:
                    out.decisions.append(resolved)
        self._latest.clear()
        return out

    def _prediction(
        self, rec: Record, state: ShardState, shard_key: tuple[str, int], out: BatchOutput
    ) -> None:
        value = rec.value
        ev: PredictionEvent | RawPrediction
        raw = m = features = None
        if type(value) is bytes:
            # The common event in one msgspec pass per part: all but the
            # features, then the features as the model's typed struct. If
            # that fails, the general decode and check (below) take it from
            # the start, so errors and counts are theirs. A second
            # "features" key is left to them too: msgspec would keep the last
            # and not type-check the first.
            try:
                raw = decode_raw_prediction_json(value)
            except msgspec.DecodeError:
                pass
            else:
                m = self._models.get(raw.model)
                if m is not None and value.count(b'"features"') == 1:
                    features = m.schema.features_of(raw)
        if features is not None and raw is not None and m is not None:
            ev = raw
            ts = raw.timestamp
            if type(ts) is not float:
                ts = epoch_seconds(ts)  # a datetime (JSON numbers are finite)
            numeric, categorical, score, unexpected, missing = m.schema.check_features(
                raw, features
            )
        else:
            event, m, ts, finite = _envelope_of(
                self._models, value, decode_prediction_json, PredictionEvent, PREDICTIONS
            )
            ev = event
            numeric, categorical, score, unexpected, missing = m.schema.check(event, finite)
        version = str(ev.model_version)
        name = m.name
        self._latest[(shard_key, name)] = ts
        versions = state.versions.get(name)
        vs = versions.get(version) if versions is not None else None
        if vs is None or versions is None:
            vs = self._version(state, m.config, version)
        else:
            versions.move_to_end(version)  # least recently used goes first
        vs.n = n = vs.n + 1
        if vs._stale:
            vs._bind()
        fns, slots, pick, take = vs._plans[score is not None]
        updates = 0
        if fns:
            values = [*numeric, *categorical, score]
            if missing:
                updates = self._feed_missing(
                    vs, fns, slots, take, values, shard_key, name, version, n, ts, out
                )
            else:
                # One C loop calls every detector on its value, in feed order.
                hits = list(map(call, fns, values if pick is None else pick(values)))
                updates = len(fns)
                if any(hits):
                    for j, hit in enumerate(hits):
                        if hit:
                            self._detected(vs, slots[j], shard_key, name, version, n, ts, out)
        counts = out.counts
        counts[m.events_pred] += 1
        if updates:
            counts[m.updates] += updates
        if missing:
            counts[m.missing] += missing
        if unexpected:
            counts[m.unexpected] += unexpected
        state.counts[m.shard_pred] += 1
        if state.windows is not None and m.batch:
            state.windows.add(
                name, version, ev.prediction_id, numeric, categorical, score, ts, unexpected
            )
        segment_at = m.segment_at
        segment = categorical[segment_at] if segment_at is not None else None
        prediction = ev.prediction
        waiting = state.join.add_prediction(
            (name, ev.prediction_id), ts, (version, prediction, n, score, segment)
        )
        if waiting is not None:
            self._joined(
                state,
                m,
                version,
                prediction,
                n,
                waiting[1],
                waiting[0],
                out,
                score,
                segment,
                shard=shard_key,
            )

    def _feed_missing(
        self,
        vs: VersionState,
        fns: list[Callable[[Any], bool]],
        slots: list[Slot],
        take: list[int],
        values: list[Any],
        shard_key: tuple[str, int],
        name: str,
        version: str,
        n: int,
        ts: float,
        out: BatchOutput,
    ) -> int:
        """The feed of a prediction with missing values: they are skipped."""
        updates = 0
        for j, position in enumerate(take):
            x = values[position]
            if x is None:
                continue
            updates += 1
            if fns[j](x):
                self._detected(vs, slots[j], shard_key, name, version, n, ts, out)
        return updates

    def _detected(
        self,
        vs: VersionState,
        slot: Slot,
        shard_key: tuple[str, int],
        name: str,
        version: str,
        position: int,
        ts: float,
        out: BatchOutput,
        seq: int | None = None,
    ) -> None:
        slot[3].hot_detected()
        vs._stale = True  # the detector may hand out another callable now
        out.signals.append(_signal(shard_key, name, version, slot, position, ts, seq))

    def _outcome(
        self, rec: Record, state: ShardState, shard_key: tuple[str, int], out: BatchOutput
    ) -> None:
        ev, m, ts, _ = _envelope_of(
            self._models, rec.value, decode_outcome_json, OutcomeEvent, OUTCOMES
        )
        schema = m.schema
        label = ev.label
        if schema.task == "regression":
            schema.error(0.0, label)  # validates the label before it is held
        name = m.name
        self._latest[(shard_key, name)] = ts
        out.counts[m.events_out] += 1
        state.counts[m.shard_out] += 1
        # (ev.model, not name: the same key, and the same checkpoint bytes as before.)
        pred = state.join.add_outcome((ev.model, ev.prediction_id), ts, (ts, label))
        if pred is not None:
            version, prediction, position, score, segment = pred
            self._joined(
                state,
                m,
                version,
                prediction,
                position,
                label,
                ts,
                out,
                score,
                segment,
                shard=shard_key,
            )

    def _joined(
        self,
        state: ShardState,
        m: _Model,
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
        name = m.name
        versions = state.versions.get(name)
        vs = versions.get(version) if versions is not None else None
        if vs is None:
            return  # that version's detectors were evicted (LRU); its errors no longer matter
        vs.n_outcomes += 1
        try:
            err = m.schema.error(prediction, label)
        except InvalidEvent:
            return  # the outcome was validated on arrival; the prediction's type is the mismatch
        vs.err_n += 1
        vs.err_sum += err
        vs.err_sq += err * err
        if vs._stale:
            vs._bind()
        err_fns = vs._err
        for update, slot in err_fns:
            if update(err):
                # Positioned at the prediction whose outcome tripped it, so
                # every signal of a version counts in the same events.
                self._detected(vs, slot, shard, name, version, position, ts, out, vs.n_outcomes)
        if err_fns:
            out.counts[m.updates] += len(err_fns)
        if state.windows is not None and m.batch:
            state.windows.add_labeled(name, prediction, label, score, ts, m.n_features, segment)
        out.counts[m.joined] += 1

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


def _envelope_of(
    models: dict[str, Any], value: Any, fast: Callable[[bytes], Any], kind: type[Any], stream: str
) -> tuple[Any, Any, float, bool]:
    """An event decoded (JSON bytes by ``fast``, else the general ``decode``,
    which names the problem), its model, its event time in epoch seconds, and
    whether its numbers are known finite (JSON numbers are: see
    ``decode_prediction_json``). Raises :class:`InvalidEvent`."""
    if type(value) is bytes:
        finite = True
        try:
            event = fast(value)
        except msgspec.DecodeError:
            event = _decoded(kind, decode(stream, value))
    else:
        finite = False
        event = _decoded(kind, decode(stream, value))
    m = models.get(event.model)
    if m is None:
        raise InvalidEvent("unknown_model", f"model: unknown model {event.model!r}")
    ts = event.timestamp
    if type(ts) is not float or not (finite or ts - ts == 0.0):
        ts = epoch_seconds(ts)  # a datetime; or raises for NaN and infinity
    return event, m, ts, finite


def _decoded(kind: type[Any], event: PredictionEvent | OutcomeEvent) -> Any:
    # decode() returns the event type of the stream it was given.
    assert isinstance(event, kind)
    return event


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
