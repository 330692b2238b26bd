"""Bad input: every bad record is dead-lettered with its reason; the good ones all count."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from prometheus_client import CollectorRegistry

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.store import dead_letters, signals
from tests.helpers import DEMO, demo_config_text

BAD = [
    (b"{this is not json", "malformed"),
    (b'{"model": "credit-risk", "model_version": "v1"}', "schema"),  # missing fields
    (
        b'{"model":"credit-risk","model_version":"v1","prediction_id":"x1","timestamp":"soon",'
        b'"features":{},"prediction":"repaid"}',
        "schema",
    ),  # wrong type
    (
        b'{"model":"fraud","model_version":"v1","prediction_id":"x2","timestamp":1767225600,'
        b'"features":{},"prediction":"repaid"}',
        "unknown_model",
    ),
    (
        b'{"model":"credit-risk","model_version":"v1","prediction_id":"x3","timestamp":NaN,'
        b'"features":{},"prediction":"repaid"}',
        "malformed",
    ),  # NaN is not JSON
    (
        b'{"model":"credit-risk","model_version":"v1","prediction_id":"x4","timestamp":1767225600,'
        b'"features":{"income":"lots"},"prediction":"repaid"}',
        "feature_type",
    ),
    (
        b'{"model":"credit-risk","model_version":"v1","prediction_id":"x5","timestamp":1767225600,'
        b'"features":{},"prediction":"repaid","score":1e999}',
        "schema",
    ),  # inf
    (
        b'{"model":"credit-risk","model_version":"v1","prediction_id":"x6","timestamp":1767225600,'
        b'"features":{},"prediction":"repaid","surprise":1}',
        "schema",
    ),  # extra field
    (b"[]", "schema"),
    (b"\xff\xfe\x00garbage", "malformed"),
]


def test_bad_lines_are_dead_lettered_and_the_rest_processed(tmp_path: Path) -> None:
    good = (DEMO / "predictions.jsonl").read_bytes().splitlines()[:13000]
    lines: list[bytes] = []
    for i, line in enumerate(good):
        lines.append(line)
        if i % 1000 == 500:
            lines.append(BAD[(i // 1000) % len(BAD)][0])
    preds = tmp_path / "predictions.jsonl"
    preds.write_bytes(b"\n".join(lines) + b"\n")
    outcomes = tmp_path / "outcomes.jsonl"
    outcomes.write_bytes(
        (DEMO / "outcomes.jsonl").read_bytes()[:200_000].rsplit(b"\n", 1)[0]
        + b'\n{"model":"credit-risk","prediction_id":"p1","timestamp":1767225700}\n'  # no label
    )
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(demo_config_text(tmp_path / "d.db", predictions=preds, outcomes=outcomes))
    cfg = load_config(cfg_path)
    registry = CollectorRegistry()
    daemon = Daemon(cfg, registry=registry)
    assert daemon.run(serve_http=False) == 0

    totals = daemon.pipeline.totals()
    assert totals["events:credit-risk:predictions"] == 13000
    bad_count = sum(1 for i in range(13000) if i % 1000 == 500)
    rows = daemon.store.rows(dead_letters, order_by=dead_letters.c.id)
    assert len(rows) == bad_count + 1
    expected_codes = [BAD[(i // 1000) % len(BAD)][1] for i in range(13000) if i % 1000 == 500]
    pred_rows = [r for r in rows if r["stream"] == "predictions"]
    assert [r["reason_code"] for r in pred_rows] == expected_codes
    for r in pred_rows:
        assert r["payload"] in {b for b, _ in BAD}
        assert r["reason"]  # a message naming the problem
    out_row = next(r for r in rows if r["stream"] == "outcomes")
    assert out_row["reason_code"] == "schema" and "label" in out_row["reason"]
    unknown = next(r for r in rows if r["reason_code"] == "unknown_model")
    assert "unknown model 'fraud'" in unknown["reason"]

    # metrics by reason, and the detection still happened
    value = registry.get_sample_value(
        "driftd_events_invalid_total",
        {"model": "unknown", "stream": "predictions", "reason": "malformed"},
    )
    assert value == expected_codes.count("malformed")
    value = registry.get_sample_value(
        "driftd_events_invalid_total",
        {"model": "credit-risk", "stream": "predictions", "reason": "feature_type"},
    )
    assert value == expected_codes.count("feature_type")
    assert (
        registry.get_sample_value(
            "driftd_events_total", {"model": "credit-risk", "stream": "predictions"}
        )
        == 13000
    )
    assert daemon.store.count(signals) > 0


def test_csv_and_parquet_replays_match_jsonl(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # 4000 predictions around the drift point (prediction 12000), so that
    # all three formats must also agree on what they detect.
    lines = (DEMO / "predictions.jsonl").read_bytes().splitlines()[10000:14000]
    rows = [json.loads(line) for line in lines]
    flat = []
    for r in rows:
        f = {k: v for k, v in r.items() if k != "features"}
        f.update({f"features.{k}": v for k, v in r["features"].items()})
        flat.append(f)
    csv_path = tmp_path / "p.csv"
    import csv

    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    pq_path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pq_path)
    jsonl_path = tmp_path / "p.jsonl"
    jsonl_path.write_bytes(b"\n".join(msgspec.json.encode(r) for r in rows))

    results = {}
    for path in (jsonl_path, csv_path, pq_path):
        cfg_path = tmp_path / f"{path.suffix}.toml"
        text = demo_config_text(tmp_path / f"{path.suffix}.db", predictions=path)
        text = text.replace(f'outcomes = "{DEMO / "outcomes.jsonl"}"\n', "")
        cfg_path.write_text(text)
        daemon = Daemon(load_config(cfg_path), registry=CollectorRegistry())
        daemon.run(serve_http=False)
        results[path.suffix] = (
            daemon.pipeline.totals(),
            [(r["target"], r["detector"], r["position"]) for r in daemon.store.rows(signals)],
        )
    assert results[".jsonl"][0]["events:credit-risk:predictions"] == 4000
    assert results[".jsonl"][1], "the drift at 12000 should be detected"
    assert results[".csv"] == results[".jsonl"]
    assert results[".parquet"] == results[".jsonl"]
