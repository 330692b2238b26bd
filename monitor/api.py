"""driftd's JSON API under /api/v1 (and /openapi.json), framework-free.

``Api.handle(method, path, query, headers, body)`` maps a request to
``(status, content_type, body)`` without a socket; :mod:`monitor.http` routes
to it. GETs are open (the server binds 127.0.0.1 by default); POST and DELETE
need ``Authorization: Bearer <http.api_token>``, which is never logged or
echoed. Errors are ``{"error": "<field>: <reason>"}``. One table,
``Api.routes``, drives both the routing and /openapi.json.

A manual retrain is never silenced and has no cooldown: silences mute what
rules decide on their own, while a manual trigger is an explicit, authenticated
operator request, which a silence would turn into a 202 that does nothing. The
silences it overrides are named in the reply and logged. ``Store.write_batch``
always applies silences, so this decision and its deliveries are inserted here,
in one transaction, idempotent on the decision key.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from urllib.parse import unquote

import msgspec
from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from monitor.config import DriftdConfig
from monitor.store import (
    Store,
    acknowledgements,
    batch_checks,
    decisions,
    deliveries,
    delivery_attempts,
    model_versions,
    signals,
    silences,
)
from triggers.base import idempotency_key

log = logging.getLogger("driftd.api")

MAX_BODY_BYTES = 1 << 20
MAX_LIMIT = 500
RECENT_SECONDS = 7 * 86400.0  # GET /silences also lists silences that ended this recently
JSON = "application/json"
MANUAL_RULE = "manual"
QUERY: dict[str, dict[str, Any]] = {
    "model": {"type": "string"},
    "outcome": {"enum": ["fired", "suppressed", "silenced"]},
    "status": {"enum": ["pending", "delivered", "dead"]},
    "kind": {"enum": ["action", "alert"]},
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
}
ERRORS = {404: "Not found", 409: "Idempotency-Key already used for another request"}
Query = Mapping[str, list[str]]
Headers = Mapping[str, str]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Epoch = Annotated[float, msgspec.Meta(ge=0, le=1e11)]


class _Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class SilenceIn(_Body, frozen=True):
    """Mute decisions of a model ("*": all) and one rule (default: all), for
    ``duration_seconds`` from now or from ``starts_at`` (default now) to ``ends_at``."""

    model: Short
    comment: Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
    created_by: Short
    rule: Short | None = None
    duration_seconds: Annotated[float, msgspec.Meta(gt=0, le=1e10)] | None = None
    starts_at: Epoch | None = None
    ends_at: Epoch | None = None


class AckIn(_Body, frozen=True):
    by: Short
    comment: Annotated[str, msgspec.Meta(max_length=4000)] = ""


class RetrainIn(_Body, frozen=True):
    """``actions`` defaults to the actions of the rules that cover the model."""

    model: Short
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    model_version: Short | None = None
    actions: Annotated[list[Short], msgspec.Meta(min_length=1, max_length=64)] | None = None


class VersionIn(_Body, frozen=True):
    """A new model version, reported by the retraining pipeline when it is deployed."""

    version: Short
    decision_id: Short | None = None
    note: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


BodyT = TypeVar("BodyT", bound=_Body)


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Request:
    path: dict[str, str]  # path parameters, percent-decoded
    args: dict[str, str | None]  # the operation's query parameters
    headers: Headers  # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class Op:
    """An operation; its handler's docstring is its summary."""

    handler: Callable[[Request], Response]
    returns: tuple[str, ...] = ()  # keys the JSON reply always has
    query: tuple[str, ...] = ()
    body: type[_Body] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()  # of ERRORS


def reply(status: int, obj: Any, headers: Headers | None = None) -> Response:
    body = msgspec.json.encode(obj, enc_hook=str) + b"\n"
    return Response(status, body, JSON, dict(headers or {}))


