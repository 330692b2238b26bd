"""Batch checks: a model's window against its reference, on an APScheduler schedule.

APScheduler keeps the schedule (interval or cron, misfires coalesced into
one run); its job only tells the run loop that a model's check is due. The
loop, which owns the shard state, then runs the check itself between two
batches (:meth:`BatchRunner.run_scheduled` with the loop's window access):
it closes the model's windows, checkpoints that boundary, judges drift per
column with ``detectors.batch``, data quality with ``detectors.quality`` and
performance with ``detectors.performance`` (realized on joined outcomes,
estimated from scores without them), per segment when configured; stores
every result; sets the gauges; writes an Evidently report when something
failed; and publishes failures as signals for the rules. Checks of one model
never overlap, and a closed window is dropped only once its check is stored,
so a crash neither loses nor judges twice what was closed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.config import DriftdConfig, ModelConfig
from monitor.metrics import Metrics
from monitor.reference import build_reference, column_types, columns, read_reference
from monitor.store import Store
from monitor.windows import Window
from triggers.base import Signal

log = logging.getLogger("driftd.batch")

# (model, take): take closes the window and opens the next; else a copy (peek).
WindowRequest = Callable[[str, bool], Window | None]
Publish = Callable[["CheckOutcome"], None]


@dataclass
class CheckOutcome:
    model: str
    status: str  # "ok", "failed", "skipped", "captured"
    detail: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    check_ids: list[int] = field(default_factory=list)
    report: str | None = None
    n: int = 0  # predictions in the window
    event_time: float = 0.0  # the window's last event time


class BatchRunner:
    """Runs each model's batch checks; the scheduler is started and stopped here."""

    def __init__(
        self,
        config: DriftdConfig,
        store: Store,
        metrics: Metrics,
        request_check: Callable[[str], None],
        publish: Publish,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``request_check(model)`` is called from the scheduler's thread when a
        check is due; ``publish`` gets every judged check (from the caller of
        :meth:`run_scheduled`)."""
        self.config = config
        self.store = store
        self.metrics = metrics
        self._request_check = request_check
        self._publish = publish
        self._clock = clock
        self._scheduler: Any = None

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        # Windows that close themselves (window_rows / window_seconds) are judged
        # by the run loop as they close: no job.
        models = [m for m in self.config.models if m.batch and not m.batch.closed_by_events]
        if not models:
            return
        scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )
        for m in models:
            assert m.batch is not None
            trigger = (
                CronTrigger.from_crontab(m.batch.cron, timezone="UTC")
                if m.batch.cron
                else IntervalTrigger(seconds=m.batch.interval_seconds)
            )
            scheduler.add_job(
                self._request_check,
                trigger,
                args=[m.name],
                id=f"batch:{m.name}",
                name=f"batch check {m.name}",
            )
        scheduler.start()
        self._scheduler = scheduler
        log.info("batch checks scheduled for %s", ", ".join(m.name for m in models))

    def stop(self) -> None:
        """No more scheduled runs. Safe to repeat."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def run_scheduled(self, model: str, get: WindowRequest) -> CheckOutcome:
        """A scheduled check of ``model``: close its window with ``get`` (the
        owner of the windows: ``get(model, True)`` closes and returns it,
        ``get(model, False)`` a copy), judge it, publish the outcome. Blocks.

        A window below ``min_rows`` stays open and grows until the next run,
        so no prediction goes unjudged; while a captured reference is still
        being collected, the window is only peeked at, so that it keeps
        growing from the first prediction on."""
        cfg = self.config.model(model)
        adopted = self._adopt(model, get)
        if adopted is not None:
            return adopted
        window = get(model, False)
        capturing = cfg is not None and self._capturing(cfg, window)
        if not capturing and cfg is not None and cfg.batch is not None and window is not None:
            if window.n >= cfg.batch.min_rows:
                # Big enough to judge: close it. (A smaller one stays open and
                # grows until the next run, so no prediction goes unjudged.)
                window = get(model, True)
        outcome = self.run(model, window, repeatable=True)
        if outcome.status == "captured":
            get(model, True)  # judged data starts after the reference
        if outcome.status in ("ok", "failed") and window is not None:
            outcome.n, outcome.event_time = window.n, window.last_time
            self._publish(outcome)  # rules see every judged check (persistence)
        return outcome

    def _capturing(self, cfg: ModelConfig, window: Window | None) -> bool:
        """Whether ``window`` is (still) being collected as a captured reference."""
        if cfg.batch is None or not cfg.batch.reference.captured:
            return False
        if cfg.batch.reference.per_version:
            version = _version(window)
            exact = self.store.load_reference(cfg.name, version, exact=True) if version else None
            return bool(version) and (exact is None or exact["model_version"] != version)
        return self.store.load_reference(cfg.name) is None

    def run_closed(self, window: Window) -> CheckOutcome:
        """Judge a window that closed itself (``window_rows`` / ``window_seconds``).
        Runs in the caller's thread (the run loop). Safe to repeat for one window:
        its check is stored once (found again by model, bounds and size), so its
        signals keep their keys."""
        model = window.model
        adopted = self._adopt(model, lambda _model, _take: window)
        if adopted is not None:
            return adopted
        outcome = self.run(model, window, repeatable=True)
        if outcome.status in ("ok", "failed"):
            outcome.n, outcome.event_time = window.n, window.last_time
        return outcome

    def _adopt(self, model: str, get: WindowRequest) -> CheckOutcome | None:
        """``on_new_version = "adopt_reference"``: once the window holds only the
        newly reported version, capture its first ``adopt_first`` predictions as
        the model's reference (a new row: the newest is used). None when no
        adoption is pending or the window still holds older versions (then it
        is judged and closed as usual, and the next one starts clean)."""
        from monitor.store import model_versions

        cfg = self.config.model(model)
        if cfg is None or cfg.batch is None or cfg.versions is None:
            return None
        if cfg.versions.on_new_version != "adopt_reference":
            return None
        c = model_versions.c
        pending = self.store.rows(
            model_versions,
            c.model == model,
            c.status == "active",
            c.previous_version.is_not(None),
            c.reference_adopted_at.is_(None),
            order_by=c.id.desc(),
            limit=1,
        )
        if not pending:
            return None
        version = pending[0]["version"]
        window = get(model, False)
        if window is None or window.versions != {version}:
            return None
        first = cfg.versions.adopt_first
        rows = captured_rows(cfg, window, first)
        if rows is None:
            return CheckOutcome(
                model, "skipped", f"adopting version {version}: {window.n} of {first} predictions"
            )
        # Stored for that version: windows of the previous one (a rollback)
        # keep being judged against theirs.
        save_reference(self.store, cfg, f"adopted:{version}", rows, window.labeled, version)
        self.store.update_version(model, version, reference_adopted_at=self._clock())
        get(model, True)  # judged data starts after the new reference
        log.info("model %s: reference adopted from version %s (%d rows)", model, version, len(rows))
        self.metrics.batch_checks.labels(model, "captured").inc()
        return CheckOutcome(
            model, "captured", f"reference adopted from {len(rows)} predictions of {version}"
        )

    # -- one run ---------------------------------------------------------------
    def run(
        self, model_name: str, window: Window | None, *, repeatable: bool = False
    ) -> CheckOutcome:
        """Judge ``window``. ``repeatable``: a window judged before (a restart
        after a crash) reuses its stored check instead of adding one."""
        model = next(m for m in self.config.models if m.name == model_name)
        assert model.batch is not None
        t0 = time.perf_counter()
        try:
            outcome = self._run(model, window, repeatable)
        except Exception as exc:  # a bad window or reference must not stop the schedule
            log.exception("batch check of %s failed", model_name)
            outcome = CheckOutcome(model_name, "error", str(exc))
        self.metrics.batch_checks.labels(model_name, outcome.status).inc()
        self.metrics.batch_check_seconds.observe(time.perf_counter() - t0)
        return outcome

    def _run(self, model: ModelConfig, window: Window | None, repeatable: bool) -> CheckOutcome:
        batch = model.batch
        assert batch is not None
        version = _version(window)
        ref = self.store.load_reference(model.name, version)
        own = version if version in batch.version_references else ""
        if own and (ref is None or ref["model_version"] != own):
            # A version with a file or SQL reference of its own: built the first
            # time a window of only that version is judged.
            log.info(
                "building the reference of %s %s: %s",
                model.name,
                own,
                baseline(self.config, self.store, model.name, version=own),
            )
            ref = self.store.load_reference(model.name, own)
        elif ref is None and not batch.reference.captured:
            # A file or SQL reference: build its profile the first time it is needed.
            log.info(
                "building the reference of %s: %s",
                model.name,
                baseline(self.config, self.store, model.name),
            )
            ref = self.store.load_reference(model.name, version)
        if batch.reference.per_version and not own:
            if ref is None and not version:
                n = 0 if window is None else window.n
                return CheckOutcome(
                    model.name,
                    "skipped",
                    f"references are per version: waiting for a window of one version ({n} predictions)",
                )
            if version and (ref is None or ref["model_version"] != version):
                return self._capture(model, window, version)
        elif ref is None:
            return self._capture(model, window, "")
        assert ref is not None
        if window is None or window.n < batch.min_rows:
            n = 0 if window is None else window.n
            return CheckOutcome(
                model.name, "skipped", f"{n} predictions < min_rows {batch.min_rows}"
            )
        from monitor.batch_eval import evaluate

        return evaluate(self, model, window, ref, repeatable)

    def _capture(self, model: ModelConfig, window: Window | None, version: str) -> CheckOutcome:
        """Store ``window`` as the captured reference (of ``version``; "": of
        every version) once it holds enough predictions."""
        rows = captured_rows(model, window)
        whose = f" of version {version}" if version else ""
        if rows is None:
            n = 0 if window is None else window.n
            return CheckOutcome(
                model.name, "skipped", f"capturing the reference{whose}: {n} predictions so far"
            )
        assert window is not None
        save_reference(self.store, model, "captured", rows, window.labeled, version)
        return CheckOutcome(
            model.name, "captured", f"reference{whose} captured from {len(rows)} predictions"
        )


def _version(window: Window | None) -> str:
    if window is None or len(window.versions) != 1:
        return ""
    return next(iter(window.versions))


def captured_rows(
    model: ModelConfig, window: Window | None, first: int | None = None
) -> list[Any] | None:
    """The rows of a captured reference once the capture is complete, else None:
    the first ``capture_first`` (or ``first``) predictions, or every prediction
    with an event time in [capture_from, capture_until) once the stream has
    passed the end."""
    assert model.batch is not None
    ref = model.batch.reference
    if window is None:
        return None
    if first is not None:
        return list(window.rows[:first]) if window.n >= first else None
    if ref.capture_first is not None:
        return list(window.rows) if window.n >= ref.capture_first else None
    assert ref.capture_from is not None and ref.capture_until is not None
    if window.last_time < ref.capture_until:
        return None
    rows = [r for r in window.rows if ref.capture_from <= r[3] < ref.capture_until]
    return rows or None


def save_reference(
    store: Store,
    model: ModelConfig,
    source: str,
    rows: Sequence[Any],
    labeled: Sequence[Any],
    version: str = "",
) -> dict[str, Any]:
    """Build and store a model's reference profile (and its segments' profiles),
    for one model version or ("") every version."""
    from monitor.reference import fit_multivariate

    profile, perf, segments = build_reference(model, rows, labeled)
    store.save_reference(
        model.name,
        version,
        source,
        len(rows),
        profile,
        perf,
        multivariate=fit_multivariate(model, rows),
    )
    for key, (seg_profile, seg_perf) in segments.items():
        store.save_reference(model.name, version, source, 0, seg_profile, seg_perf, segment=key)
    return perf


def stored_window(store: Store, model: str) -> Window | None:
    """``model``'s open windows as last checkpointed by every process and shard,
    merged: the model-level view a CLI command (or another process) gets."""
    import pickle

    from monitor.windows import merge

    found = []
    for cp in store.load_checkpoints("shard/"):
        state = pickle.loads(cp.state)
        if getattr(state, "windows", None) is not None:
            w = state.windows.peek(model)
            if w is not None:
                found.append(w)
    return merge(found)


def render(outcome: CheckOutcome) -> str:
    """The table ``driftd check`` prints."""
    lines = [
        f"{outcome.model}: {outcome.status}" + (f" ({outcome.detail})" if outcome.detail else "")
    ]
    if outcome.results:
        lines.append(
            f"{'segment':<18} {'kind':<12} {'check':<14} {'column':<20} {'statistic':>10} {'p':>9} {'threshold':>9}  verdict"
        )
    for r in outcome.results:

        def num(v: Any) -> str:
            return "-" if v is None else f"{v:.4g}"

        lines.append(
            f"{r.get('segment') or '(all)':<18} {r['kind']:<12} {r['name']:<14} {r['column'] or '-':<20} "
            f"{num(r['statistic']):>10} {num(r['p_value']):>9} {num(r['threshold']):>9}  "
            f"{'FAIL' if r['failed'] else 'ok'}"
        )
    if outcome.report:
        lines.append(f"report: {outcome.report}")
    return "\n".join(lines)


def baseline(
    config: DriftdConfig,
    store: Store,
    model_name: str,
    window: Window | None = None,
    version: str = "",
) -> str:
    """Build and store ``model_name``'s reference from its configured source
    (or, in capture mode, from ``window``): for ``version`` if given (from its
    ``version_references`` entry when it has one), else for every version.
    Returns a one-line report."""
    model = config.model(model_name)
    if model is None or model.batch is None:
        raise ValueError(f"model {model_name!r} has no [models.batch] section")
    ref = model.batch.version_references.get(version, model.batch.reference)
    if ref.captured and version and window is not None and window.versions != {version}:
        raise ValueError(
            f"the stored windows hold versions {sorted(window.versions)}, not only {version!r}"
        )
    if ref.captured:
        captured = captured_rows(model, window)
        if captured is None or window is None:
            have = 0 if window is None else window.n
            raise ValueError(
                f"the capture is not complete: the stored windows hold {have} predictions"
            )
        rows: Sequence[Any] = captured
        labeled: Sequence[Any] = window.labeled
        source = "captured"
    else:
        data = read_reference(model, ref)
        rows, labeled, source = data.rows, data.labeled, data.source
    perf = save_reference(store, model, source, rows, labeled, version)
    cols = column_types(model, "score" in columns(model, rows[:1]))
    whose = f"{model.name} {version}" if version else model.name
    return (
        f"reference for {whose}: {len(rows)} rows, {len(labeled)} labeled, "
        f"{len(cols)} columns from {source}; performance baseline {perf.get('metrics', {})}"
    )
