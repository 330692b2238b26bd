"""One batch check of one model's window: drift, quality, performance, per segment."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from monitor.config import ModelConfig
from monitor.reference import columns, multivariate_result, segment_rows
from monitor.windows import Window
from triggers.base import Signal

if TYPE_CHECKING:
    from monitor.batch import BatchRunner, CheckOutcome

log = logging.getLogger("driftd.batch")


def segments(model: ModelConfig, window: Window) -> list[tuple[str, Window]]:
    """The whole window, then one sub-window per segment (see ``segment_rows``),
    with the segment's joined outcomes. A segment's counts come from the
    sample (the exact counts are kept for the whole window only)."""
    out = [("", window)]
    groups = segment_rows(model, window.rows, window.labeled)
    for key, (rows, labeled) in sorted(groups.items()):
        width = len(model.features)
        missing = [sum(1 for r in rows if (*r[0], *r[1])[i] is None) for i in range(width)]
        sub = Window(
            model.name,
            rows,
            labeled,
            len(rows),
            len(labeled),
            missing,
            0,
            0,
            set(window.versions),
            window.first_time,
            window.last_time,
        )
        out.append((key, sub))
    return out


def evaluate(
    runner: BatchRunner,
    model: ModelConfig,
    window: Window,
    ref: dict[str, Any],
    repeatable: bool = False,
) -> CheckOutcome:
    from detectors.batch import check, decode_profile
    from monitor.batch import CheckOutcome
    from monitor.performance_view import performance_results
    from monitor.quality_view import quality_results

    batch = model.batch
    assert batch is not None
    profile = decode_profile(ref["profile"])
    m = runner.metrics
    outcome = CheckOutcome(model.name, "ok")
    version = next(iter(window.versions)) if len(window.versions) == 1 else "*"
    all_results: list[tuple[str, int, list[dict[str, Any]]]] = []
    for segment, win in segments(model, window):
        seg_profile = profile
        seg_ref: dict[str, Any] | None = None
        if segment:
            seg_ref = runner.store.load_reference(
                model.name, version if version != "*" else "", segment
            )
            if win.n < batch.min_rows or seg_ref is None:
                continue  # a small segment, or one the reference never had, is not judged
            seg_profile = decode_profile(seg_ref["profile"])
        current = columns(model, win.rows)
        wanted = {c: t for c, t in seg_profile.column_types.items() if c in current}
        results: list[dict[str, Any]] = []
        for r in check(seg_profile, current, wanted, tests=dict(batch.tests)):
            results.append(
                {
                    "kind": "drift",
                    "name": r.test,
                    "column": r.column,
                    "statistic": r.statistic,
                    "p_value": r.p_value,
                    "threshold": r.threshold,
                    "failed": r.drift,
                    "detail": {"statistic_name": r.statistic_name, "approximate": r.approximate},
                }
            )
            m.batch_drift_score.labels(model.name, r.column, r.test, segment).set(r.statistic)
        if not segment and ref.get("multivariate"):
            mv = multivariate_result(model, ref["multivariate"], win.rows)
            if mv is not None:
                results.append(mv)
                m.batch_drift_score.labels(model.name, "*", mv["name"], segment).set(
                    mv["statistic"]
                )
        drift_rows = [r for r in results if r["kind"] == "drift" and r["column"]]
        share = sum(r["failed"] for r in drift_rows) / len(drift_rows) if drift_rows else 0.0
        m.batch_drifted_share.labels(model.name, segment).set(share)
        results += quality_results(model, win, seg_profile, m, segment)
        baseline = (ref if not segment else seg_ref or {}).get("performance") or {}
        results += performance_results(model, win, baseline, m, segment)
        all_results.append((segment, win.n, results))
    failed = [(seg, r) for seg, _, rs in all_results for r in rs if r["failed"]]
    report = _report(runner, model, window, ref) if failed and batch.report_dir else None
    for segment, n_rows, results in all_results:
        drift_rows = [r for r in results if r["kind"] == "drift"]
        seg_failed = any(r["failed"] for r in results)
        check_id = runner.store.save_check(
            {
                "model": model.name,
                "segment": segment,
                "window_start": window.first_time,
                "window_end": window.last_time,
                "n_rows": n_rows,
                "n_labeled": window.n_labeled,
                "drifted_share": sum(r["failed"] for r in drift_rows) / len(drift_rows)
                if drift_rows
                else 0.0,
                "failed": seg_failed,
                "summary": {
                    "failed": [
                        f"{r['kind']}:{r['name']}:{r['column']}" for r in results if r["failed"]
                    ]
                },
                "report": report,
            },
            results,
            reuse=repeatable,
        )
        outcome.check_ids.append(check_id)
        for row in results:
            if row["failed"]:
                outcome.signals.append(
                    _signal(model.name, version, check_id, segment, row, window, report)
                )
    outcome.results = [dict(r, segment=seg) for seg, _, rs in all_results for r in rs]
    outcome.status = "failed" if failed else "ok"
    outcome.report = report
    return outcome


def _signal(
    model: str,
    version: str,
    check_id: int,
    segment: str,
    r: dict[str, Any],
    window: Window,
    report: str | None,
) -> Signal:
    target = (
        r["column"]
        if r["column"] == "score"
        else f"feature:{r['column']}"
        if r["column"]
        else r["kind"]
    )
    if r["kind"] == "performance":
        target = f"performance:{r['name']}"
    details: dict[str, Any] = {
        "threshold": r["threshold"] if r["threshold"] is not None else float("nan")
    }
    if r.get("p_value") is not None:
        details["p_value"] = r["p_value"]
    return Signal(
        key=f"{model}|batch|{check_id}|{r['kind']}|{r['name']}|{r['column']}",
        model=model,
        model_version=version,
        target=target + (f"@{segment}" if segment else ""),
        detector=f"{r['kind']}:{r['name']}",
        statistic=r["detail"].get("statistic_name", r["name"])
        if isinstance(r.get("detail"), dict)
        else r["name"],
        value=r["statistic"] if r["statistic"] is not None else float("nan"),
        position=window.n,
        event_time=window.last_time,
        details={**details, **({"report": report} if report else {})},
    )


def _report(
    runner: BatchRunner, model: ModelConfig, window: Window, ref: dict[str, Any]
) -> str | None:
    """An Evidently HTML report of the window vs the reference, when possible."""
    batch = model.batch
    assert batch is not None and batch.report_dir is not None
    try:
        import pandas as pd

        from monitor.reference import read_reference
        from monitor.reports import prune_reports, write_report

        if batch.reference.captured:
            return None  # the raw reference was never kept
        data = read_reference(model, batch.reference)
        ref_df = pd.DataFrame(columns(model, data.rows[:20000]))
        cur_df = pd.DataFrame(columns(model, window.rows))
        path = write_report(ref_df, cur_df, batch.report_dir, model.name, runner._clock())
        prune_reports(
            batch.report_dir, batch.report_max_count, batch.report_max_age_seconds, runner._clock()
        )
        return str(path)
    except Exception:
        log.exception("could not write the Evidently report for %s", model.name)
        return None
