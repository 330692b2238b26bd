"""The join buffer: either side first, TTL in event time, bounded size."""

from __future__ import annotations

import json
import pickle
from typing import Any

from connectors.base import OUTCOMES, PREDICTIONS, Record
from monitor.join import JoinBuffer


def test_prediction_then_outcome() -> None:
    j: JoinBuffer[str, str] = JoinBuffer(ttl_seconds=100, max_size=10)
    assert j.add_prediction("a", 0.0, "P") is None
    assert j.add_outcome("a", 5.0, "O") == "P"
    assert j.stats.matched == 1
    assert len(j) == 0


def test_outcome_then_prediction() -> None:
    j: JoinBuffer[str, str] = JoinBuffer(ttl_seconds=100, max_size=10)
    assert j.add_outcome("a", 5.0, "O") is None
    assert j.add_prediction("a", 4.0, "P") == "O"
    assert len(j) == 0


def test_ttl_expiry_counts_expired_and_orphans() -> None:
    j: JoinBuffer[str, str] = JoinBuffer(ttl_seconds=10, max_size=100)
    j.add_prediction("p-old", 0.0, "P")
    j.add_outcome("o-old", 1.0, "O")
    j.add_prediction("p-new", 20.0, "P")  # watermark 20: everything before 10 expires
    assert j.stats.expired_predictions == 1
    assert j.stats.orphan_outcomes == 1
    assert len(j) == 1
    assert j.add_outcome("p-old", 21.0, "O") is None  # too late: becomes an orphan candidate
    assert j.waiting_outcomes == 1


def test_max_size_evicts_oldest_and_stays_bounded() -> None:
    j: JoinBuffer[int, int] = JoinBuffer(ttl_seconds=1e9, max_size=50)
    for i in range(10_000):
        j.add_prediction(i, float(i), i)
        if i % 3 == 0:
            j.add_outcome(-i - 1, float(i), i)  # outcomes with no prediction
        assert len(j) <= 50
    assert j.stats.overflow_evictions > 0
    assert j.stats.expired_predictions + j.stats.orphan_outcomes == j.stats.overflow_evictions
    # the newest prediction is still there
    assert j.add_outcome(9999, 1e4, 0) == 9999


def test_duplicate_outcome_counted() -> None:
    j: JoinBuffer[str, str] = JoinBuffer(ttl_seconds=100, max_size=10)
    j.add_outcome("a", 1.0, "O")
    assert j.add_outcome("a", 2.0, "O2") is None
    assert j.stats.duplicate_outcomes == 1


def test_migrate_predictions_keeps_order_and_times() -> None:
    j: JoinBuffer[object, str] = JoinBuffer(ttl_seconds=100, max_size=10)
    for i, value in enumerate(["old-a", ("new",), "old-b"]):
        j.add_prediction(i, float(i), value)

    changed = j.migrate_predictions(lambda v: (v,) if isinstance(v, str) else None)

    assert changed == 2
    assert list(j._predictions.items()) == [
        (0, (0.0, ("old-a",))),
        (1, (1.0, ("new",))),
        (2, (2.0, ("old-b",))),
    ]


def _pipeline_and_records() -> tuple[Any, list[Record]]:
    from monitor.config import parse_config
    from monitor.pipeline import Pipeline

    config = parse_config(
        {
            "storage": {"url": "sqlite://"},
            "sources": [{"type": "file", "name": "f", "predictions": "p.jsonl"}],
            "models": [
                {
                    "name": "m",
                    "task": "classification",
                    "features": {"x": "numeric"},
                }
            ],
        }
    )
    preds = [
        Record(PREDICTIONS, json.dumps(p).encode(), "p", i)
        for i, p in enumerate(
            {
                "model": "m",
                "model_version": "v7",
                "prediction_id": f"p{i}",
                "timestamp": 1000.0 + i,
                "features": {"x": 0.5},
                "prediction": "a",
                "score": 0.25,
            }
            for i in range(3)
        )
    ]
    return Pipeline(config), preds


def test_a_checkpoint_with_legacy_waiting_predictions_still_joins() -> None:
    # Checkpoints written before the join held plain tuples hold Waiting
    # objects: loaded, they are turned into tuples and join as before.
    from monitor.pipeline import Waiting

    pipe, preds = _pipeline_and_records()
    pipe.process(preds, "f")
    state = pipe.shards[("f", 0)]
    fresh = pickle.dumps(state)
    state.join.migrate_predictions(lambda t: Waiting(*t))
    assert all(isinstance(v, Waiting) for _ts, v in state.join._predictions.values())
    legacy = pickle.dumps(state)

    outcome = Record(
        OUTCOMES,
        b'{"model":"m","prediction_id":"p1","timestamp":1010.0,"label":"b"}',
        "o",
        0,
    )
    results = []
    for blob in (fresh, legacy):
        pipe.load_shard(("f", 0), blob)
        loaded = pipe.shards[("f", 0)].join._predictions
        assert [type(v) for _ts, v in loaded.values()] == [tuple] * 3
        out = pipe.process([outcome], "f")
        results.append((out.counts, pipe.shards[("f", 0)].counts, len(pipe.shards[("f", 0)].join)))
    assert results[0] == results[1]
    assert results[0][0][("joined", "m")] == 1
