"""Event decoding and validation: every bad input is an InvalidEvent naming the field."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from monitor.config import ModelConfig
from monitor.events import InvalidEvent, ModelSchema, PredictionEvent, decode, epoch_seconds

MODEL = ModelConfig(
    name="m",
    task="classification",
    features={"x": "numeric", "y": "numeric", "c": "categorical"},
)


def pred(**over: Any) -> bytes:
    event: dict[str, Any] = {
        "model": "m",
        "model_version": "v1",
        "prediction_id": "p1",
        "timestamp": 1000.0,
        "features": {"x": 1.5, "y": 2, "c": "red"},
        "prediction": "yes",
        "score": 0.7,
    }
    event.update(over)
    return json.dumps(event).encode()


def invalid(stream: str, value: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        event = decode(stream, value)
        if isinstance(event, PredictionEvent):
            ModelSchema(MODEL).check_prediction(event)
    return info.value


def test_valid_prediction() -> None:
    event = decode("predictions", pred())
    assert isinstance(event, PredictionEvent)
    numeric, categorical, score, unexpected = ModelSchema(MODEL).check_prediction(event)
    assert numeric == [1.5, 2.0]
    assert categorical == ["red"]
    assert score == 0.7
    assert unexpected == 0


def test_rfc3339_timestamp() -> None:
    event = decode("predictions", pred(timestamp="2026-01-01T00:00:00Z"))
    assert epoch_seconds(event.timestamp) == 1767225600.0


@pytest.mark.parametrize(
    ("value", "code", "text"),
    [
        (b"{not json", "malformed", "not valid JSON"),
        (b"", "malformed", "not valid JSON"),
        (b"[1, 2]", "schema", "Expected `object`, got `array`"),
        (pred(model=None), "schema", "model: Expected `str`, got `null`"),
        (pred(timestamp="yesterday"), "schema", "timestamp"),
        (pred(features={"x": [1]}), "schema", "features[...]: Expected"),
        (pred(extra_field=1), "schema", "unknown field `extra_field`"),
        (
            b'{"model":"m","model_version":"v1","prediction_id":"p","timestamp":1e999,'
            b'"features":{},"prediction":"a"}',
            "schema",
            "timestamp: Number out of range",
        ),
        (
            b'{"model":"m","model_version":"v1","prediction_id":"p","timestamp":NaN,'
            b'"features":{},"prediction":"a"}',
            "malformed",
            "not valid JSON",
        ),
        (
            pred(features={"x": "high", "y": 1, "c": "a"}),
            "feature_type",
            "features.x: numeric feature got str",
        ),
        (pred(features={"x": True, "y": 1, "c": "a"}), "feature_type", "features.x"),
    ],
)
def test_bad_predictions(value: bytes, code: str, text: str) -> None:
    err = invalid("predictions", value)
    assert err.code == code
    assert text in str(err)


def test_missing_required_field() -> None:
    raw = json.loads(pred())
    del raw["prediction_id"]
    err = invalid("predictions", json.dumps(raw).encode())
    assert err.code == "schema"
    assert "missing required field `prediction_id`" in str(err)


def test_missing_and_unexpected_features_are_counted_not_fatal() -> None:
    event = decode("predictions", pred(features={"x": None, "c": "a", "new": 1}))
    numeric, categorical, _, unexpected = ModelSchema(MODEL).check_prediction(event)
    assert numeric == [None, None]
    assert categorical == ["a"]
    assert unexpected == 1


def test_row_values_nan_is_missing_inf_is_invalid() -> None:
    row = {
        "model": "m",
        "model_version": "1",
        "prediction_id": "p",
        "timestamp": "5",
        "features": {"x": math.nan, "y": 1.0, "c": 3.0},
        "prediction": "a",
    }
    event = decode("predictions", row)
    numeric, categorical, _, _ = ModelSchema(MODEL).check_prediction(event)
    assert numeric == [None, 1.0]
    assert categorical == ["3"]  # category codes 3, 3.0 and "3" agree
    row["features"] = {"x": math.inf}
    assert invalid("predictions", row).code == "non_finite"


def test_score_must_be_finite_and_probabilities_can_be_the_score() -> None:
    schema = ModelSchema(
        ModelConfig(
            name="m",
            task="classification",
            features={"x": "numeric"},
            score_field="probabilities.yes",
        )
    )
    event = decode("predictions", pred(score=None, probabilities={"yes": 0.25, "no": 0.75}))
    assert schema.check_prediction(event)[2] == 0.25
    row = {
        "model": "m",
        "model_version": "1",
        "prediction_id": "p",
        "timestamp": 5.0,
        "features": {"x": 1.0},
        "prediction": "a",
        "score": math.inf,
    }
    with pytest.raises(InvalidEvent, match="score: must be finite"):
        ModelSchema(MODEL).check_prediction(decode("predictions", row))


def test_regression_prediction_and_label_types() -> None:
    schema = ModelSchema(ModelConfig(name="r", task="regression", features={"x": "numeric"}))
    event = decode("predictions", pred(model="r", features={"x": 1.0}, prediction="high"))
    with pytest.raises(InvalidEvent, match="regression model predicts a number"):
        schema.check_prediction(event)
    assert schema.error(3.0, 1.5) == 1.5
    with pytest.raises(InvalidEvent, match="regression label must be a finite number"):
        schema.error(3.0, "big")


def test_classification_error_compares_canonical_labels() -> None:
    schema = ModelSchema(MODEL)
    assert schema.error("yes", "yes") == 0.0
    assert schema.error(1.0, 1) == 0.0
    assert schema.error(True, "true") == 0.0
    assert schema.error("yes", "no") == 1.0


def test_outcome() -> None:
    event = decode("outcomes", b'{"model":"m","prediction_id":7,"timestamp":3,"label":"yes"}')
    assert event.prediction_id == 7
    err = invalid("outcomes", b'{"model":"m","prediction_id":7,"timestamp":3}')
    assert "missing required field `label`" in str(err)
