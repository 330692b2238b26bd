"""A model's reference: read it (file, SQL query, or captured from the stream),
summarize it into a stored profile, and turn windows into check columns.

``driftd baseline --model M`` and the batch scheduler (capture mode) call
:func:`build_reference`; checks then run against the stored
:class:`~detectors.batch.ReferenceProfile`, never the raw reference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.config import ModelConfig, ReferenceConfig
from monitor.events import InvalidEvent, ModelSchema, PredictionEvent, category_key, decode
from monitor.windows import Labeled, Row

OTHER = "__other__"


@dataclass
class ReferenceData:
    """Rows in the window's shape, plus joined (prediction, label, score) pairs."""

    rows: list[Row] = field(default_factory=list)
    labeled: list[Labeled] = field(default_factory=list)
    invalid: int = 0
    source: str = ""


def column_types(model: ModelConfig, with_score: bool) -> dict[str, str]:
    types = {f: "numeric" for f in model.numeric_features()}
    types.update({f: "categorical" for f in model.categorical_features()})
    if with_score:
        types["score"] = "numeric"
    return types


def columns(model: ModelConfig, rows: Sequence[Row]) -> dict[str, Any]:
    """Rows as check columns: float arrays (NaN = missing) and object arrays."""
    numeric, categorical = model.numeric_features(), model.categorical_features()
    out: dict[str, Any] = {}
    for i, name in enumerate(numeric):
        out[name] = np.fromiter(
            (math.nan if r[0][i] is None else r[0][i] for r in rows), float, len(rows)
        )
    for i, name in enumerate(categorical):
        out[name] = np.array([r[1][i] for r in rows], dtype=object)
    scores = [r[2] for r in rows]
    if any(s is not None for s in scores):
        out["score"] = np.array([math.nan if s is None else s for s in scores], dtype=float)
    return out


def read_reference(model: ModelConfig, ref: ReferenceConfig) -> ReferenceData:
    """Read a file or SQL reference (capture mode has nothing to read)."""
    if ref.path is not None:
        return _from_file(model, ref)
    if ref.query is not None:
        return _from_sql(model, ref)
    raise ValueError(f"model {model.name!r}: the reference is captured from the stream")


def _from_file(model: ModelConfig, ref: ReferenceConfig) -> ReferenceData:
    from connectors.file_replay import reader_for

    assert ref.path is not None
    schema = ModelSchema(model)
    data = ReferenceData(source=f"file:{ref.path}")
    predictions: dict[Any, tuple[Any, float | None, str | None]] = {}
    seg_at = _segment_index(model)
    for _, value in reader_for(ref.path, ref.format).read(0):
        try:
            ev = decode("predictions", value)
            assert isinstance(ev, PredictionEvent)
            if ev.model != model.name:
                continue
            numeric, categorical, score, _ = schema.check_prediction(ev)
        except InvalidEvent:
            data.invalid += 1
            continue
        data.rows.append((tuple(numeric), tuple(categorical), score, 0.0))
        if ref.outcomes is not None:
            seg = categorical[seg_at] if seg_at is not None else None
            predictions[ev.prediction_id] = (ev.prediction, score, seg)
    if ref.outcomes is not None:
        for _, value in reader_for(ref.outcomes, ref.format).read(0):
            try:
                out = decode("outcomes", value)
            except InvalidEvent:
                data.invalid += 1
                continue
            hit = predictions.get(out.prediction_id)
            if hit is not None and out.model == model.name:
                data.labeled.append((hit[0], out.label, hit[1], 0.0, hit[2]))  # type: ignore[union-attr]
    return data


def _from_sql(model: ModelConfig, ref: ReferenceConfig) -> ReferenceData:
    from sqlalchemy import text

    from monitor.store import make_engine

    assert ref.url is not None and ref.query is not None
    engine = make_engine(ref.url, ref.password.reveal() if ref.password else None)
    data = ReferenceData(source="sql")
    try:
        with engine.connect() as conn:
            for row in conn.execute(text(ref.query)).mappings():
                rec = _row_values(model, dict(row))
                if rec is None:
                    data.invalid += 1
                    continue
                data.rows.append(rec[0])
                if rec[1] is not None:
                    data.labeled.append(rec[1])
    finally:
        engine.dispose()
    return data


