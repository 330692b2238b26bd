"""Prediction and outcome events: the wire schema, decoding and validation.

Decoding is one msgspec pass (JSON bytes, or a row from a CSV/Parquet file)
into a typed struct; :class:`ModelSchema` then checks the event against its
model's declared features. Both are pure and safe to repeat. Any problem is an
:class:`InvalidEvent` with a short ``code`` (a metric label) and a message that
names the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import msgspec

from monitor.config import ModelConfig

PREDICTIONS = "predictions"
OUTCOMES = "outcomes"

Scalar = float | str | bool


class PredictionEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    model: str
    model_version: str | int
    prediction_id: str | int
    # Epoch seconds, or an RFC 3339 string ("2026-01-31T12:00:00Z").
    timestamp: float | datetime
    features: dict[str, float | str | bool | None]
    prediction: float | str | bool
    score: float | None = None
    probabilities: dict[str, float] | None = None


class RawPrediction(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A :class:`PredictionEvent` whose ``features`` are left as raw JSON, for
    the per-event path: once the model is known, its own typed struct decodes
    them (:meth:`ModelSchema.features_of`)."""

    model: str
    model_version: str | int
    prediction_id: str | int
    timestamp: float | datetime
    features: msgspec.Raw
    prediction: float | str | bool
    score: float | None = None
    probabilities: dict[str, float] | None = None


class OutcomeEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    model: str
    prediction_id: str | int
    timestamp: float | datetime
    label: float | str | bool


class InvalidEvent(ValueError):
    """A record that cannot be processed; ``code`` is a low-cardinality reason."""

    def __init__(self, code: str, message: str, model: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.model = model


_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    PREDICTIONS: msgspec.json.Decoder(PredictionEvent),
    OUTCOMES: msgspec.json.Decoder(OutcomeEvent),
}
_TYPES: dict[str, type[msgspec.Struct]] = {PREDICTIONS: PredictionEvent, OUTCOMES: OutcomeEvent}

#: The bare msgspec decoders of JSON bytes, for the per-event path: it calls
#: them directly and falls back to :func:`decode` (which raises the
#: InvalidEvent naming the problem, or converts a row) when they raise.
#: JSON cannot carry NaN or infinity and msgspec rejects out-of-range numbers,
#: so every float they return is finite.
decode_prediction_json: Callable[[bytes], PredictionEvent] = _DECODERS[PREDICTIONS].decode
decode_outcome_json: Callable[[bytes], OutcomeEvent] = _DECODERS[OUTCOMES].decode
decode_raw_prediction_json: Callable[[bytes], RawPrediction] = msgspec.json.Decoder(
    RawPrediction
).decode
_astuple = msgspec.structs.astuple


def decode(stream: str, value: bytes | Mapping[str, Any]) -> PredictionEvent | OutcomeEvent:
    """Decode one record of ``stream`` ("predictions" or "outcomes").

    ``value`` is JSON bytes (Kafka, JSONL) or an already split row (CSV,
    Parquet), whose strings are converted where the schema wants numbers.
    """
    try:
        if isinstance(value, bytes | bytearray | memoryview):
            event: Any = _DECODERS[stream].decode(value)
        else:
            event = msgspec.convert(value, _TYPES[stream], strict=False)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: test it first
        raise InvalidEvent("schema", _path_message(str(exc))) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent("malformed", f"not valid JSON: {exc}") from None
    return event


def _path_message(message: str) -> str:
    # msgspec says "Expected `str`, got `int` - at `$.model`": put the field first.
    text, sep, path = message.rpartition(" - at `$.")
    if not sep:
        return message
    return f"{path.rstrip('`')}: {text}"


