"""Current windows for batch checks, kept per shard in bounded memory.

Each shard keeps, per model, the open window in the shape its
:class:`WindowSpec` asks for:

- **tumbling** (the default): a uniform sample (reservoir sampling, Algorithm R)
  of the predictions since the window opened, capped at ``max_rows``, plus exact
  counts that need no sample (rows, missing values per feature, duplicate
  prediction ids among recent ones). Without a length the schedule closes it
  (:meth:`WindowBuffer.take`); with ``rows`` it closes itself when the Nth
  prediction arrives, with ``seconds`` when the first event of a later
  event-time bucket arrives. Self-closed windows wait in
  :attr:`WindowBuffer.closed`, numbered, until the check that judged them is
  stored and :meth:`WindowBuffer.ack` drops them: a crash in between judges
  the same window again, never loses it.
- **sliding**: the newest ``rows`` predictions, or those of the last
  ``seconds`` of event time (at most ``max_rows``), with their counts kept
  exact by subtracting what leaves; read with :meth:`WindowBuffer.peek`.

Joined outcomes get their own sample for performance checks. Windows pickle
with their shard, so they survive restarts and move with a partition; a
model-level check merges the windows of every shard (see :func:`merge`). The
sampler's random generator is seeded and pickled too, so a replay after a
crash samples the same rows.
"""

from __future__ import annotations

import math
import random
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.config import BatchConfig

Row = tuple[tuple[float | None, ...], tuple[str | None, ...], float | None, float]
# prediction, label, score, event time, segment (the segment_by feature's value)
Labeled = tuple[Any, Any, float | None, float, str | None]


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """How one model's windows are cut (see ``BatchConfig``)."""

    sliding: bool = False
    rows: int | None = None
    seconds: float | None = None
    max_rows: int = 20_000

    def __post_init__(self) -> None:
        if self.rows is not None and self.seconds is not None:
            raise ValueError("WindowSpec: set rows or seconds, not both")
        if self.max_rows < 1 or (self.rows is not None and self.rows < 1):
            raise ValueError("WindowSpec: rows and max_rows must be positive")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError("WindowSpec: seconds must be positive")

    @property
    def closed_by_events(self) -> bool:
        return not self.sliding and (self.rows is not None or self.seconds is not None)


def window_spec(batch: BatchConfig) -> WindowSpec:
    return WindowSpec(
        batch.window == "sliding", batch.window_rows, batch.window_seconds, batch.window_max_rows
    )


@dataclass
class Window:
    """What one shard saw of one model in one window."""

    model: str
    rows: list[Row] = field(default_factory=list)
    labeled: list[Labeled] = field(default_factory=list)
    n: int = 0  # predictions seen (the sample holds at most max_rows of them)
    n_labeled: int = 0
    missing: list[int] = field(default_factory=list)  # per numeric + categorical feature
    unexpected: int = 0
    duplicates: int = 0
    versions: set[str] = field(default_factory=set)
    first_time: float = float("inf")
    last_time: float = float("-inf")
    # The ordinal of a closed window among its shard's windows of the model.
    seq: int = -1
    # Closed for a scheduled check: the check's id, shared by the windows of
    # every shard that check merges (None: closed by itself).
    group: int | None = None


