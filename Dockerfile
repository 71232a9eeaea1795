# syntax=docker/dockerfile:1
# trio-worker: build a wheel and its dependencies in one stage, run them in a slim one.
#   just image                   (docker build with the version, revision and date as labels)
#   docker build --build-arg VERSION="$(trio-worker --version | cut -d" " -f2)" -t trio-worker .
#   docker run --rm -e REDIS_HOST=... -e MYSQL_HOST=... trio-worker          # = trio-worker run
#   docker run --rm ... trio-worker check | stats | produce --count 100 --yes | dlq list

# requirements.lock is resolved for this version: `just lock` reads it from here.
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
# The dependencies exactly as pinned and hashed by `just lock`, in a layer of their own (reused
# while only the code changes). --require-hashes: a changed file on the index fails the build.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-compile --require-hashes -r requirements.lock
# Then the package alone: --no-deps (everything it needs is installed above) and no build
# isolation (its build backend, setuptools, is pinned in the lock too), so nothing unpinned is
# fetched. Only what the package build needs (README.md is optional: the glob keeps COPY from
# failing).
COPY pyproject.toml README.md* ./
COPY trio_worker ./trio_worker
RUN /opt/venv/bin/pip install --no-compile --no-deps --no-build-isolation . \
    && /opt/venv/bin/pip uninstall -y pip setuptools \
    && /opt/venv/bin/python -m compileall -q /opt/venv

FROM python:${PYTHON_VERSION}-slim AS runtime
# OCI labels (`docker inspect`, registries): the version is the package's (pyproject.toml),
# passed in by `just image` (the same that `trio-worker --version` prints); the revision and
# creation time identify the build.
ARG VERSION=unknown
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="trio-worker" \
      org.opencontainers.image.description="Moves votes from a Redis list into MySQL, exactly once, in batches." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://github.com/trio-worker/trio-worker" \
      org.opencontainers.image.licenses="MIT"
# No .pyc writes at run time (read-only root filesystem in Kubernetes), logs unbuffered.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json \
    PORT=8080
RUN groupadd --system --gid 10001 worker \
    && useradd --system --uid 10001 --gid worker --no-create-home --shell /usr/sbin/nologin worker
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
# The image has no curl: the probe is a few lines of the Python that is there anyway. /live, not
# /health: "unhealthy" makes some supervisors restart the container, and a store outage is
# not cured by restarting workers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; u.urlopen('http://127.0.0.1:%s/live' % os.environ.get('PORT', '8080'), timeout=4); sys.exit(0)"]
# Exec form: the worker is PID 1 and gets SIGTERM itself, so `docker stop` drains it. Its
# default 10 s grace is below SHUTDOWN_TIMEOUT_S (25): use `docker stop -t 30` (compose sets
# stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["trio-worker"]
CMD ["run"]
