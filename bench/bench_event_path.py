"""Throughput of driftd's per-event path next to river's ADWIN alone.

    python bench/bench_event_path.py [--events 1000000] [--features 20] [--repeat 1]

Generates a seeded stream (N predictions with F numeric features, a mean
shift on 3 features at N/2, outcomes for half of the predictions arriving
later) as JSONL, then measures, each part in its own process (peak RSS is
per part):

- ``driftd``: the daemon's loop on a file replay: read, decode + validate
  (msgspec), F numeric features + the score through ADWIN, join outcomes,
  the error stream through DDM, metrics, batch writes to SQLite;
- ``pipeline``: the same minus file reading and the store (records in memory);
- ``river``: F+1 river ADWIN on the same values, already parsed (the floor);
- ``decode``: msgspec decoding of the same lines, nothing else.

``--repeat N`` runs each part N times (interleaved) and reports the run of
median time: on a shared machine single runs vary by 20% and more.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def generate(out: Path, n: int, n_features: int, seed: int = 7) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(n, n_features))
    x[n // 2 :, :3] += 0.5  # drift on 3 features at the midpoint
    score = 1.0 / (1.0 + np.exp(-x[:, :5].sum(axis=1) / 3))
    names = [f"f{i:02d}" for i in range(n_features)]
    start = 1767225600.0
    with (out / "predictions.jsonl").open("w") as fp, (out / "outcomes.jsonl").open("w") as fo:
        for i in range(n):
            features = dict(zip(names, np.round(x[i], 5).tolist(), strict=True))
            event = {
                "model": "bench",
                "model_version": "v1",
                "prediction_id": f"p{i}",
                "timestamp": start + i * 0.01,
                "features": features,
                "prediction": "yes" if score[i] > 0.5 else "no",
                "score": round(float(score[i]), 5),
            }
            fp.write(json.dumps(event, separators=(",", ":")) + "\n")
            if i % 2 == 0:
                label = "yes" if rng.random() < score[i] else "no"
                fo.write(
                    json.dumps(
                        {
                            "model": "bench",
                            "prediction_id": f"p{i}",
                            "timestamp": start + i * 0.01 + 5.0,
                            "label": label,
                        },
                        separators=(",", ":"),
                    )
                    + "\n"
                )
    (out / "features.json").write_text(json.dumps(names))


def config_text(data: Path, names: list[str]) -> str:
    feats = ", ".join(f'{n} = "numeric"' for n in names)
    return f"""
[storage]
url = "sqlite:///{data / "bench.db"}"
[runtime]
batch_size = 5000
checkpoint_interval_seconds = 30.0
drain_timeout_seconds = 0
[join]
ttl_seconds = 60.0
[[sources]]
type = "file"
name = "bench"
predictions = "{data / "predictions.jsonl"}"
outcomes = "{data / "outcomes.jsonl"}"
[[models]]
name = "bench"
task = "classification"
features = {{ {feats} }}
  [[models.detectors]]
  type = "adwin"
  on = ["numeric_features", "score"]
  [[models.detectors]]
  type = "ddm"
  on = ["error"]
  params = {{ warm_start = 1000 }}
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def part_driftd(data: Path) -> dict[str, float]:
    from prometheus_client import CollectorRegistry

    from monitor.config import load_config
    from monitor.daemon import Daemon

    cfg = data / "bench.toml"
    cfg.write_text(config_text(data, json.loads((data / "features.json").read_text())))
    (data / "bench.db").unlink(missing_ok=True)
    daemon = Daemon(load_config(cfg), registry=CollectorRegistry())
    import contextlib
    import io

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        daemon.run(serve_http=False)
    elapsed = time.perf_counter() - t0
    totals = daemon.pipeline.totals()
    events = sum(v for k, v in totals.items() if k.startswith("events:"))
    from monitor.store import signals

    return {"events": events, "seconds": elapsed, "signals": daemon.store.count(signals)}


def part_pipeline(data: Path) -> dict[str, float]:
    from connectors.file_replay import FileReplay
    from monitor.config import load_config
    from monitor.pipeline import Pipeline

    cfg = data / "bench.toml"
    cfg.write_text(config_text(data, json.loads((data / "features.json").read_text())))
    src = FileReplay("bench", data / "predictions.jsonl", data / "outcomes.jsonl")
    src.open({})
    batches = []
    while not src.exhausted:
        batch = src.poll(5000, 0.1)
        if batch:
            batches.append(batch)
    pipeline = Pipeline(load_config(cfg))
    t0 = time.perf_counter()
    n_signals = 0
    for batch in batches:
        n_signals += len(pipeline.process(batch, "bench").signals)
    elapsed = time.perf_counter() - t0
    return {"events": sum(map(len, batches)), "seconds": elapsed, "signals": n_signals}


def part_river(data: Path) -> dict[str, float]:
    import msgspec
    from river.drift import ADWIN

    names = json.loads((data / "features.json").read_text())
    rows = [
        msgspec.json.decode(line) for line in (data / "predictions.jsonl").read_bytes().splitlines()
    ]
    columns = [[r["features"][n] for r in rows] + [] for n in names] + [[r["score"] for r in rows]]
    del rows
    detectors = [ADWIN() for _ in columns]
    n = len(columns[0])
    hits = 0
    t0 = time.perf_counter()
    for i in range(n):
        for det, col in zip(detectors, columns, strict=True):
            det.update(col[i])
            if det.drift_detected:
                hits += 1
    elapsed = time.perf_counter() - t0
    return {"events": n, "seconds": elapsed, "signals": hits}


def part_decode(data: Path) -> dict[str, float]:
    from monitor.events import decode

    lines = (data / "predictions.jsonl").read_bytes().splitlines()
    t0 = time.perf_counter()
    for line in lines:
        decode("predictions", line)
    return {"events": len(lines), "seconds": time.perf_counter() - t0, "signals": 0}


PARTS = {
    "driftd": part_driftd,
    "pipeline": part_pipeline,
    "river": part_river,
    "decode": part_decode,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1, help="runs per part; the median is shown")
    parser.add_argument("--part", choices=sorted(PARTS))
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.part:
        result = PARTS[args.part](Path(args.data))
        result["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        t0 = time.perf_counter()
        generate(data, args.events, args.features)
        print(
            f"generated {args.events} predictions (+{(args.events + 1) // 2} outcomes), "
            f"{args.features} numeric features, in {time.perf_counter() - t0:.1f}s"
        )
        print(
            f"{'part':<10} {'events':>9} {'seconds':>8} {'events/s':>10} {'us/event':>9} {'peak MB':>8} {'signals':>7}"
        )
        names = ("driftd", "pipeline", "river", "decode")
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for _ in range(max(1, args.repeat)):
            for name in names:
                out = subprocess.run(
                    [sys.executable, __file__, "--part", name, "--data", str(data)],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
                runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for name in names:
            median = statistics.median_low(r["seconds"] for r in runs[name])
            r = next(r for r in runs[name] if r["seconds"] == median)
            rate = r["events"] / r["seconds"]
            print(
                f"{name:<10} {int(r['events']):>9} {r['seconds']:>8.2f} {rate:>10.0f} "
                f"{1e6 / rate:>9.2f} {r['peak_rss_mb']:>8.0f} {int(r['signals']):>7}"
            )


if __name__ == "__main__":
    main()
