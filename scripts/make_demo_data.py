"""Generate the bundled replay: a credit-risk classifier with a known drift.

    python scripts/make_demo_data.py [--out data/demo] [--events 20000] [--drift-at 12000]

Reproducible (seeded). What happens, by prediction index (0-based):

- before ``drift_at``: features are stable and the model is calibrated
  (labels are drawn from the model's own score);
- from ``drift_at`` on: ``utilization`` and ``debt_ratio`` move up by 0.8
  standard deviations, the ``region`` mix changes (west grows, north
  shrinks), and the true default risk no longer follows the model
  (concept drift), so its error rate rises.

One prediction every 2 s of event time from 2026-01-01T00:00:00Z. 90% of
predictions get an outcome 1 to 15 minutes later; the rest never do.

It also writes a reference (``reference_predictions.jsonl`` and
``reference_outcomes.jsonl``): 5000 predictions of the same model from the
time before the drift, drawn with another seed, for the batch checks.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

START = 1767225600.0  # 2026-01-01T00:00:00Z
MODEL, VERSION = "credit-risk", "v1"
REGIONS = ["north", "south", "east", "west"]
CHANNELS = ["web", "branch", "phone"]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def generate(events: int, drift_at: int, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    predictions, outcomes = [], []
    for i in range(events):
        drifted = i >= drift_at
        income = rng.gauss(55.0, 15.0)
        age = rng.gauss(42.0, 12.0)
        debt_ratio = rng.gauss(0.35 + (0.08 if drifted else 0.0), 0.10)
        utilization = rng.gauss(0.40 + (0.12 if drifted else 0.0), 0.15)
        credit_lines = max(0, round(rng.gauss(6.0, 2.0)))
        region = rng.choices(REGIONS, weights=[15, 30, 20, 35] if drifted else [30, 30, 20, 20])[0]
        channel = rng.choices(CHANNELS, weights=[60, 25, 15])[0]
        z = (
            -1.2
            - 0.03 * (income - 55.0)
            + 4.0 * (debt_ratio - 0.35)
            + 3.0 * (utilization - 0.40)
            - 0.01 * (age - 42.0)
        )
        score = _sigmoid(z)
        if drifted:
            # The world changed: risk now depends on channel and credit lines,
            # which the model ignores.
            z_true = (
                -0.4 + 1.5 * (channel == "web") - 0.25 * (credit_lines - 6) - 0.02 * (income - 55.0)
            )
            p_true = _sigmoid(z_true)
        else:
            p_true = score
        ts = START + 2.0 * i
        pid = f"p{i:07d}"
        predictions.append(
            {
                "model": MODEL,
                "model_version": VERSION,
                "prediction_id": pid,
                "timestamp": ts,
                "features": {
                    "income": round(income, 3),
                    "age": round(age, 1),
                    "debt_ratio": round(debt_ratio, 4),
                    "utilization": round(utilization, 4),
                    "credit_lines": credit_lines,
                    "region": region,
                    "channel": channel,
                },
                "prediction": "default" if score >= 0.5 else "repaid",
                "score": round(score, 5),
            }
        )
        if rng.random() < 0.9:
            label = "default" if rng.random() < p_true else "repaid"
            outcomes.append(
                {
                    "model": MODEL,
                    "prediction_id": pid,
                    "timestamp": ts + rng.uniform(60.0, 900.0),
                    "label": label,
                }
            )
    outcomes.sort(key=lambda o: o["timestamp"])
    return predictions, outcomes


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/demo")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--drift-at", type=int, default=12_000)
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--reference", type=int, default=5000)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    predictions, outcomes = generate(args.events, args.drift_at, args.seed)
    write_jsonl(out / "predictions.jsonl", predictions)
    write_jsonl(out / "outcomes.jsonl", outcomes)
    print(f"wrote {len(predictions)} predictions and {len(outcomes)} outcomes to {out}/")
    ref_pred, ref_out = generate(args.reference, args.reference, args.seed + 3)
    for rows in (ref_pred, ref_out):
        for row in rows:  # a week before the replay, ids of their own
            row["timestamp"] -= 7 * 86400.0
            row["prediction_id"] = "r" + row["prediction_id"][1:]
    write_jsonl(out / "reference_predictions.jsonl", ref_pred)
    write_jsonl(out / "reference_outcomes.jsonl", ref_out)
    print(f"wrote a reference of {len(ref_pred)} predictions and {len(ref_out)} outcomes")


if __name__ == "__main__":
    main()