def _row_values(model: ModelConfig, row: Mapping[str, Any]) -> tuple[Row, Labeled | None] | None:
    def get(name: str) -> Any:
        return row.get(name, row.get(f"features.{name}"))

    numeric: list[float | None] = []
    for f in model.numeric_features():
        v = get(f)
        try:
            x = None if v is None else float(v)
        except (TypeError, ValueError):
            return None
        numeric.append(None if x is None or not math.isfinite(x) else x)
    categorical = [
        None if get(f) is None else category_key(get(f)) for f in model.categorical_features()
    ]
    score = row.get("score")
    score = float(score) if isinstance(score, int | float) and math.isfinite(score) else None
    labeled = None
    if row.get("label") is not None and row.get("prediction") is not None:
        seg_at = _segment_index(model)
        labeled = (
            row["prediction"],
            row["label"],
            score,
            0.0,
            None if seg_at is None else categorical[seg_at],
        )
    return (tuple(numeric), tuple(categorical), score, 0.0), labeled


def _segment_index(model: ModelConfig) -> int | None:
    batch = model.batch
    if batch is None or batch.segment_by is None:
        return None
    return model.categorical_features().index(batch.segment_by)


def segment_key(model: ModelConfig, value: str | None, top: set[Any]) -> str:
    assert model.batch is not None
    return f"{model.batch.segment_by}={value if value in top else OTHER}"


def segment_rows(
    model: ModelConfig, rows: Sequence[Row], labeled: Sequence[Labeled] = ()
) -> dict[str, tuple[list[Row], list[Labeled]]]:
    """Rows (and joined outcomes) grouped by the ``segment_by`` feature: the
    most frequent values, the rest as ``__other__``; keys read ``feature=value``."""
    from collections import Counter

    index = _segment_index(model)
    if index is None:
        return {}
    assert model.batch is not None
    top = {v for v, _ in Counter(r[1][index] for r in rows).most_common(model.batch.max_segments)}
    groups: dict[str, tuple[list[Row], list[Labeled]]] = {}
    for r in rows:
        groups.setdefault(segment_key(model, r[1][index], top), ([], []))[0].append(r)
    for lab in labeled:
        key = segment_key(model, lab[4], top)
        if key in groups:
            groups[key][1].append(lab)
    return groups


def fit_multivariate(model: ModelConfig, rows: Sequence[Row]) -> bytes | None:
    """A PCA reconstruction detector fitted (and calibrated) on the reference's
    numeric features, pickled; None when there are fewer than 2 of them."""
    import pickle

    from detectors.batch import PCAReconstruction

    numeric = model.numeric_features()
    if len(numeric) < 2 or len(rows) < 100:
        return None
    cols = columns(model, rows)
    matrix = np.column_stack([cols[f] for f in numeric])
    return pickle.dumps(PCAReconstruction(n_components=0.9, seed=0).fit(matrix, numeric))


def multivariate_result(
    model: ModelConfig, blob: bytes, rows: Sequence[Row]
) -> dict[str, Any] | None:
    """The multivariate check of a window, in the batch result shape."""
    import pickle

    det = pickle.loads(blob)  # written by build_reference into our own store: trusted
    cols = columns(model, rows)
    matrix = np.column_stack([cols[f] for f in model.numeric_features()])
    matrix = matrix[~np.isnan(matrix).any(axis=1)]
    if len(matrix) == 0:
        return None
    res = det.check(matrix)
    return {
        "kind": "drift",
        "name": "pca_reconstruction",
        "column": None,
        "statistic": res.statistic,
        "p_value": None,
        "threshold": res.threshold,
        "failed": res.drift,
        "detail": {"statistic_name": res.statistic_name, "n_components": res.n_components},
    }


def build_reference(
    model: ModelConfig, rows: Sequence[Row], labeled: Iterable[Labeled]
) -> tuple[bytes, dict[str, Any], dict[str, tuple[bytes, dict[str, Any]]]]:
    """The stored form of a reference: the encoded profile, the performance
    baseline, and per segment its profile (without the segment column) and
    performance baseline."""
    from detectors.batch import build_profile, encode_profile
    from monitor.performance_view import performance_summary

    if not rows:
        raise ValueError(f"model {model.name!r}: the reference has no valid rows")
    joined = list(labeled)
    cols = columns(model, rows)
    types = column_types(model, "score" in cols)
    profile = build_profile(cols, types)
    batch = model.batch
    positive = batch.positive_class if batch is not None else None
    segments: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for key, (group, group_labeled) in segment_rows(model, rows, joined).items():
        seg_cols = columns(model, group)
        seg_types = {c: t for c, t in types.items() if c in seg_cols and c != key.split("=", 1)[0]}
        segments[key] = (
            encode_profile(build_profile(seg_cols, seg_types)),
            performance_summary(model.task, group_labeled, positive),
        )
    return encode_profile(profile), performance_summary(model.task, joined, positive), segments
