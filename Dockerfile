# syntax=docker/dockerfile:1
#
# driftd container image.
#
#   docker build -t driftd .
#   docker run --rm -p 127.0.0.1:9108:9108 driftd     # replays the bundled demo
#
# The default command replays the demo data (data/demo) with the repository's
# config.toml and keeps serving /metrics afterwards. For real use mount a
# config at /etc/driftd/config.toml and pass secrets ("${ENV}" references in
# the config) as environment variables; state lives in /var/lib/driftd.

# --- build: a virtualenv with driftd and its dependencies --------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY . .
# [postgres]: psycopg for a PostgreSQL store (the compose setup uses one).
RUN pip install ".[postgres]" \
 && driftd --help > /dev/null

# The demo config, with its relative paths made absolute, so that the working
# directory can be the (writable) state directory.
RUN mkdir -p /out/etc/driftd /out/opt/driftd/scripts \
 && cp -r data /out/opt/driftd/data \
 && cp scripts/demo_retrain.py /out/opt/driftd/scripts/ \
 && sed -e 's#"data/demo/#"/opt/driftd/data/demo/#g' \
        -e 's#"scripts/demo_retrain.py"#"/opt/driftd/scripts/demo_retrain.py"#g' \
        config.toml > /out/etc/driftd/config.toml \
 && ! grep -nE '"(data|scripts)/' /out/etc/driftd/config.toml \
 && driftd check-config /out/etc/driftd/config.toml > /dev/null

# --- runtime -------------------------------------------------------------------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 driftd \
 && useradd --system --uid 10001 --gid driftd --home-dir /var/lib/driftd \
            --shell /usr/sbin/nologin driftd \
 && install -d -o driftd -g driftd -m 0750 /var/lib/driftd

COPY --from=build /opt/venv /opt/venv
COPY --from=build /out/ /

USER driftd:driftd
WORKDIR /var/lib/driftd
VOLUME ["/var/lib/driftd"]
EXPOSE 9108

# No curl in the slim image: probe /healthz with the standard library
# (urlopen raises on a non-2xx answer, so any failure exits non-zero).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=4)"]

# driftd checkpoints on SIGTERM; give it time (docker stop -t 30).
STOPSIGNAL SIGTERM
CMD ["driftd", "run", "--config", "/etc/driftd/config.toml", "--keep-serving", "--http-bind", "0.0.0.0:9108"]