def epoch_seconds(ts: float | datetime) -> float:
    """Event time as epoch seconds; a naive datetime is taken as UTC."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return ts.timestamp()
    if not math.isfinite(ts):
        raise InvalidEvent("non_finite", f"timestamp: must be finite, got {ts!r}")
    return ts


def category_key(value: Scalar) -> str:
    """The canonical string of a categorical value (1, 1.0 and "1" agree)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class ModelSchema:
    """Checks events of one model against its configuration.

    Built once per model at start. On the hot path: ``features_of`` and
    ``check_features`` for JSON events, ``check`` for the others.
    """

    __slots__ = (
        "_decode_features",
        "_floats",
        "_pick_numeric",
        "all_features",
        "categorical",
        "config",
        "numeric",
        "probability_key",
        "task",
    )

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.task = config.task
        self.numeric = tuple(config.numeric_features())
        self.categorical = tuple(config.categorical_features())
        self.all_features = frozenset(config.features)
        self.probability_key = (
            config.score_field.split(".", 1)[1] if config.score_field != "score" else None
        )
        # The fast path of ``check``: every numeric feature in one C call
        # (itemgetter returns a tuple from two names on), all of them floats.
        self._pick_numeric = itemgetter(*self.numeric) if len(self.numeric) >= 2 else None
        self._floats = [float] * len(self.numeric)
        # The features of this model as a typed struct: numeric ones
        # ``float | None``, categorical ones what PredictionEvent takes, every
        # one optional, no other key. msgspec then does all the checking of
        # the common event; anything else fails to decode and takes the
        # general path (which names the problem, or counts what is unexpected).
        names = (*self.numeric, *self.categorical)
        fields = [
            (f"f{i}", float | None if i < len(self.numeric) else float | str | bool | None, None)
            for i in range(len(names))
        ]
        struct = msgspec.defstruct(
            "Features",
            fields,
            forbid_unknown_fields=True,
            gc=False,
            rename={f"f{i}": name for i, name in enumerate(names)},
        )
        self._decode_features = msgspec.json.Decoder(struct).decode

    def check_prediction(
        self, event: PredictionEvent
    ) -> tuple[list[float | None], list[str | None], float | None, int]:
        """Numeric values, categorical values, the score, and unexpected-feature count.

        A missing feature, ``null`` or NaN is ``None`` (a data-quality count,
        not an error); a value of the wrong type or ±inf is an error.
        """
        numeric, categorical, score, unexpected, _ = self.check(event)
        return numeric, categorical, score, unexpected

    def check(
        self, event: PredictionEvent, finite: bool = False
    ) -> tuple[list[float | None], list[str | None], float | None, int, int]:
        """:meth:`check_prediction`, plus the number of missing values. The
        per-event path's entry. ``finite``: the event was decoded from JSON, so
        its numbers are finite already (see ``decode_prediction_json``).
        """
        features = event.features
        pick = self._pick_numeric
        if pick is not None:
            try:
                values = pick(features)
            except KeyError:  # a numeric feature is absent: missing, below
                values = None
            # msgspec decodes every number as an exact float: a bool, str or
            # None has another type, and takes the per-value path below.
            if values is not None and [*map(type, values)] == self._floats:
                if not finite:
                    total = sum(values)  # NaN or ±inf in, NaN or ±inf out
                if finite or total - total == 0.0:
                    numeric = list(values)
                    if not self.categorical:
                        # Every declared feature is present: the rest are extra.
                        unexpected = len(features) - len(values)
                        return numeric, [], self._score(event, finite), unexpected, 0
                    categorical, missing = self._categorical(features)
                    keys = features.keys()
                    unexpected = 0 if keys <= self.all_features else len(keys - self.all_features)
                    return numeric, categorical, self._score(event, finite), unexpected, missing
        return self._check_slow(event)

    def features_of(self, event: RawPrediction) -> tuple[Any, ...] | None:
        """The values of ``event``'s features, numeric then categorical, in
        declared order (None: absent or null); or None when they are anything
        but the model's declared features with values of the types it takes
        there: then :func:`decode` and :meth:`check` deal with the event."""
        try:
            return _astuple(self._decode_features(event.features))
        except msgspec.DecodeError:  # ValidationError too
            return None

    def check_features(
        self, event: RawPrediction, values: tuple[Any, ...]
    ) -> tuple[list[float | None], list[str | None], float | None, int, int]:
        """:meth:`check` of an event decoded by ``decode_raw_prediction_json``,
        given :meth:`features_of` it: what msgspec checked is not checked again."""
        n = len(self.numeric)
        categorical: list[str | None] = []
        if self.categorical:
            numeric = list(values[:n])
            missing = 0
            for c in values[n:]:
                if c is None:
                    categorical.append(None)
                    missing += 1
                else:
                    categorical.append(category_key(c))
        else:
            numeric = list(values)
            missing = 0
        try:
            sum(numeric)  # floats only, or a TypeError
        except TypeError:
            missing += n - sum(1 for v in numeric if v is not None)
        return numeric, categorical, self._score(event, True), 0, missing

    def _check_slow(
        self, event: PredictionEvent
    ) -> tuple[list[float | None], list[str | None], float | None, int, int]:
        features = event.features
        numeric: list[float | None] = []
        get = features.get
        append = numeric.append
        missing = 0
        for name in self.numeric:
            v = get(name)
            if type(v) is float and v - v == 0.0:  # finite: inf - inf and NaN - NaN are NaN
                append(v)
            elif v is None or (type(v) is float and v != v):  # NaN from CSV/Parquet: missing
                append(None)
                missing += 1
            elif type(v) is float:
                raise InvalidEvent("non_finite", f"features.{name}: must be finite", event.model)
            else:
                raise InvalidEvent(
                    "feature_type",
                    f"features.{name}: numeric feature got {type(v).__name__} {v!r}",
                    event.model,
                )
        categorical, missing_categorical = self._categorical(features)
        keys = features.keys()
        unexpected = 0 if keys <= self.all_features else len(keys - self.all_features)
        return numeric, categorical, self._score(event), unexpected, missing + missing_categorical

    def _categorical(self, features: Mapping[str, Any]) -> tuple[list[str | None], int]:
        categorical: list[str | None] = []
        missing = 0
        for name in self.categorical:
            c = features.get(name)
            if c is None or (type(c) is float and c != c):
                categorical.append(None)
                missing += 1
            else:
                categorical.append(category_key(c))
        return categorical, missing

    def _score(self, event: PredictionEvent | RawPrediction, finite: bool = False) -> float | None:
        if self.probability_key is not None:
            probs = event.probabilities
            score = probs.get(self.probability_key) if probs is not None else None
        else:
            score = event.score
        if score is not None and not finite and not math.isfinite(score):
            raise InvalidEvent("non_finite", "score: must be finite", event.model)
        if self.task == "regression" and event.prediction is not None:
            p = event.prediction
            if isinstance(p, bool) or not isinstance(p, float):
                raise InvalidEvent(
                    "prediction_type",
                    f"prediction: a regression model predicts a number, got {p!r}",
                    event.model,
                )
            if not math.isfinite(p):
                raise InvalidEvent("non_finite", "prediction: must be finite", event.model)
        return score

    def error(self, prediction: Scalar, label: Scalar) -> float:
        """The per-event error: 0/1 for classification, |p - y| for regression."""
        if self.task == "classification":
            if type(prediction) is str and type(label) is str:  # their own category keys
                return 0.0 if prediction == label else 1.0
            return 0.0 if category_key(prediction) == category_key(label) else 1.0
        if isinstance(label, bool) or not isinstance(label, float) or not math.isfinite(label):
            raise InvalidEvent(
                "label_type", f"label: a regression label must be a finite number, got {label!r}"
            )
        return abs(float(prediction) - label)
