"""Current windows for batch checks, kept per shard in bounded memory.

Each shard keeps, per model, a uniform sample (reservoir sampling, Algorithm
R) of the predictions since the window opened, capped at ``max_rows``, plus
exact counts that need no sample (rows, missing values per feature, duplicate
prediction ids among recent ones). Joined outcomes get their own sample for
performance checks. A window is handed over with :meth:`WindowBuffer.take`,
which also opens the next one (tumbling), or kept and read with
:meth:`WindowBuffer.peek` (the last ``max_rows`` rows when sliding).

Windows pickle with their shard, so they survive restarts and move with a
partition; a model-level check merges the windows of every shard (see
:func:`merge`). The sampler's random generator is seeded and pickled too, so
a replay after a crash samples the same rows.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Row = tuple[tuple[float | None, ...], tuple[str | None, ...], float | None, float]
# prediction, label, score, event time, segment (the segment_by feature's value)
Labeled = tuple[Any, Any, float | None, float, str | None]


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


@dataclass
class WindowBuffer:
    """The open window of each model in one shard."""

    max_rows: int
    sliding: bool = False
    # How many recent prediction ids are remembered to count duplicates.
    id_memory: int = 100_000
    seed: int = 0
    windows: dict[str, Window] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=random.Random)
    _ids: OrderedDict[Any, None] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self._rng.seed(self.seed)

    def _window(self, model: str, n_features: int) -> Window:
        w = self.windows.get(model)
        if w is None:
            w = self.windows[model] = Window(model, missing=[0] * n_features)
            if self.sliding:
                w.rows = deque(maxlen=self.max_rows)  # type: ignore[assignment]
                w.labeled = deque(maxlen=self.max_rows)  # type: ignore[assignment]
        return w

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
        """Count one valid prediction and maybe keep it in the sample. Cheap."""
        w = self._window(model, len(numeric) + len(categorical))
        w.n += 1
        w.versions.add(version)
        if ts < w.first_time:
            w.first_time = ts
        if ts > w.last_time:
            w.last_time = ts
        w.unexpected += unexpected
        key = (model, prediction_id)
        ids = self._ids
        if key in ids:
            w.duplicates += 1
        else:
            ids[key] = None
            if len(ids) > self.id_memory:
                ids.popitem(last=False)
        row = (tuple(numeric), tuple(categorical), score, ts)
        if None in row[0] or None in row[1]:
            for i, v in enumerate((*numeric, *categorical)):
                if v is None:
                    w.missing[i] += 1
        self._sample(w.rows, row, w.n)

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
        w = self._window(model, n_features)
        w.n_labeled += 1
        self._sample(w.labeled, (prediction, label, score, ts, segment), w.n_labeled)

    def _sample(self, sample: list[Any], item: Any, seen: int) -> None:
        if self.sliding or len(sample) < self.max_rows:
            sample.append(item)
            return
        j = self._rng.randrange(seen)
        if j < self.max_rows:
            sample[j] = item

    def take(self, model: str) -> Window | None:
        """Close ``model``'s window and return it (sliding: a copy; it stays open)."""
        w = self.windows.get(model)
        if w is None:
            return None
        if self.sliding:
            return peek_copy(w)
        del self.windows[model]
        return w

    def peek(self, model: str) -> Window | None:
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