@dataclass
class _Sliding:
    """The newest predictions of one model, with counts kept exact as rows leave."""

    model: str
    rows: deque[Row] = field(default_factory=deque)
    # Per row: (model version, unexpected keys, duplicate id?) to subtract on eviction.
    marks: deque[tuple[str, int, bool]] = field(default_factory=deque)
    labeled: deque[Labeled] = field(default_factory=deque)
    missing: list[int] = field(default_factory=list)
    unexpected: int = 0
    duplicates: int = 0
    versions: Counter[str] = field(default_factory=Counter)

    def add(
        self, row: Row, version: str, unexpected: int, duplicate: bool, spec: WindowSpec
    ) -> None:
        self.rows.append(row)
        self.marks.append((version, unexpected, duplicate))
        self.unexpected += unexpected
        self.duplicates += duplicate
        self.versions[version] += 1
        if None in row[0] or None in row[1]:
            for i, v in enumerate((*row[0], *row[1])):
                if v is None:
                    self.missing[i] += 1
        limit = min(spec.rows or spec.max_rows, spec.max_rows)
        oldest = row[3] - spec.seconds if spec.seconds is not None else -math.inf
        rows = self.rows
        while len(rows) > limit or rows[0][3] <= oldest:
            self._evict()

    def _evict(self) -> None:
        old = self.rows.popleft()
        version, unexpected, duplicate = self.marks.popleft()
        self.unexpected -= unexpected
        self.duplicates -= duplicate
        self.versions[version] -= 1
        if not self.versions[version]:
            del self.versions[version]
        if None in old[0] or None in old[1]:
            for i, v in enumerate((*old[0], *old[1])):
                if v is None:
                    self.missing[i] -= 1

    def add_labeled(self, item: Labeled, spec: WindowSpec) -> None:
        labeled = self.labeled
        labeled.append(item)
        limit = min(spec.rows or spec.max_rows, spec.max_rows)
        oldest = item[3] - spec.seconds if spec.seconds is not None else -math.inf
        while len(labeled) > limit or labeled[0][3] <= oldest:
            labeled.popleft()

    def snapshot(self) -> Window:
        times = [r[3] for r in self.rows]
        return Window(
            self.model,
            list(self.rows),
            list(self.labeled),
            len(self.rows),
            len(self.labeled),
            list(self.missing),
            self.unexpected,
            self.duplicates,
            set(self.versions),
            min(times, default=float("inf")),
            max(times, default=float("-inf")),
        )


