# trio-worker: the front door. `just run` starts the worker, `just test` runs the tests;
# each sets up .venv (Python >= 3.11, the package and its dev tools) when it is missing or stale.

set shell := ["bash", "-euo", "pipefail", "-c"]

python := env_var_or_default("PYTHON", "python3")
venv := justfile_directory() / ".venv"
bin := venv / "bin"

# list the recipes
default:
    @just --list

# create or refresh .venv: the lock's versions of everything the image ships, and the dev tools
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    # Tests run on the versions the image ships: requirements.lock's pins are the constraints
    # (their hashes stripped: pip refuses hashed constraints beside an editable install); the
    # dev tools, which the image lacks, as pyproject.toml allows. Redone when either file changes.
    stamp="{{venv}}/.installed"
    want="$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)"
    if [ ! -x "{{bin}}/python" ]; then {{python}} -m venv "{{venv}}"; fi
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*==[^ ;]*\).*/\1/p' requirements.lock >"{{venv}}/constraints.txt"
        "{{bin}}/python" -m pip install -q --upgrade pip
        "{{bin}}/python" -m pip install -q -c "{{venv}}/constraints.txt" -e '.[dev]'
        echo "$want" >"$stamp"
        rm -f "{{venv}}/.installed-bench"
    fi

# run the worker (configured by environment variables, see README)
run *ARGS: setup
    {{bin}}/trio-worker run {{ARGS}}

# the test suite against the local (or $REDIS_HOST/$MYSQL_HOST) Redis and MariaDB
test *ARGS: setup
    {{bin}}/python -X dev -m pytest {{ARGS}}

# the short tests only: none marked slow (worker processes, private servers, over ~3 s each)
test-quick *ARGS: setup
    {{bin}}/python -X dev -m pytest -m "not slow" {{ARGS}}

# `just test` measured: line and branch coverage of trio_worker, worker processes included (htmlcov/)
cov *ARGS:
    {{just_executable()}} --justfile {{justfile()}} test --cov --cov-report=term-missing:skip-covered --cov-report=html {{ARGS}}

