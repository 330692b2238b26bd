"""End-to-end Kafka throughput of one driftd process, next to the clients' ceilings.

Produces N prediction events (JSON, 20 numeric features, ~560 bytes; the
generator of bench_kafka_consume.py) to a 4-partition predictions topic, with
an empty 4-partition outcomes topic, then for each client library:

- ``raw``: the library alone reading the topic (``bench_kafka_consume.run_raw``);
- ``source``: driftd's ``KafkaSource.poll`` alone (records built, no processing);
- ``driftd``: ``driftd run`` as a subprocess (SQLite store, ADWIN on all 20
  features, default batch size, checkpoint interval and backpressure bound)
  consuming the same topic in a fresh group. The rate is events per second
  consumed *and* processed (``driftd_events_total`` read from its /metrics
  every 0.1 s, from the first processed event to the last); the checkpoint
  cost comes from its ``driftd_checkpoint_seconds`` histogram; peak RSS is
  the process's VmHWM.

Each ``driftd`` run is sampled by py-spy (if on PATH) for ``--sample-seconds``
(default 3) from its first processed event: the share of the run loop in each
stage (poll, pipeline, join, checkpoint, writes) and the functions holding
the samples. A sampler, not cProfile: cProfile's per-call hooks slow the
Python side several times, which changes what the client's consume() waits
for and made it look like half of the loop. ``--profile-events N`` still adds
a cProfile of an in-process ``Daemon`` over N events (function counts).

A Tansu broker (see ../shared/kafka.md) is started on 127.0.0.1 and killed at
the end, unless ``--bootstrap`` names one. Every wait is bounded; processes
are stopped by PID.

    python bench/bench_kafka_e2e.py --events 1000000
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_kafka_consume as kc  # noqa: E402

from connectors.kafka_source import KafkaSettings  # noqa: E402

FEATURES = [f"f{j:02d}" for j in range(20)]
STALL_SECONDS = 60.0
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? ([-+0-9.eEinfaN]+)$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_text(db: Path, bootstrap: str, topic: str, client: str, group: str, port: int) -> str:
    feats = ", ".join(f'{f} = "numeric"' for f in FEATURES)
    return f"""
schema = "driftd.config/1"
[storage]
url = "sqlite:///{db}"
[http]
bind = "127.0.0.1:{port}"
[logging]
level = "WARNING"
[[sources]]
type = "kafka"
name = "bench"
bootstrap_servers = "{bootstrap}"
predictions_topic = "{topic}"
outcomes_topic = "{topic}-outcomes"
client = "{client}"
group_id = "{group}"
session_timeout_ms = 6000
heartbeat_interval_ms = 1000
[[models]]
name = "churn"
task = "classification"
features = {{ {feats} }}
  [[models.detectors]]
  type = "adwin"
  on = ["numeric_features"]