@dataclass
class WindowBuffer:
    """The open window of each model in one shard.

    ``specs`` gives each model's :class:`WindowSpec`; a model without one gets
    ``WindowSpec(sliding, max_rows=max_rows)``."""

    max_rows: int = 20_000
    sliding: bool = False
    # How many recent prediction ids are remembered to count duplicates.
    id_memory: int = 100_000
    seed: int = 0
    specs: dict[str, WindowSpec] = field(default_factory=dict)
    windows: dict[str, Window] = field(default_factory=dict)
    slides: dict[str, _Sliding] = field(default_factory=dict)
    # Self-closed windows not yet judged, oldest first.
    closed: list[Window] = field(default_factory=list)
    _rng: random.Random = field(default_factory=random.Random)
    _ids: OrderedDict[Any, None] = field(default_factory=OrderedDict)
    _next_seq: dict[str, int] = field(default_factory=dict)
    _bucket_end: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)
        self._default = WindowSpec(self.sliding, max_rows=self.max_rows)

    def spec(self, model: str) -> WindowSpec:
        return self.specs.get(model, self._default)

    def _window(self, model: str, n_features: int) -> Window:
        w = self.windows.get(model)
        if w is None:
            w = self.windows[model] = Window(model, missing=[0] * n_features)
        return w

    def _slide(self, model: str, n_features: int) -> _Sliding:
        s = self.slides.get(model)
        if s is None:
            s = self.slides[model] = _Sliding(model, missing=[0] * n_features)
        return s

    def _duplicate(self, model: str, prediction_id: Any) -> bool:
        key = (model, prediction_id)
        ids = self._ids
        if key in ids:
            return True
        ids[key] = None
        if len(ids) > self.id_memory:
            ids.popitem(last=False)
        return False

    def add(
        self,
        model: str,
        version: str,
        prediction_id: Any,
        numeric: Sequence[float | None],
        categorical: Sequence[str | None],
        score: float | None,
        ts: float,
        unexpected: int,
    ) -> None:
        """Count one valid prediction and maybe keep it in the sample. Cheap.
        May close the model's window (into :attr:`closed`)."""
        spec = self.spec(model)
        n_features = len(numeric) + len(categorical)
        row = (tuple(numeric), tuple(categorical), score, ts)
        duplicate = self._duplicate(model, prediction_id)
        if spec.sliding:
            self._slide(model, n_features).add(row, version, unexpected, duplicate, spec)
            return
        if spec.seconds is not None:
            end = self._bucket_end.get(model)
            if end is None or ts >= end:
                if end is not None:
                    self.close(model)
                # Buckets align to multiples of the length; an event later than
                # the open bucket starts the one it falls in (empty ones are skipped).
                self._bucket_end[model] = (math.floor(ts / spec.seconds) + 1) * spec.seconds
        w = self._window(model, n_features)
        w.n += 1
        w.versions.add(version)
        if ts < w.first_time:
            w.first_time = ts
        if ts > w.last_time:
            w.last_time = ts
        w.unexpected += unexpected
        w.duplicates += duplicate
        if None in row[0] or None in row[1]:
            for i, v in enumerate((*numeric, *categorical)):
                if v is None:
                    w.missing[i] += 1
        self._sample(w.rows, row, w.n, spec.max_rows)
        if spec.rows is not None and w.n >= spec.rows:
            self.close(model)

    def add_labeled(
        self,
        model: str,
        prediction: Any,
        label: Any,
        score: float | None,
        ts: float,
        n_features: int,
        segment: str | None = None,
    ) -> None:
        spec = self.spec(model)
        item = (prediction, label, score, ts, segment)
        if spec.sliding:
            self._slide(model, n_features).add_labeled(item, spec)
            return
        w = self._window(model, n_features)
        w.n_labeled += 1
        self._sample(w.labeled, item, w.n_labeled, spec.max_rows)

    def _sample(self, sample: list[Any], item: Any, seen: int, max_rows: int) -> None:
        if len(sample) < max_rows:
            sample.append(item)
            return
        j = self._rng.randrange(seen)
        if j < max_rows:
            sample[j] = item

    def close(self, model: str, group: int | None = None) -> Window | None:
        """Close ``model``'s open tumbling window into :attr:`closed` (numbered,
        in ``group`` for a scheduled check); the next prediction opens a new
        one. None if nothing was open."""
        w = self.windows.pop(model, None)
        if w is None:
            return None
        w.seq = self._next_seq.get(model, 0)
        w.group = group
        self._next_seq[model] = w.seq + 1
        self.closed.append(w)
        return w

    def reopen(self, model: str, seq: int) -> None:
        """Put closed window ``seq`` back into the open one (its check failed: it
        is judged again with what comes next). Samples beyond ``max_rows`` are
        thinned at random. Safe to repeat."""
        found = [w for w in self.closed if w.model == model and w.seq == seq]
        if not found:
            return
        self.ack(model, seq)
        back = found[0]
        back.seq, back.group = -1, None
        current = self.windows.get(model)
        if current is not None:
            merged = merge([back, current])
            assert merged is not None
            back = merged
            back.seq, back.group = -1, None
        max_rows = self.spec(model).max_rows
        if len(back.rows) > max_rows:
            back.rows = self._rng.sample(back.rows, max_rows)
        if len(back.labeled) > max_rows:
            back.labeled = self._rng.sample(back.labeled, max_rows)
        self.windows[model] = back

    def ack(self, model: str, seq: int) -> None:
        """The check of closed window ``seq`` is stored: forget the window. Safe to repeat."""
        self.closed = [w for w in self.closed if not (w.model == model and w.seq == seq)]

    def has_open(self, model: str) -> bool:
        """Whether ``model`` has an open window here (no copy made)."""
        return model in self.windows or model in self.slides

    def take(self, model: str) -> Window | None:
        """Close ``model``'s window and return it (sliding: a copy; it stays open)."""
        if self.spec(model).sliding:
            return self.peek(model)
        return self.windows.pop(model, None)

    def peek(self, model: str) -> Window | None:
        if self.spec(model).sliding:
            s = self.slides.get(model)
            return s.snapshot() if s is not None else None
        w = self.windows.get(model)
        return peek_copy(w) if w is not None else None


def peek_copy(w: Window) -> Window:
    return Window(
        w.model,
        list(w.rows),
        list(w.labeled),
        w.n,
        w.n_labeled,
        list(w.missing),
        w.unexpected,
        w.duplicates,
        set(w.versions),
        w.first_time,
        w.last_time,
        w.seq,
        w.group,
    )


def merge(windows: Iterable[Window]) -> Window | None:
    """One model-level window from the windows of several shards.

    Samples are concatenated (each shard's sample is uniform over that shard;
    shards of one topic carry similar volumes, and counts stay exact).
    """
    out: Window | None = None
    for w in windows:
        if out is None:
            out = peek_copy(w)
            continue
        out.rows.extend(w.rows)
        out.labeled.extend(w.labeled)
        out.n += w.n
        out.n_labeled += w.n_labeled
        out.missing = [a + b for a, b in zip(out.missing, w.missing, strict=True)]
        out.unexpected += w.unexpected
        out.duplicates += w.duplicates
        out.versions |= w.versions
        out.first_time = min(out.first_time, w.first_time)
        out.last_time = max(out.last_time, w.last_time)
    return out