# trio-asyncio's own test suite, from the sdist of the installed release, with every loop it opens
# a FastLoop, and (but tests/python) on the stock loop: passes when both end alike, test for test
# (about 6 min; `just test-loop tests/interop` runs one part, paths as in the sdist)
test-loop *ARGS: setup
    #!/usr/bin/env bash
    set -euo pipefail
    version="$("{{bin}}/python" -c 'import trio_asyncio; print(trio_asyncio.__version__)')"
    suite="{{justfile_directory()}}/.cache/trio-asyncio-$version"
    if [ ! -f "$suite/.extracted" ]; then
        rm -rf "$suite"
        mkdir -p "$suite"
        "{{bin}}/python" -m pip download -q --no-deps --no-binary :all: \
            "trio-asyncio==$version" -d "$suite"
        sdist="$(ls "$suite"/*.tar.gz)"
        top="$(tar -tzf "$sdist" | sed -n '1s,/.*,,p')"
        # Its tests and its pytest configuration, not its package: the tests import the one
        # installed here.
        tar -xzf "$sdist" -C "$suite" --strip-components=1 "$top/tests" "$top/pyproject.toml"
        touch "$suite/.extracted"
    fi
    cd "$suite"
    set -- {{ARGS}}
    if [ $# -eq 0 ]; then set -- tests; fi
    # Our plugins (tests/loop_suite) by their own names: the sdist's test package is `tests` too.
    export PYTHONPATH="{{justfile_directory()}}/tests/loop_suite"
    run() {
        local name="$1"
        shift
        echo "test-loop: trio-asyncio $version's suite on the $name loop"
        # Its own pytest configuration (pyproject.toml), not this repository's; node_ids lets
        # its conftest run on pytest 9; a test that hangs fails after 5 minutes.
        local status=0
        "{{bin}}/python" -m pytest -c pyproject.toml --rootdir=. -p no:cacheprovider \
            -p node_ids -o timeout=300 -q -rfE --junitxml="$name.xml" "$@" || status=$?
        # 1: some tests failed, to be compared; anything else means the run itself broke.
        if [ "$status" -gt 1 ]; then
            echo "test-loop: FAILED: pytest on the $name loop exited $status" >&2
            exit 1
        fi
    }
    rm -f stock.xml fast.xml fast-loops.json
    # tests/python runs CPython's own asyncio tests on trio-asyncio's SyncTrioEventLoop, which
    # FastLoop does not replace: it runs once, with the fast path installed, and must pass; the
    # rest runs on both loops and must end alike (compare.py).
    stock=("$@")
    if [ "$*" = tests ]; then stock=(tests --ignore=tests/python); fi
    run stock "${stock[@]}"
    run fast -p fast_loops --fast-loops-report=fast-loops.json "$@"
    "{{bin}}/python" "{{justfile_directory()}}/tests/loop_suite/compare.py" \
        stock.xml fast.xml fast-loops.json

# drain rate, latency, memory and batch-size sweep beside MariaDB's own ceiling (bench/run.py)
bench *ARGS: setup
    @{{just_executable()}} --justfile {{justfile()}} _bench-deps
    @"{{bin}}/python" bench/run.py {{ARGS}}

# the race suite: producers, workers, random faults, then the exactly-once checker (about 5 min);
# `just test-race 1 30` for one short run, `just test-race 1 60 --stress-seed N` to replay seed N;
# RACE_WITHOUT=kind,kind leaves fault kinds out (tests/race/kinds.py)
test-race seeds="3" duration="60" *ARGS: setup
    {{bin}}/python -X dev -W error -m pytest tests/race --stress-seeds {{seeds}} --stress-duration {{duration}} {{ARGS}}

# fetch (or build) Redis 6.2 and 5.0 for the tests that meet older servers (tests/support/old_redis.py)
old-redis: setup
    {{bin}}/python -m tests.support.old_redis

# the bench's own dependencies (pyproject's `bench` extra), once per setup; lint type-checks
# bench/ too
_bench-deps: setup
    #!/usr/bin/env bash
    set -euo pipefail
    stamp="{{venv}}/.installed-bench"
    if [ ! -f "$stamp" ]; then
        "{{bin}}/python" -m pip install -q -c "{{venv}}/constraints.txt" -e '.[bench]'
        touch "$stamp"
    fi

# static checks: ruff (lint and format) and strict mypy (trio_worker, tests and bench)
lint: _bench-deps
    {{bin}}/ruff check .
    {{bin}}/ruff format --check .
    {{bin}}/mypy

# format the code
fmt: setup
    {{bin}}/ruff format .
    {{bin}}/ruff check --fix .

# pin the image's dependencies, with hashes, into requirements.lock (uv; Python from the Dockerfile)
lock: setup
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x "{{bin}}/uv" ]; then "{{bin}}/python" -m pip install -q uv; fi
    # The image's Python, not this machine's: the lock is what the Dockerfile installs.
    python_version="$(sed -n 's/^ARG PYTHON_VERSION=//p' Dockerfile)"
    # pyproject.toml's runtime dependencies, and its build backend (the image builds the package
    # from the lock without build isolation, so nothing unpinned is fetched).
    "{{bin}}/python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
        | "{{bin}}/uv" pip compile pyproject.toml - --quiet --generate-hashes \
            --python-version "$python_version" --python-platform linux \
            --custom-compile-command "just lock   (Python $python_version on Linux, from pyproject.toml)" \
            --output-file requirements.lock

# regenerate deploy/k8s/monitoring/ from deploy/prometheus/alerts.yml and deploy/grafana/dashboard.json
rules: setup
    {{bin}}/python deploy/prometheus/prometheusrule.py
    {{bin}}/python deploy/grafana/dashboard_configmap.py

# the container image, labelled with the package's version, the Git revision and the build time
image tag="trio-worker": setup
    docker build \
        --build-arg VERSION="$({{bin}}/trio-worker --version | cut -d' ' -f2)" \
        --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
        --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        -t "{{tag}}:$({{bin}}/trio-worker --version | cut -d' ' -f2)" .

# validate the configuration and reach Redis and MySQL (`trio-worker check`)
check: setup
    {{bin}}/trio-worker check

# the whole stack in Docker: Redis, MySQL 8.4, two workers, Prometheus, Grafana (deploy/)
up *ARGS:
    docker compose -f deploy/docker-compose.yml up -d --build {{ARGS}}

# stop the stack (`just down -v` also drops its data volumes)
down *ARGS:
    docker compose -f deploy/docker-compose.yml down {{ARGS}}
