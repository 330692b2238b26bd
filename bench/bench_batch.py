"""Batch drift check: driftd next to Evidently's DataDriftPreset and plain scipy.

    python bench/bench_batch.py [--sizes 100000,1000000] [--methods ...] [--repeat 3]

Same seeded data for every method (``detectors.batch.synthetic``: 20 numeric
+ 5 categorical columns, 3 numeric + 1 categorical with drift that matters,
4 "stable" columns with drift that does not), reference and current of
``n`` rows each, handed to every method as pandas DataFrames. Each method
runs in its own process, so peak RSS is per method; data generation and
imports happen before the clock starts (import times are printed apart).

Methods:

- ``driftd``: ``detectors.batch.check`` with its size-aware defaults;
- ``driftd_prepared``: the same against a ``PreparedReference`` (reference
  sorted/counted once, as the daemon does for a fixed reference; the
  preparation time is printed apart);
- ``evidently``: ``Report([DataDriftPreset()])`` of Evidently 0.7.23, default
  tests (``Report.run`` builds the snapshot; nothing is rendered);
- ``scipy``: ``scipy.stats.ks_2samp`` per numeric column and
  ``scipy.stats.chi2_contingency`` (homogeneity) per categorical one, p < 0.05.

Wall time is the median of ``--repeat`` runs (one run when a run takes over
10 s). CPU time counts every thread, so CPU/wall shows how much of the 2
cores a method used, and how much other load on the machine held it back.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METHODS = ("driftd", "driftd_prepared", "evidently", "scipy")
SEED = 2026


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _frames(n: int) -> tuple[Any, Any, dict[str, str], frozenset[str]]:
    import pandas as pd

    from detectors.batch.synthetic import make_drift_data

    d = make_drift_data(n, seed=SEED)
    return pd.DataFrame(d.reference), pd.DataFrame(d.current), d.column_types, d.shifted


def _setup(method: str, ref: Any, cur: Any, types: dict[str, str]) -> tuple[Any, dict[str, float]]:
    """Import what the method needs and return a zero-argument run -> flagged columns."""
    extra: dict[str, float] = {}
    t0 = time.perf_counter()
    if method in ("driftd", "driftd_prepared"):
        # driftd's tests import scipy lazily; import it here, off the clock
        import scipy.spatial.distance
        import scipy.stats  # noqa: F401

        from detectors.batch import check
        from detectors.batch.check import PreparedReference

        extra["import_s"] = time.perf_counter() - t0
        reference: Any = ref
        if method == "driftd_prepared":
            t1 = time.perf_counter()
            reference = PreparedReference(ref, types)
            extra["prepare_s"] = time.perf_counter() - t1

        def run() -> list[str]:
            return [r.column for r in check(reference, cur, types) if r.drift]

        return run, extra

    if method == "evidently":
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        extra["import_s"] = time.perf_counter() - t0
        definition = DataDefinition(
            numerical_columns=[c for c, t in types.items() if t == "numeric"],
            categorical_columns=[c for c, t in types.items() if t != "numeric"],
        )

        def run() -> list[str]:
            report = Report([DataDriftPreset()])
            snapshot = report.run(
                current_data=Dataset.from_pandas(cur, data_definition=definition),
                reference_data=Dataset.from_pandas(ref, data_definition=definition),
            )
            flagged = []
            for m in snapshot.dict()["metrics"]:
                cfg = m["config"]
                if not cfg.get("type", "").endswith(":ValueDrift"):
                    continue
                value, threshold = float(m["value"]), float(cfg["threshold"])
                p_value_test = "p_value" in cfg["method"]
                if (value < threshold) if p_value_test else (value >= threshold):
                    flagged.append(cfg["column"])
            return flagged

        return run, extra

    if method == "scipy":
        import numpy as np
        from scipy.stats import chi2_contingency, ks_2samp

        extra["import_s"] = time.perf_counter() - t0

        def run() -> list[str]:
            flagged = []
            for col, ctype in types.items():
                if ctype == "numeric":
                    p = ks_2samp(ref[col].to_numpy(), cur[col].to_numpy()).pvalue
                else:
                    counts = (
                        ref[col]
                        .value_counts()
                        .to_frame("r")
                        .join(cur[col].value_counts().rename("c"), how="outer")
                    )
                    p = chi2_contingency(
                        np.nan_to_num(counts.to_numpy().T), correction=False
                    ).pvalue
                if p < 0.05:
                    flagged.append(col)
            return flagged

        return run, extra
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")


def child(method: str, n: int, repeat: int) -> dict[str, Any]:
    ref, cur, types, shifted = _frames(n)
    run, extra = _setup(method, ref, cur, types)
    rss_before = _rss_mb()
    walls, cpus = [], []
    flagged: list[str] = []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        flagged = run()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        if walls[-1] > 10:
            break
    return {
        "method": method,
        "n": n,
        "wall_s": statistics.median(walls),
        "walls": walls,
        "cpu_s": statistics.median(cpus),
        "peak_rss_mb": _rss_mb(),
        "rss_before_mb": rss_before,
        "flagged": sorted(flagged),
        "shifted": sorted(shifted),
        **extra,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="100000,1000000", help="rows per side, comma-separated")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.repeat)))
        return

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r}; valid: {', '.join(METHODS)}")
    print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.2f}")
    results = []
    for n in sizes:
        for m in methods:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                m,
                "--n",
                str(n),
                "--repeat",
                str(args.repeat),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if out.returncode != 0:
                print(f"{m} at {n}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(r)
            _print_row(r)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    _print_summary(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


def _print_row(r: dict[str, Any]) -> None:
    shifted, flagged = set(r["shifted"]), set(r["flagged"])
    fp, missed = sorted(flagged - shifted), sorted(shifted - flagged)
    extra = "".join(f" {k}={r[k]:.2f}" for k in ("import_s", "prepare_s") if k in r)
    runs = "/".join(f"{w:.2f}" for w in r["walls"])
    print(
        f"n={r['n']:>9,} {r['method']:<16} wall {r['wall_s']:7.3f} s (runs {runs}) "
        f"cpu {r['cpu_s']:7.3f} s  peak RSS {r['peak_rss_mb']:6.0f} MB "
        f"(+{r['peak_rss_mb'] - r['rss_before_mb']:.0f} over data and imports){extra}\n"
        f"{'':12}flagged {r['flagged']}  false positives {fp}  missed {missed}"
    )


def _print_summary(results: list[dict[str, Any]]) -> None:
    by = {(r["n"], r["method"]): r for r in results}
    for n in sorted({r["n"] for r in results}):
        d, e = by.get((n, "driftd")), by.get((n, "evidently"))
        if d and e:
            same = set(d["flagged"]) == set(e["flagged"])
            print(
                f"n={n:,}: Evidently / driftd wall time = {e['wall_s'] / d['wall_s']:.1f}x; "
                f"same flagged columns: {same}"
            )


if __name__ == "__main__":
    main()