class Api:
    max_body_bytes = MAX_BODY_BYTES

    def __init__(
        self, store: Store, config: DriftdConfig, clock: Callable[[], float] = time.time
    ) -> None:
        self._store, self._config, self._clock = store, config, clock
        v1 = "/api/v1"
        self.routes: dict[str, dict[str, Op]] = {
            f"{v1}/status": {"GET": Op(self._status, ("models",))},
            f"{v1}/decisions": {
                "GET": Op(self._decisions, ("decisions",), ("model", "outcome", "limit"))
            },
            f"{v1}/decisions/{{key}}/ack": {
                "POST": Op(self._ack, ("decision_id",), body=AckIn, errors=(404,))
            },
            f"{v1}/actions": {
                "GET": Op(self._actions, ("deliveries",), ("status", "kind", "limit"))
            },
            f"{v1}/silences": {
                "GET": Op(self._silences, ("silences",), ("limit",)),
                "POST": Op(self._add_silence, ("id",), body=SilenceIn, status=201),
            },
            f"{v1}/silences/{{id}}": {"DELETE": Op(self._expire, ("id",), errors=(404,))},
            f"{v1}/retrain": {
                "POST": Op(self._retrain, ("decision_id", "outcome"), (), RetrainIn, 202, (409,))
            },
            f"{v1}/models/{{model}}/versions": {
                "POST": Op(
                    self._report_version,
                    ("model", "version", "status", "replayed"),
                    body=VersionIn,
                    status=201,
                    errors=(404,),
                )
            },
            "/openapi.json": {"GET": Op(self._openapi, ("openapi", "paths"))},
        }
        self._patterns = [
            (re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)), ops)
            for path, ops in self.routes.items()
        ]

    def handle(
        self, method: str, path: str, query: Query, headers: Headers, body: bytes
    ) -> tuple[int, str, bytes]:
        r = self.respond(method, path, query, headers, body)
        return r.status, r.content_type, r.body

    def respond(
        self, method: str, path: str, query: Query, headers: Headers, body: bytes
    ) -> Response:
        """:meth:`handle` with the response headers (WWW-Authenticate, Allow)."""
        try:
            lower = {k.lower(): v for k, v in headers.items()}
            return self._dispatch(method.upper(), path, query, lower, body)
        except ApiError as exc:
            return reply(exc.status, {"error": exc.message}, exc.headers)
        except OperationalError:
            log.exception("API %s %s: store unavailable", method, path)
            return reply(503, {"error": "store unavailable"})
        except Exception:
            log.exception("API %s %s failed", method, path)
            return reply(500, {"error": "internal error"})

    def too_large(self) -> Response:
        return reply(413, {"error": f"body: larger than {self.max_body_bytes} bytes"})

    def _dispatch(
        self, method: str, path: str, query: Query, headers: Headers, body: bytes
    ) -> Response:
        for pattern, ops in self._patterns:
            if (match := pattern.fullmatch(path)) is None:
                continue
            if (op := ops.get(method)) is None:
                allowed = ", ".join(ops)
                raise ApiError(405, f"{method} not allowed; use {allowed}", {"Allow": allowed})
            if method != "GET":
                self._authorize(headers)
            if len(body) > self.max_body_bytes:
                return self.too_large()
            for name, values in query.items():
                if name not in op.query:
                    known = ", ".join(op.query) or "none"
                    raise ApiError(400, f"{name}: unknown query parameter; known: {known}")
                if len(values) != 1:
                    raise ApiError(400, f"{name}: give it once")
            args = {n: query[n][0] if n in query else None for n in op.query}
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            return op.handler(Request(params, args, headers, body))
        raise ApiError(404, "no such endpoint; see /openapi.json")

    def _authorize(self, headers: Headers) -> None:
        token = self._config.http.api_token
        if token is None:
            raise ApiError(403, "API writes are disabled until http.api_token is set")
        scheme, _, given = headers.get("authorization", "").strip().partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="driftd"'}
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "Authorization: a bearer token is required", challenge)
        if not hmac.compare_digest(given.strip().encode(), token.reveal().encode()):
            challenge["WWW-Authenticate"] += ', error="invalid_token"'
            raise ApiError(401, "Authorization: wrong bearer token", challenge)

    # -- reads -------------------------------------------------------------------
    def _status(self, req: Request) -> Response:
        """Per model: signals, decisions by outcome, deliveries, active silences, the last batch check, live versions"""
        now = self._clock()
        with self._store.engine.connect() as conn:
            models = [self._model_status(conn, m.name, now) for m in self._config.models]
            totals = dict.fromkeys(QUERY["status"]["enum"], 0)
            totals |= _count_by(conn, deliveries.c.status)
        return reply(200, {"time": now, "models": models, "deliveries": totals})

    def _model_status(self, conn: Connection, model: str, now: float) -> dict[str, Any]:
        s, d, dl, si = signals.c, decisions.c, deliveries.c, silences.c
        cols = (s.model_version, s.target, s.detector, s.statistic, s.value, s.position)
        last_sig = _first(conn, select(*cols, s.event_time).where(s.model == model), s.id)
        last_dec = _first(conn, select(decisions).where(d.model == model), d.id)
        total = conn.execute(select(func.count(s.id)).where(s.model == model)).scalar()
        outcomes = dict.fromkeys(QUERY["outcome"]["enum"], 0)
        outcomes |= _count_by(conn, d.outcome, d.model == model)
        of_model = dl.decision_key.in_(select(d.idempotency_key).where(d.model == model))
        sent = _count_by(conn, dl.status, of_model)
        active = select(silences).where(_active(now), si.model.in_((model, "*"))).order_by(si.id)
        bc, mv = batch_checks.c, model_versions.c
        check_cols = (bc.id, bc.window_start, bc.window_end, bc.n_rows, bc.n_labeled)
        last_check = _first(
            conn,
            select(
                *check_cols, bc.drifted_share, bc.failed, bc.summary, bc.report, bc.created_at
            ).where(bc.model == model, bc.segment == ""),
            bc.id,
        )
        live = mv.status.in_(("active", "candidate"))
        version_cols = (mv.version, mv.status, mv.previous_version, mv.looks, mv.reported_at)
        versions = conn.execute(
            select(*version_cols).where(mv.model == model, live).order_by(mv.id)
        )
        return {
            "model": model,
            "signals": {"total": total or 0, "last": last_sig},
            "decisions": {**outcomes, "last": last_dec and _rename(last_dec, "idempotency_key")},
            "deliveries": {"pending": sent.get("pending", 0), "dead": sent.get("dead", 0)},
            "silences": [_silence(r._mapping, now) for r in conn.execute(active)],
            "last_check": last_check,
            "versions": [dict(r._mapping) for r in versions],
        }

    def _decisions(self, req: Request) -> Response:
        """Recent decisions, newest first, with their deliveries and acknowledgement"""
        a, d, dl, ak = req.args, decisions.c, deliveries.c, acknowledgements.c
        where = [d[k] == _choice(k, a[k]) for k in ("model", "outcome") if a[k] is not None]
        query = select(decisions).where(*where).order_by(d.id.desc()).limit(_limit(a["limit"]))
        with self._store.engine.connect() as conn:
            rows = [_rename(r._mapping, "idempotency_key") for r in conn.execute(query)]
            keys = [r["decision_id"] for r in rows]
            sent: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
            found = select(deliveries).where(dl.decision_key.in_(keys)).order_by(dl.id)
            for r in conn.execute(found):
                sent[r.decision_key].append(_rename(r._mapping, "decision_key"))
            found = select(acknowledgements).where(ak.decision_key.in_(keys))
            acks = {r.decision_key: _ack(r._mapping) for r in conn.execute(found)}
        for row in rows:
            row["deliveries"] = sent[row["decision_id"]]
            row["acknowledgement"] = acks.get(row["decision_id"])
        return reply(200, {"decisions": rows})

    def _actions(self, req: Request) -> Response:
        """Recent deliveries to actions and alert channels (the outbox) with their attempts"""
        a, dl, at = req.args, deliveries.c, delivery_attempts.c
        where = [dl[k] == _choice(k, a[k]) for k in ("status", "kind") if a[k] is not None]
        query = select(deliveries).where(*where).order_by(dl.id.desc()).limit(_limit(a["limit"]))
        with self._store.engine.connect() as conn:
            rows = [_rename(r._mapping, "decision_key") for r in conn.execute(query)]
            tries: dict[int, list[dict[str, Any]]] = {r["id"]: [] for r in rows}
            found = select(delivery_attempts).where(at.delivery_id.in_(list(tries)))
            for t in conn.execute(found.order_by(at.id)):
                tries[t.delivery_id].append({k: v for k, v in t._mapping.items() if k != "id"})
        return reply(200, {"deliveries": [{**r, "history": tries[r["id"]]} for r in rows]})

    def _silences(self, req: Request) -> Response:
        """Active, scheduled and recently ended silences, newest first"""
        now, c = self._clock(), silences.c
        cutoff = now - RECENT_SECONDS
        shown = or_(and_(c.expired_at.is_(None), c.ends_at >= cutoff), c.expired_at >= cutoff)
        limit = _limit(req.args["limit"], 100)
        rows = self._store.rows(silences, shown, order_by=c.id.desc(), limit=limit)
        return reply(200, {"silences": [_silence(r, now) for r in rows]})

    # -- writes ------------------------------------------------------------------
    def _add_silence(self, req: Request) -> Response:
        """Create a silence (maintenance window)"""
        b = _decode(req.body, SilenceIn)
        if b.model != "*":
            self._known("model", b.model, [m.name for m in self._config.models])
        if b.rule is not None:
            self._known("rule", b.rule, [r.name for r in self._config.rules])
        now = self._clock()
        if b.duration_seconds is not None:
            if b.starts_at is not None or b.ends_at is not None:
                raise ApiError(400, "duration_seconds: give it or starts_at/ends_at, not both")
            starts, ends = now, now + b.duration_seconds
        elif b.ends_at is None:
            raise ApiError(400, "ends_at: required unless duration_seconds is given")
        else:
            starts, ends = (now if b.starts_at is None else b.starts_at), b.ends_at
            if ends <= max(starts, now):
                raise ApiError(400, "ends_at: must be after starts_at and in the future")
        sid = self._store.add_silence(b.model, b.rule, starts, ends, b.comment, b.created_by)
        log.info("silence %d by %s: model=%s rule=%s", sid, b.created_by, b.model, b.rule or "*")
        return reply(201, {"id": sid, "starts_at": starts, "ends_at": ends})

    def _expire(self, req: Request) -> Response:
        """Expire a silence now"""
        sid = req.path["id"]
        if not (sid.isascii() and sid.isdigit() and len(sid) <= 18):
            raise ApiError(404, f"id: no active silence {sid!r}")
        if not self._store.expire_silence(int(sid)):
            raise ApiError(404, f"id: no active silence {sid!r}")
        log.info("silence %s expired through the API", sid)
        return reply(200, {"id": int(sid), "expired": True})

    def _ack(self, req: Request) -> Response:
        """Acknowledge a decision (the first acknowledgement stands)"""
        key, b = req.path["key"], _decode(req.body, AckIn)
        if len(key) > 128 or not self._store.acknowledge(key, b.by, b.comment):
            raise ApiError(404, f"key: no decision {key!r}")
        (row,) = self._store.rows(acknowledgements, acknowledgements.c.decision_key == key)
        return reply(200, _ack(row))

    def _retrain(self, req: Request) -> Response:
        """Trigger a manual retraining decision; send Idempotency-Key to retry safely"""
        b = _decode(req.body, RetrainIn)
        self._known("model", b.model, [m.name for m in self._config.models])
        if b.actions is not None:
            for i, name in enumerate(b.actions):
                self._known(f"actions[{i}]", name, [a.name for a in self._config.actions])
            actions = list(dict.fromkeys(b.actions))
        else:
            covering = [r for r in self._config.rules if r.model in (b.model, "*")]
            actions = list(dict.fromkeys(a for r in covering for a in r.actions))
            if not actions:
                raise ApiError(400, f"actions: no rule covering {b.model!r} has any; name some")
        client_key = req.headers.get("idempotency-key", "").strip()
        if len(client_key) > 255:
            raise ApiError(400, "Idempotency-Key: longer than 255 characters")
        # Scoped to the model and hashed: a fixed length, and no client key can
        # name a rule's decision or another model's retrain.
        key = idempotency_key(MANUAL_RULE, b.model, client_key) if client_key else uuid.uuid4().hex
        now, version = self._clock(), b.model_version or self._last_version(b.model)
        payload = {
            "decision_id": key, "idempotency_key": key, "rule": MANUAL_RULE, "model": b.model,
            "model_version": version, "severity": "warning", "event_time": now, "signals": [],
            "actions": actions, "alerts": [], "reason": b.reason,
        }  # fmt: skip
        stored = self._insert_manual(payload, now)
        overrode: list[int] = []
        if stored is not None:  # a retry: the same answer, unless the request differs
            same = (stored.get("reason"), stored.get("actions")) == (b.reason, actions)
            if not same or b.model_version not in (None, stored.get("model_version")):
                raise ApiError(409, "Idempotency-Key: already used for another retrain request")
        else:
            c = silences.c
            hits = [
                _active(now),
                c.model.in_((b.model, "*")),
                or_(c.rule.is_(None), c.rule == MANUAL_RULE),
            ]
            overrode = [r["id"] for r in self._store.rows(silences, *hits)]
            log.info("manual retrain %s of %s %s: %s", key, b.model, version, b.reason)
            if overrode:
                log.warning("manual retrain %s overrides silences %s", key, overrode)
        replayed = stored is not None
        out = {"decision_id": key, "outcome": "fired", "actions": actions, "replayed": replayed}
        return reply(202, {**out, "overrode_silences": overrode})

    def _report_version(self, req: Request) -> Response:
        """Report a new model version (retraining done); idempotent per model and version"""
        from monitor.config import VersionsConfig

        name = req.path["model"]
        model = self._config.model(name)
        if model is None:
            raise ApiError(404, f"model: unknown model {name!r}")
        b = _decode(req.body, VersionIn)
        cfg = model.versions or VersionsConfig()
        status = "active" if cfg.on_new_version == "adopt_reference" else "candidate"
        last = self._last_version(name)
        row, replayed = self._store.report_version(
            name,
            b.version,
            status,
            b.decision_id,
            b.note,
            fallback_previous=None if last == "unknown" else last,
        )
        if not replayed:
            log.info(
                "model %s: version %s reported (%s, previous %s)",
                name,
                b.version,
                row["status"],
                row["previous_version"],
            )
        out = {k: row[k] for k in ("model", "version", "previous_version", "status")}
        out |= {"decision_id": row["decision_key"], "reported_at": row["reported_at"]}
        return reply(201, {**out, "replayed": replayed})

    def _insert_manual(self, payload: dict[str, Any], now: float) -> dict[str, Any] | None:
        """Store the decision and its pending deliveries; if its key is stored
        already, store nothing and return the stored payload."""
        d, key = decisions.c, payload["idempotency_key"]
        cols = {k: payload[k] for k in ("rule", "model", "model_version", "severity")}
        try:
            with self._store.engine.begin() as conn:
                seen = conn.execute(select(d.payload).where(d.idempotency_key == key)).first()
                if seen is not None:
                    return dict(seen.payload)
                values = {"idempotency_key": key, "outcome": "fired", "event_time": now}
                values |= {"payload": payload, "created_at": now, **cols}
                conn.execute(insert(decisions).values(**values))
                row = {"decision_key": key, "kind": "action", "status": "pending", "attempts": 0}
                row |= {"next_attempt_at": now, "created_at": now}
                conn.execute(insert(deliveries), [{**row, "target": a} for a in payload["actions"]])
            return None
        except IntegrityError:  # a concurrent retry with the same key won the insert
            (found,) = self._store.rows(decisions, d.idempotency_key == key)
            return dict(found["payload"])

    def _known(self, field_name: str, name: str, known: list[str]) -> None:
        if name not in known:
            what = field_name.split("[")[0].rstrip("s")
            raise ApiError(400, f"{field_name}: unknown {what} {name!r}; configured: {known}")

    def _last_version(self, model: str) -> str:
        for table in (signals, decisions):
            found = self._store.rows(
                table, table.c.model == model, order_by=table.c.id.desc(), limit=1
            )
            if found:
                return str(found[0]["model_version"])
        return "unknown"

    # -- /openapi.json -------------------------------------------------------------
    def _openapi(self, req: Request) -> Response:
        """This document (OpenAPI 3.1)"""
        return reply(200, self.openapi())

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document, built from :attr:`routes`; the body
        schemas come from the msgspec Structs that validate the bodies."""
        structs = (SilenceIn, AckIn, RetrainIn, VersionIn)
        _, schemas = msgspec.json.schema_components(
            structs, ref_template="#/components/schemas/{name}"
        )
        schemas["Error"] = _obj("error", error={"type": "string"})
        paths: dict[str, Any] = {}
        for path, text, types in (
            ("/metrics", "Prometheus metrics", ["text/plain", "application/openmetrics-text"]),
            ("/healthz", "Liveness: the run loop's heartbeat", [JSON]),
            ("/readyz", "Readiness: sources connected, store reachable", [JSON]),
        ):
            codes = ("200",) if path == "/metrics" else ("200", "503")
            answer = {"description": text, "content": {t: {} for t in types}}
            paths[path] = {"get": {"summary": text, "responses": dict.fromkeys(codes, answer)}}
        for path, ops in self.routes.items():
            paths[path] = {m.lower(): _operation(path, m, op) for m, op in ops.items()}
        bearer = {"bearer": {"type": "http", "scheme": "bearer"}}
        return {
            "openapi": "3.1.0",
            "info": {"title": "driftd", "version": "1"},
            "paths": paths,
            "components": {"schemas": schemas, "securitySchemes": bearer},
        }


# -- helpers ---------------------------------------------------------------------
def _operation(path: str, method: str, op: Op) -> dict[str, Any]:
    summary = (op.handler.__doc__ or "").strip()
    codes = {400: "Invalid body, path or query parameter"}
    if method != "GET":
        codes |= {401: "No or wrong token", 403: "No http.api_token set", 413: "Body over 1 MiB"}
    codes |= {c: ERRORS[c] for c in op.errors} | {503: "Store unavailable"}
    texts = {op.status: summary} | codes
    schemas = {op.status: _obj(*op.returns)} | {
        c: {"$ref": "#/components/schemas/Error"} for c in codes
    }
    responses = {
        str(c): {"description": texts[c], "content": {JSON: {"schema": schemas[c]}}} for c in texts
    }
    out: dict[str, Any] = {"summary": summary, "responses": responses}
    params = [
        {
            "name": n,
            "in": "path",
            "required": True,
            "schema": {"type": "integer" if n == "id" else "string"},
        }
        for n in re.findall(r"\{(\w+)\}", path)
    ] + [{"name": n, "in": "query", "schema": QUERY[n]} for n in op.query]
    if op.body is RetrainIn:
        params.append({"name": "Idempotency-Key", "in": "header", "schema": {"maxLength": 255}})
    if params:
        out["parameters"] = params
    if op.body is not None:
        schema = {"$ref": f"#/components/schemas/{op.body.__name__}"}
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": schema}}}
    if method != "GET":
        out["security"] = [{"bearer": []}]
    return out


def _obj(*required: str, **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


def _decode(body: bytes, typ: type[BodyT]) -> BodyT:
    try:
        return msgspec.json.decode(body, type=typ)
    except msgspec.ValidationError as exc:
        msg, sep, at = str(exc).partition(" - at `$")
        where = at.rstrip("`").lstrip(".") if sep else "body"
        if m := re.fullmatch(r"Object missing required field `(.+)`", msg):
            msg, where = "required field is missing", m.group(1)
        elif m := re.fullmatch(r"Object contains unknown field `(.+)`", msg):
            msg, where = f"unknown field; valid: {', '.join(typ.__struct_fields__)}", m.group(1)
        raise ApiError(400, f"{where}: {msg}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"body: not valid JSON ({exc})") from None


def _limit(raw: str | None, default: int = 50) -> int:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
        raise ApiError(400, f"limit: must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def _choice(name: str, raw: str | None) -> str | None:
    choices = QUERY[name].get("enum")
    if choices is not None and raw not in choices:
        raise ApiError(400, f"{name}: must be one of {', '.join(choices)}")
    return raw


def _active(now: float) -> Any:
    c = silences.c
    return and_(c.starts_at <= now, c.ends_at > now, c.expired_at.is_(None))


def _first(conn: Connection, query: Any, id_col: Any) -> dict[str, Any] | None:
    row = conn.execute(query.order_by(id_col.desc()).limit(1)).first()
    return None if row is None else dict(row._mapping)


def _count_by(conn: Connection, col: Any, *where: Any) -> dict[str, int]:
    rows = conn.execute(select(col, func.count()).where(*where).group_by(col))
    return {str(k): int(n) for k, n in rows}


def _rename(r: Mapping[Any, Any], key: str) -> dict[str, Any]:
    """A row with its decision key as "decision_id", the name clients see."""
    return {"decision_id": r[key], **{k: v for k, v in r.items() if k != key}}


def _ack(r: Mapping[Any, Any]) -> dict[str, Any]:
    by, at = r["acknowledged_by"], r["acknowledged_at"]
    return {
        "decision_id": r["decision_key"],
        "by": by,
        "comment": r["comment"],
        "acknowledged_at": at,
    }


def _silence(r: Mapping[Any, Any], now: float) -> dict[str, Any]:
    expired, ended, future = r["expired_at"] is not None, r["ends_at"] <= now, r["starts_at"] > now
    state = "expired" if expired else "ended" if ended else "scheduled" if future else "active"
    return {**r, "state": state}
