#!/usr/bin/env bash
# CI's container step (called from .ci/run after the suite's first pass; needs .venv):
# install the Docker engine (Debian's docker.io) and debootstrap if missing, start dockerd unless
# one answers, build the images (scripts/build-image: cached on this machine, outside the
# checkout), run tests/containers and the hub's REST tests in docker mode (tests/hub, `-m docker`:
# the hub's --runtime docker), stop the dockerd it started.
#
# dockerd runs with --bridge=none and no iptables: the tests use host networking or none, never
# Docker's default bridge. If the engine cannot be installed or started for a reason outside the
# project (no package, a kernel without what dockerd needs), the tests are skipped with that
# reason (SEQUENCE_RUNNER_DOCKER_UNAVAILABLE). Once the engine runs, a failed image build or a
# missing image is a failure (SEQUENCE_RUNNER_REQUIRE_DOCKER=1).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${SEQUENCE_RUNNER_DOCKERD_DIR:-/tmp/sequence-runner-dockerd}
STARTED_PID=""
T0=$(date +%s)

stamp() { echo "container step: $* (+$(( $(date +%s) - T0 )) s)"; }

stop_dockerd() {
    [ -n "$STARTED_PID" ] || return 0
    kill -TERM "$STARTED_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$STARTED_PID" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$STARTED_PID" 2>/dev/null; then kill -KILL "$STARTED_PID" 2>/dev/null || true; fi
    stamp "dockerd $STARTED_PID stopped"
    STARTED_PID=""
}
trap stop_dockerd EXIT

unavailable() {
    export SEQUENCE_RUNNER_DOCKER_UNAVAILABLE="$*"
    echo "container step: Docker engine unavailable, container tests will be skipped: $*" >&2
}

install_engine() {
    command -v dockerd >/dev/null && command -v debootstrap >/dev/null && return 0
    if ! command -v apt-get >/dev/null; then
        unavailable "dockerd is not installed and there is no apt-get to install docker.io"
        return 1
    fi
    local log="$RUN_DIR/apt.log"
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            docker.io debootstrap; } >"$log" 2>&1; then
        unavailable "apt-get install docker.io debootstrap failed: $(tail -n 3 "$log" | tr '\n' ' ')"
        return 1
    fi
    stamp "docker.io and debootstrap installed"
}

start_engine() {
    if docker info >/dev/null 2>&1; then
        stamp "a Docker engine already answers; using it"
        return 0
    fi
    local log="$RUN_DIR/dockerd.log"
    dockerd --bridge=none --iptables=false --ip-masq=false --pidfile "$RUN_DIR/dockerd.pid" \
        >"$log" 2>&1 &
    STARTED_PID=$!
    for _ in $(seq 120); do
        if docker info >/dev/null 2>&1; then
            stamp "dockerd $STARTED_PID started"
            return 0
        fi
        if ! kill -0 "$STARTED_PID" 2>/dev/null; then break; fi
        sleep 0.5
    done
    unavailable "dockerd did not start: $(grep -E 'level=(error|fatal)|failed' "$log" | tail -n 3 | tr '\n' ' ')"
    stop_dockerd
    return 1
}

mkdir -p "$RUN_DIR"
if install_engine && start_engine; then
    export SEQUENCE_RUNNER_REQUIRE_DOCKER=1
    # containers a killed earlier run left behind
    leftovers=$(docker ps -aq --filter label=org.sequence-runner.test)
    [ -z "$leftovers" ] || docker rm -f $leftovers >/dev/null
    bash scripts/build-image
    stamp "images ready"
fi
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${PYTEST_WORKERS:-2}" -m docker tests/containers tests/hub
stamp "container tests done (tests/containers, and tests/hub with --runtime docker)"
