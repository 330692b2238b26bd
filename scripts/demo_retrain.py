"""The demo's retraining "pipeline": reads a driftd decision on stdin and says
what it would retrain. Stands in for a real trigger (a CI job, an Airflow DAG)."""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    decision = json.load(sys.stdin)
    targets = sorted({s["target"] for s in decision["signals"]})
    print(
        f"retraining {decision['model']} (was {decision['model_version']}) because "
        f"{', '.join(targets)} drifted; idempotency key {os.environ.get('DRIFTD_IDEMPOTENCY_KEY')}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
