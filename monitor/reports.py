"""Evidently HTML drift reports: one file per model and window, pruned by count and age.

A report is written beside nothing else driftd needs: only files whose names
match :data:`REPORT_NAME` (``driftd-report-<model>-<UTC stamp>.html``) are
ever pruned, so pointing ``directory`` at a shared folder cannot delete a
stranger's file. Evidently is imported inside :func:`write_report` (its
import takes about 5 s, which the daemon should not pay at start).

>>> report_name("fraud/v2 (eu)", 1767225600.0)
'driftd-report-fraud_v2__eu_-7b41bb5b-20260101T000000Z.html'
>>> bool(REPORT_NAME.match(report_name("m", 0.0)))
True
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Names of driftd's report files; nothing else in the directory is touched.
REPORT_NAME = re.compile(r"^driftd-report-[A-Za-z0-9_.-]{1,64}(-[0-9a-f]{8})?-\d{8}T\d{6}Z\.html$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def report_name(model: str, stamp: float | datetime) -> str:
    """The file name of ``model``'s report for the window stamped ``stamp``.

    ``stamp`` is epoch seconds or a datetime (naive = UTC). Characters other
    than letters, digits, ``_``, ``.`` and ``-`` become ``_``, and the name is
    cut at 64 characters; when either changed it, 8 hex digits of the name's
    SHA-256 keep two models from sharing a file name.
    """
    if isinstance(stamp, datetime):
        when = stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
    else:
        when = datetime.fromtimestamp(stamp, UTC)
    safe = _UNSAFE.sub("_", model)[:64] or "_"
    if safe != model:
        safe += "-" + hashlib.sha256(model.encode()).hexdigest()[:8]
    return f"driftd-report-{safe}-{when.astimezone(UTC):%Y%m%dT%H%M%SZ}.html"


def write_report(
    reference_df: Any,
    current_df: Any,
    directory: str | os.PathLike[str],
    model: str,
    stamp: float | datetime,
    *,
    column_types: Mapping[str, str] | None = None,
) -> Path:
    """Write an Evidently ``DataDriftPreset`` report of ``current_df`` against
    ``reference_df`` (pandas DataFrames) and return its path.

    ``column_types`` maps columns to ``"numeric"`` or ``"categorical"``
    (``"binary"`` counts as categorical); by default numeric dtypes are
    numeric and everything else categorical. Only those columns are
    reported. The file is written under a temporary name and renamed, so a
    reader never sees half a report; an existing report of the same model
    and stamp is replaced. Evidently's errors propagate.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if column_types is None:
        import pandas as pd

        column_types = {
            str(c): "numeric" if pd.api.types.is_numeric_dtype(reference_df[c]) else "categorical"
            for c in reference_df.columns
        }
    numeric = [c for c, t in column_types.items() if t == "numeric"]
    categorical = [c for c, t in column_types.items() if t != "numeric"]
    columns = numeric + categorical
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset(columns=columns)]).run(
        Dataset.from_pandas(current_df[columns], data_definition=definition),
        Dataset.from_pandas(reference_df[columns], data_definition=definition),
    )
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / report_name(model, stamp)
    # A hidden temporary name that REPORT_NAME does not match: pruning
    # never sees it, and a crash leaves no half report under a real name.
    fd, tmp = tempfile.mkstemp(prefix=".driftd-report-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        snapshot.save_html(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def prune_reports(
    directory: str | os.PathLike[str],
    max_count: int | None,
    max_age_seconds: float | None,
    now: float,
) -> list[Path]:
    """Delete driftd reports beyond ``max_count`` (the oldest go first) or
    older than ``max_age_seconds`` at ``now`` (epoch seconds); ``None``
    disables a limit. Age is the file's modification time (when it was
    written, not the window's stamp, which a backtest puts in the past).
    Returns the deleted paths, oldest first. A file that vanishes meanwhile
    (another pruner) is skipped.
    """
    if max_count is not None and max_count < 0:
        raise ValueError(f"max_count must be >= 0, got {max_count!r}")
    if max_age_seconds is not None and max_age_seconds < 0:
        raise ValueError(f"max_age_seconds must be >= 0, got {max_age_seconds!r}")
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found: list[tuple[float, str, Path]] = []
    for entry in os.scandir(folder):
        if REPORT_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                found.append(
                    (entry.stat(follow_symlinks=False).st_mtime, entry.name, Path(entry.path))
                )
            except FileNotFoundError:
                continue
    found.sort()  # oldest first; equal times by name, whose stamp sorts by time
    doomed = len(found) - max_count if max_count is not None else 0
    deleted = []
    for i, (mtime, _, path) in enumerate(found):
        if i < doomed or (max_age_seconds is not None and now - mtime > max_age_seconds):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            deleted.append(path)
    return deleted
