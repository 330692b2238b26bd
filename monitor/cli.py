"""The ``driftd`` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from monitor.config import ConfigError, DriftdConfig, load_config, to_builtins

log = logging.getLogger("driftd")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="driftd", description="Drift monitoring and retraining daemon"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", default="config.toml")
    run.add_argument(
        "--keep-serving",
        action="store_true",
        help="when a replay ends, keep serving /metrics until SIGTERM/SIGINT",
    )
    run.add_argument("--http-bind", help="override http.bind (HOST:PORT)")

    check = sub.add_parser("check-config", help="validate a config file and print it normalized")
    check.add_argument("path", nargs="?", default="config.toml")

    replay = sub.add_parser(
        "replay", help="backtest: run the decision engine over files, acting on nothing"
    )
    replay.add_argument("file", help="predictions file (JSONL, CSV or Parquet)")
    replay.add_argument("--outcomes", help="outcomes file, joined to the predictions")
    replay.add_argument("--config", default="config.toml")

    chk = sub.add_parser(
        "check", help="run a model's batch checks once on the stored windows and print them"
    )
    chk.add_argument("--model", required=True)
    chk.add_argument("--config", default="config.toml")
    base = sub.add_parser("baseline", help="build and store a model's reference profile")
    base.add_argument("--model", required=True)
    base.add_argument(
        "--version",
        default="",
        help="store it for this model version (from its version_references entry if any)",
    )
    base.add_argument("--config", default="config.toml")

    for name, helptext in (
        ("decisions", "list stored decisions and their deliveries"),
        ("signals", "list stored drift signals"),
        ("dead-letters", "list stored bad records"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--config", default="config.toml")
        p.add_argument("--model")
        p.add_argument("--limit", type=int, default=50)

    args = parser.parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.path)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"driftd: config error: {exc}", file=sys.stderr)
        return 2
    if args.command == "run":
        return _run(config, args)
    if args.command == "replay":
        from monitor.backtest import backtest
        from monitor.logs import setup_logging

        setup_logging("WARNING", config.logging.format)
        print(backtest(config, args.file, args.outcomes))
        return 0
    if args.command in ("check", "baseline"):
        return _batch(config, args)
    return _query(config, args)


def _batch(config: DriftdConfig, args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from monitor.batch import BatchRunner, baseline, render, stored_window
    from monitor.metrics import Metrics
    from monitor.store import Store, make_engine

    model = config.model(args.model)
    if model is None or model.batch is None:
        print(f"driftd: model {args.model!r} has no [models.batch] section", file=sys.stderr)
        return 2
    pw = config.storage.password.reveal() if config.storage.password else None
    engine = make_engine(config.storage.url, pw)
    try:
        store = Store(engine)
        store.create_schema()
        window = stored_window(store, model.name)
        if args.command == "baseline":
            try:
                print(baseline(config, store, model.name, window, args.version))
            except ValueError as exc:
                print(f"driftd: {exc}", file=sys.stderr)
                return 2
            return 0
        runner = BatchRunner(
            config, store, Metrics(CollectorRegistry()), lambda _m: None, lambda _s: None
        )
        outcome = runner.run(model.name, window)
        print(render(outcome))
        return 1 if outcome.status == "failed" else 0
    finally:
        engine.dispose()


def _check_config(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"driftd: config error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(to_builtins(config), indent=2))
    return 0


def _run(config: DriftdConfig, args: argparse.Namespace) -> int:
    from monitor.logs import setup_logging

    setup_logging(config.logging.level, config.logging.format)
    if args.http_bind:
        import msgspec

        from monitor.config import HttpConfig

        config = msgspec.structs.replace(
            config, http=HttpConfig(bind=args.http_bind, api_token=config.http.api_token)
        )
    from monitor.daemon import Daemon

    daemon = Daemon(config)
    interrupts = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Only set a flag: the loop finishes its batch, checkpoints and exits.
        nonlocal interrupts
        interrupts += 1
        if signum == signal.SIGINT and interrupts > 1:
            os._exit(130)  # a second Ctrl-C: leave now, the last checkpoint stands
        daemon.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return daemon.run(keep_serving=args.keep_serving)


def _query(config: DriftdConfig, args: argparse.Namespace) -> int:
    from monitor.store import Store, dead_letters, decisions, deliveries, make_engine, signals

    pw = config.storage.password.reveal() if config.storage.password else None
    engine = make_engine(config.storage.url, pw)
    try:
        store = Store(engine)
        store.create_schema()
        table = {"decisions": decisions, "signals": signals, "dead-letters": dead_letters}[
            args.command
        ]
        where = [table.c.model == args.model] if args.model else []
        rows = store.rows(table, *where, order_by=table.c.id.desc(), limit=args.limit)
        for row in rows:
            if args.command == "decisions":
                row["deliveries"] = store.rows(
                    deliveries, deliveries.c.decision_key == row["idempotency_key"]
                )
            if isinstance(row.get("payload"), bytes):
                row["payload"] = row["payload"].decode("utf-8", "replace")
            print(json.dumps(row, default=str, sort_keys=True))
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