"""


def scrape(port: int) -> dict[str, float]:
    """driftd's /metrics as {"name{labels}": value} (sums over nothing)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def histogram_quantile(samples: dict[str, float], name: str, q: float) -> float:
    """Upper bound of the bucket holding quantile ``q`` (Prometheus-style)."""
    buckets = sorted(
        (float(re.search(r'le="([^"]+)"', k).group(1)), v)  # type: ignore[union-attr]
        for k, v in samples.items()
        if k.startswith(f"{name}_bucket{{")
    )
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    target = q * buckets[-1][1]
    return next(le for le, count in buckets if count >= target)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_driftd(
    bootstrap: str, topic: str, client: str, n: int, tmp: Path, sample_seconds: int = 0
) -> dict[str, Any]:
    """``driftd run`` on the topic until it processed ``n`` events; its figures.
    With ``sample_seconds`` and py-spy on PATH, py-spy samples the process for
    that long from its first processed event (``r["samples"]``: a raw file)."""
    port = free_port()
    group = f"e2e-{uuid.uuid4().hex[:8]}"
    cfg = tmp / f"e2e-{client}.toml"
    cfg.write_text(config_text(tmp / f"e2e-{client}.db", bootstrap, topic, client, group, port))
    log = open(tmp / f"e2e-{client}.log", "wb")
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "run", "--config", str(cfg)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    samples: list[tuple[float, float]] = []
    last: dict[str, float] = {}
    rss = float("nan")
    spy_out = tmp / f"e2e-{client}.pyspy"
    spy: subprocess.Popen[bytes] | None = None
    py_spy = shutil.which("py-spy") if sample_seconds > 0 else None
    try:
        progress = time.monotonic()
        count = 0.0
        while count < n and not kc.STOP:
            if proc.poll() is not None:
                raise RuntimeError(f"driftd exited with {proc.returncode}; see {log.name}")
            try:
                last = scrape(port)
            except OSError:
                time.sleep(0.1)
                if time.monotonic() - began > STALL_SECONDS:
                    raise RuntimeError("driftd's /metrics never came up") from None
                continue
            now = time.monotonic()
            new = metric(last, "driftd_events_total", stream="predictions")
            if new > count:
                count, progress = new, now
                samples.append((now, count))
                if py_spy is not None and spy is None:
                    spy = subprocess.Popen(
                        [py_spy, "record", "--nonblocking", "--threads", "-r", "200", "-f", "raw",
                         "-d", str(sample_seconds), "-o", str(spy_out), "--pid", str(proc.pid)],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                    )  # fmt: skip
            elif now - progress > STALL_SECONDS:
                print(f"  driftd stalled at {count:.0f} events", file=sys.stderr)
                break
            rss = peak_rss_mb(proc.pid)
            time.sleep(0.1)
        # At least one checkpoint (every 5 s by default) for its cost.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            last = scrape(port)
            if metric(last, "driftd_checkpoint_seconds_count") >= 1:
                break
            time.sleep(0.1)
        rss = peak_rss_mb(proc.pid)
        if spy is not None:
            spy.wait(timeout=sample_seconds + 30)
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait(timeout=10)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
    if len(samples) < 2:
        raise RuntimeError(f"too few samples ({samples}); see {log.name}")
    (t0, c0), (t1, c1) = samples[0], samples[-1]
    ck_n = metric(last, "driftd_checkpoint_seconds_count")
    ck_sum = metric(last, "driftd_checkpoint_seconds_sum")
    batch_sum = metric(last, "driftd_batch_processing_seconds_sum")
    return {
        "events": int(c1),
        "join_s": t0 - began,
        "read_s": t1 - t0,
        "events_per_s": (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0,
        "checkpoints": int(ck_n),
        "checkpoint_mean_ms": 1000 * ck_sum / ck_n if ck_n else float("nan"),
        "checkpoint_p99_le_ms": 1000 * histogram_quantile(last, "driftd_checkpoint_seconds", 0.99),
        "checkpoint_share": ck_sum / (t1 - t0) if t1 > t0 else float("nan"),
        "batch_share": batch_sum / (t1 - t0) if t1 > t0 else float("nan"),
        "peak_rss_mb": rss,
        "samples": str(spy_out) if spy is not None and spy_out.exists() else None,
    }


#: Stages of the run loop, for the inclusive shares of a sampled profile.
STAGES = (
    ("KafkaSource.poll", "poll: client consume + records"),
    ("Pipeline.process", "pipeline: decode, detectors, join"),
    ("JoinBuffer.add_prediction", "  of which the join"),
    ("Daemon.checkpoint", "checkpoint: pickle + SQL"),
    ("Daemon._write", "writing signals and counts"),
)


def summarize_samples(path: str, top: int) -> str:
    """The run-loop thread of a py-spy raw profile: inclusive share of each
    stage, then the functions that hold the samples (a C call, such as the
    client's consume, counts for the Python function that made it)."""
    total = 0
    own: dict[str, int] = {}
    stages = dict.fromkeys((name for name, _ in STAGES), 0)
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames or "MainThread" not in frames[0]:
            continue
        k = int(count)
        total += k
        names = [f.split(" (", 1)[0] for f in frames[1:]]
        for name in stages:
            if name in names:
                stages[name] += k
        leaf = frames[-1]
        fn, _, where = leaf.partition(" (")
        module = where.rsplit(":", 1)[0]
        own_key = f"{fn} ({module})"
        own[own_key] = own.get(own_key, 0) + k
    if not total:
        return "py-spy recorded no samples of the run loop"
    out = io.StringIO()
    out.write(f"py-spy samples of the run loop ({total} samples at 200 Hz):\n")
    for name, label in STAGES:
        out.write(f"  {label:<40}{100 * stages[name] / total:>6.1f}%\n")
    out.write("  functions by own samples:\n")
    for key, k in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        out.write(f"    {100 * k / total:>5.1f}%  {key}\n")
    return out.getvalue()


def profile(bootstrap: str, topic: str, client: str, n: int, tmp: Path, top: int) -> str:
    """cProfile of the run loop of an in-process Daemon over ``n`` events."""
    from prometheus_client import CollectorRegistry

    from monitor.config import load_config
    from monitor.daemon import Daemon

    cfg = tmp / f"profile-{client}.toml"
    cfg.write_text(config_text(tmp / f"profile-{client}.db", bootstrap, topic, client,
                               f"prof-{uuid.uuid4().hex[:8]}", free_port()))  # fmt: skip
    registry = CollectorRegistry()
    daemon = Daemon(load_config(cfg), registry=registry)
    deadline = time.monotonic() + max(120.0, n / 2000)

    def stop_after_n() -> None:
        while time.monotonic() < deadline and not kc.STOP:
            got = registry.get_sample_value(
                "driftd_events_total", {"model": "churn", "stream": "predictions"}
            )
            if got is not None and got >= n:
                break
            time.sleep(0.05)
        daemon.request_stop()

    watcher = threading.Thread(target=stop_after_n, daemon=True)
    watcher.start()
    prof = cProfile.Profile()
    began = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        stdout, sys.stdout = sys.stdout, devnull
        try:
            prof.runcall(daemon.run, serve_http=False)
        finally:
            sys.stdout = stdout
    elapsed = time.perf_counter() - began
    watcher.join(5)
    stats = pstats.Stats(prof)
    groups: dict[str, float] = {}
    for (filename, _line, fn), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = _where(filename, fn)
        groups[where] = groups.get(where, 0.0) + tt
    waiting = groups.pop(WAITING, 0.0)
    busy = sum(groups.values()) or 1.0
    buf = io.StringIO()
    buf.write(f"cProfile of the run loop, {client}, {n:,} events, {elapsed:.1f}s wall; "
              f"{waiting:.1f}s waiting (group join, empty polls) left out; "
              f"self time by place, % of the {busy:.1f}s busy:\n")  # fmt: skip
    for where, tt in sorted(groups.items(), key=lambda kv: -kv[1])[:12]:
        buf.write(f"  {where:<58}{tt:>7.2f}s {100 * tt / busy:>5.1f}%\n")
    buf.write(f"top {top} functions by self time:\n")
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


WAITING = "waiting"


def _where(filename: str, fn: str) -> str:
    """Where a profiled function lives: a package, a driftd module, or for
    built-ins their own name (lock waits are the loop blocked in a poll)."""
    if filename == "~":
        if fn.startswith("<method 'acquire' of '_thread") or "select" in fn or "poll" in fn:
            return WAITING
        return f"builtin {fn}"
    path = filename.replace("\\", "/")
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in path:
            rest = path.split(marker, 1)[1]
            return (
                rest.split("/", 1)[0]
                if marker == "/site-packages/"
                else "stdlib:" + rest.split("/")[1]
            )
    if str(ROOT) in path:
        return "driftd:" + path.split(str(ROOT) + "/", 1)[1]
    return path if path.startswith("<") else Path(path).name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2000, help="records per poll (raw/source)")
    ap.add_argument("--clients", default="kafka-python,confluent")
    ap.add_argument("--sample-seconds", type=int, default=3,
                    help="py-spy sampling of each driftd run (if py-spy is on PATH); 0: none")  # fmt: skip
    ap.add_argument("--profile-events", type=int, default=0,
                    help="also cProfile an in-process run of this many events")  # fmt: skip
    ap.add_argument("--profile-client", default="kafka-python")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--bootstrap", help="use this broker instead of starting Tansu")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, kc._request_stop)
    signal.signal(signal.SIGTERM, kc._request_stop)

    clients = [c for c in args.clients.split(",") if c]
    if "confluent" in clients and importlib.util.find_spec("confluent_kafka") is None:
        print("confluent-kafka not installed: skipping it (pip install 'driftd[confluent]')")
        clients.remove("confluent")
    broker = None if args.bootstrap else kc.Tansu()
    bootstrap = args.bootstrap or f"127.0.0.1:{broker.port}"  # type: ignore[union-attr]
    results: list[dict[str, Any]] = []
    sampled: list[str] = []
    profile_text = ""
    try:
        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp_name:
            tmp = Path(tmp_name)
            topic = f"e2e-{uuid.uuid4().hex[:8]}"
            kc.create_topics(bootstrap, [topic, topic + "-outcomes"], args.partitions)
            seconds, nbytes = kc.produce(bootstrap, topic, args.events, args.partitions)
            print(f"produced {args.events:,} events ({nbytes / args.events:.0f} B avg, 20 numeric "
                  f"features) to {args.partitions} partitions in {seconds:.1f}s; "
                  f"outcomes topic empty")  # fmt: skip
            print(f"{'client':<13}{'layer':<8}{'events':>10}{'join s':>8}{'run s':>8}"
                  f"{'events/s':>11}{'ckpt n':>7}{'ckpt ms':>9}{'ckpt p99<=':>11}"
                  f"{'ckpt %':>7}{'batch %':>8}{'RSS MB':>8}")  # fmt: skip
            for client in clients:
                for layer in ("raw", "source", "driftd"):
                    if kc.STOP:
                        break
                    settings = KafkaSettings(bootstrap_servers=bootstrap, client=client,  # type: ignore[arg-type]
                                             group_id=f"e2e-{uuid.uuid4().hex[:8]}",
                                             session_timeout_ms=6000, heartbeat_interval_ms=1000)  # fmt: skip
                    if layer == "driftd":
                        r = run_driftd(bootstrap, topic, client, args.events, tmp,
                                       args.sample_seconds)  # fmt: skip
                        print(f"{client:<13}{layer:<8}{r['events']:>10,}{r['join_s']:>8.1f}"
                              f"{r['read_s']:>8.1f}{r['events_per_s']:>11,.0f}{r['checkpoints']:>7}"
                              f"{r['checkpoint_mean_ms']:>9.1f}{r['checkpoint_p99_le_ms']:>11.0f}"
                              f"{100 * r['checkpoint_share']:>7.1f}{100 * r['batch_share']:>8.1f}"
                              f"{r['peak_rss_mb']:>8.0f}", flush=True)  # fmt: skip
                    else:
                        fn = kc.run_raw if layer == "raw" else kc.run_source
                        join, read, count = fn(client, settings, topic, args.events, args.batch)
                        rate = count / read if read > 0 else 0.0
                        r = {"events": count, "join_s": join, "read_s": read, "events_per_s": rate}
                        print(f"{client:<13}{layer:<8}{count:>10,}{join:>8.1f}{read:>8.1f}"
                              f"{rate:>11,.0f}", flush=True)  # fmt: skip
                    results.append({"client": client, "layer": layer, **r})
                    if r.get("samples"):
                        sampled.append(f"{client}: " + summarize_samples(r["samples"], args.top))
            for text in sampled:
                print(text)
            if args.profile_events and not kc.STOP and args.profile_client in clients:
                n = min(args.profile_events, args.events)
                profile_text = profile(bootstrap, topic, args.profile_client, n, tmp, args.top)
                print(profile_text)
    finally:
        if broker is not None:
            broker.stop()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"events": args.events, "results": results,
                                         "profile": profile_text}, indent=2))  # fmt: skip
    return 0 if not kc.STOP else 130


if __name__ == "__main__":
    sys.exit(main())
