#!/usr/bin/env bash
# Stops the Docker engine that tests/env/docker-up.sh started (by its pid file, nothing else).
# Its images stay in $TEST_DOCKER_DIR for the next start; the root filesystem tarballs
# stay in the cache. Safe to call when no engine runs.
set -uo pipefail

DOCKER_DIR=${TEST_DOCKER_DIR:-/tmp/alyx-docker}
PIDFILE=$DOCKER_DIR/docker.pid

say() { echo "docker-down: $*" >&2; }

if [[ ! -s $PIDFILE ]]; then
  exit 0
fi
pid=$(cat "$PIDFILE")
if ! kill -0 "$pid" 2>/dev/null; then
  rm -f "$PIDFILE"
  exit 0
fi
say "stopping dockerd ($pid)"
# dockerd stops its containers and its containerd on SIGTERM; give it 30 s.
kill -TERM "$pid" 2>/dev/null || true
for ((i = 0; i < 300; i++)); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  say "dockerd did not stop in 30 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$PIDFILE"
exit 0
