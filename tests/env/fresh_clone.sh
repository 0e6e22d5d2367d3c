#!/usr/bin/env bash
# The README's "Two commands" on a fresh clone, as a new user runs them.
#
#   bash tests/env/fresh_clone.sh [PYTEST_ARGS...]     (default: -k readme -q)
#
# 1. `git clone`s this repository's HEAD (committed work only) into an empty temporary
#    folder with no ../shared beside it.
# 2. Runs `make run` there in the background, with the demo on a free port
#    (ALYX_SERVER_PORT) and a cold .venv (pip's cache may be warm), and checks that the
#    demo answers /health within 60 s of starting `make run`, that `make run` said where
#    the `alyx` command lives, and reports how long that took.
# 3. Runs `make test PYTEST_ARGS=...` on a small part of the suite (as root, with a private
#    Docker engine of its own, so nothing it starts or stops is shared with another run).
#
# Prints one line per check and a summary; exits non-zero when a check failed. Nothing
# outside the temporary folder is changed (apart from the packages `make test` installs
# when missing); the folder is removed at the end unless KEEP=1.
set -uo pipefail

SOURCE=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
LIMIT=60
if (($# == 0)); then
  set -- -k readme -q
fi

WORK=$(mktemp -d /tmp/alyx-fresh.XXXXXX)
RUN_PID=
status=0

say() { echo "fresh-clone: $*"; }
fail() { say "FAIL: $*"; status=1; }

STOP_DOCKER=0

cleanup() {
  if ((STOP_DOCKER)); then
    TEST_DOCKER_DIR="$WORK/docker" bash tests/env/docker-down.sh >/dev/null 2>&1
  fi
  if [[ -n $RUN_PID ]] && kill -0 "$RUN_PID" 2>/dev/null; then
    kill -TERM -- "-$RUN_PID" 2>/dev/null
    wait "$RUN_PID" 2>/dev/null
  fi
  if [[ ${KEEP:-0} == 1 ]]; then
    say "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

git clone -q "$SOURCE" "$WORK/alyx" || { fail "git clone $SOURCE"; exit 1; }
cd "$WORK/alyx" || exit 1
say "cloned $(git rev-parse --short HEAD) into $WORK/alyx"
if [[ -e ../shared ]]; then
  fail "$WORK/shared exists; the clone must not have a ../shared"
fi

# --- make run: cold, in the background, until /health answers ---
PORT=$(free_port)
start=$(date +%s%N)
ALYX_SERVER_PORT=$PORT setsid make run >"$WORK/run.log" 2>&1 &
RUN_PID=$!
served=
while (( ($(date +%s%N) - start) / 1000000000 < LIMIT + 60 )); do
  if ! kill -0 "$RUN_PID" 2>/dev/null; then
    break
  fi
  if curl -sf -o /dev/null "http://127.0.0.1:$PORT/health"; then
    served=$(( ($(date +%s%N) - start) / 1000000 ))
    break
  fi
  sleep 0.2
done
if [[ -z $served ]]; then
  fail "make run: the demo did not answer http://127.0.0.1:$PORT/health; its output:"
  cat "$WORK/run.log"
else
  seconds=$(printf '%d.%01d' $((served / 1000)) $(((served % 1000) / 100)))
  if ((served <= LIMIT * 1000)); then
    say "ok: make run served /health ${seconds} s after it started (limit ${LIMIT} s)"
  else
    fail "make run served /health only after ${seconds} s (limit ${LIMIT} s)"
  fi
  health=$(curl -s "http://127.0.0.1:$PORT/health")
  if [[ $health == *'"status": "ok"'* || $health == *'"status":"ok"'* ]]; then
    say "ok: /health says status ok"
  else
    fail "/health answered $health"
  fi
fi
if grep -q 'export PATH=".*/.venv/bin:$PATH"' "$WORK/run.log"; then
  say "ok: make run says where the alyx command is ($(grep -o '[^ ]*/.venv/bin' "$WORK/run.log" | head -1))"
else
  fail "make run did not print the export PATH line for .venv/bin"
fi
for tool in pytest mypy ruff; do
  if [[ -e .venv/bin/$tool ]]; then
    fail "make run installed $tool, a test or lint tool"
  fi
done
kill -TERM -- "-$RUN_PID" 2>/dev/null
wait "$RUN_PID" 2>/dev/null
RUN_PID=

# --- make test on a small part of the suite ---
# As root, `make test` would start (and at its end stop) the engine in /tmp/alyx-docker,
# which another run on this machine may be using; this run starts its own in $WORK first,
# so `make test` finds DOCKER_HOST answering and leaves it alone.
if ((EUID == 0)) && [[ -z ${DOCKER_HOST:-} ]]; then
  if docker_env=$(TEST_DOCKER_DIR="$WORK/docker" bash tests/env/docker-up.sh 2>"$WORK/docker.log"); then
    eval "$docker_env"
    STOP_DOCKER=1
  else
    fail "tests/env/docker-up.sh failed:"
    cat "$WORK/docker.log"
  fi
fi
start=$(date +%s%N)
if make test PYTEST_ARGS="$*" >"$WORK/test.log" 2>&1; then
  say "ok: make test PYTEST_ARGS=\"$*\" passed in $(( ($(date +%s%N) - start) / 1000000000 )) s: $(tail -1 "$WORK/test.log")"
else
  fail "make test PYTEST_ARGS=\"$*\" failed; its output:"
  cat "$WORK/test.log"
fi

if ((status == 0)); then
  say "all checks passed"
fi
exit "$status"
