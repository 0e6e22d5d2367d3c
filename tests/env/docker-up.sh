#!/usr/bin/env bash
# Starts a private Docker engine for the Docker backend's tests and gives it the two base
# images the runtime Dockerfiles build on, without ever pulling from a registry:
#
#   alyx-python-base:local   Debian bookworm (minbase) with python3
#   alyx-node-base:local     Debian bookworm (minbase) with nodejs (Node 18)
#
# both with ca-certificates (TLS for functions with `network: true`; Debian's Node also
# warns at every start without them).
#
# The root filesystems come from debootstrap, using the machine's own Debian mirror, and
# are cached as tarballs in $TEST_ROOTFS_CACHE, so a second run on the same machine only
# imports them. The engine listens on its own socket under $TEST_DOCKER_DIR, with no
# bridge and no iptables rules (it touches nothing of the host's network).
#
# Progress goes to stderr; stdout gets one line to eval, `export DOCKER_HOST=unix://...`:
#
#   docker_env=$(bash tests/env/docker-up.sh) && eval "$docker_env"
#
# tests/env/docker-down.sh stops the engine again. Needs root (dockerd and debootstrap).
set -euo pipefail

DOCKER_DIR=${TEST_DOCKER_DIR:-/tmp/alyx-docker}
CACHE=${TEST_ROOTFS_CACHE:-/var/cache/alyx-ci}
SUITE=bookworm
PYTHON_PACKAGES=python3,ca-certificates
NODE_PACKAGES=nodejs,ca-certificates
SOCKET=$DOCKER_DIR/docker.sock
PIDFILE=$DOCKER_DIR/docker.pid
LOG=$DOCKER_DIR/dockerd.log
export DOCKER_HOST=unix://$SOCKET

say() { echo "docker-up: $*" >&2; }
die() { say "$*"; exit 1; }

# The client installed with the engine (another `docker` earlier on PATH may be newer).
DOCKER=$(command -v /usr/bin/docker || command -v docker || true)
[[ -n $DOCKER ]] || die "no docker client: install Debian's docker.io"
command -v dockerd >/dev/null || die "no dockerd: install Debian's docker.io"

engine_ready() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

started_pid=''

# Starts dockerd with one storage driver and waits (bounded) until it answers.
start_daemon() {
  local driver=$1
  mkdir -p "$DOCKER_DIR/data" "$DOCKER_DIR/exec"
  say "starting dockerd ($driver storage) on $SOCKET"
  # The engine outlives this script; docker-down.sh stops it by its pid file.
  dockerd \
    -H "unix://$SOCKET" \
    --data-root "$DOCKER_DIR/data" \
    --exec-root "$DOCKER_DIR/exec" \
    --pidfile "$PIDFILE" \
    --iptables=false --ip6tables=false --bridge=none \
    --storage-driver="$driver" \
    </dev/null >"$LOG" 2>&1 &
  started_pid=$!
  local i
  for ((i = 0; i < 300; i++)); do
    if engine_ready; then
      say "dockerd is ready ($driver)"
      return 0
    fi
    if ! kill -0 "$started_pid" 2>/dev/null; then
      return 1
    fi
    sleep 0.1
  done
  return 1
}

# The dockerd this script started, if it is still there (it did not become ready).
stop_failed_daemon() {
  if kill -0 "$started_pid" 2>/dev/null; then
    kill "$started_pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
      kill -0 "$started_pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$PIDFILE"
}

ensure_daemon() {
  if engine_ready; then
    say "dockerd already answers on $SOCKET"
    return
  fi
  # A pid file left by an engine that was killed: dockerd refuses to start while its pid
  # belongs to another process.
  if [[ -s $PIDFILE ]] && [[ $(cat "/proc/$(cat "$PIDFILE")/comm" 2>/dev/null) != dockerd ]]; then
    rm -f "$PIDFILE"
  fi
  if start_daemon overlay2; then
    return
  fi
  say "overlay2 did not work here; dockerd said:"
  tail -n 5 "$LOG" >&2 || true
  stop_failed_daemon
  start_daemon vfs || {
    tail -n 20 "$LOG" >&2 || true
    stop_failed_daemon
    die "dockerd did not start (log: $LOG)"
  }
}

# The machine's Debian mirror (from its apt sources); empty means debootstrap's default.
debian_mirror() {
  local uri
  uri=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' |
    grep -v -e '-security' -e 'security\.' | head -n 1 || true)
  if [[ -z $uri && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list || true)
  fi
  echo "$uri"
}

# The cached tarball of a root filesystem: named after its suite and packages, so that a
# changed package list builds a new one.
tarball_of() { echo "$CACHE/$1-$SUITE-${2//,/-}.tar"; }

# A cached root filesystem tarball with the given packages (built once per machine).
rootfs_tarball() {
  local name=$1 include=$2
  local tarball
  tarball=$(tarball_of "$name" "$include")
  if [[ -s $tarball ]]; then
    say "using cached $tarball"
    return
  fi
  command -v debootstrap >/dev/null || die "no debootstrap: install Debian's debootstrap"
  mkdir -p "$CACHE"
  local dir
  dir=$(mktemp -d "$CACHE/$name.XXXXXX")
  say "debootstrap $SUITE with $include into $dir"
  # shellcheck disable=SC2046
  if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$dir" $(debian_mirror) \
    >"$dir.log" 2>&1; then
    tail -n 20 "$dir.log" >&2
    rm -rf "$dir"
    die "debootstrap of $name failed (log: $dir.log)"
  fi
  # Package caches and lists are of no use inside a runtime image.
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar -C "$dir" -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  rm -rf "$dir" "$dir.log"
  # Tarballs of an older package list are of no further use.
  find "$CACHE" -maxdepth 1 -name "$name-*.tar" ! -path "$tarball" -delete
}

# Imports a tarball as NAME:local unless the image there came from that same tarball.
import_image() {
  local name=$1 include=$2
  local image=$name:local tarball
  tarball=$(tarball_of "$name" "$include")
  local message="debootstrap $SUITE minbase: $include"
  if [[ $("$DOCKER" image inspect --format '{{.Comment}}' "$image" 2>/dev/null) == "$message" ]]; then
    say "$image is already imported"
    return
  fi
  say "docker import $tarball as $image"
  "$DOCKER" import --message "$message" - "$image" <"$tarball" >/dev/null
}

main() {
  ((EUID == 0)) || die "run as root (dockerd and debootstrap need it)"
  mkdir -p "$DOCKER_DIR"
  chmod 700 "$DOCKER_DIR"
  local started=$SECONDS
  ensure_daemon
  # The two root filesystems download in parallel.
  local python_job node_job
  rootfs_tarball alyx-python-base "$PYTHON_PACKAGES" & python_job=$!
  rootfs_tarball alyx-node-base "$NODE_PACKAGES" & node_job=$!
  wait "$python_job" || die "the python root filesystem could not be built"
  wait "$node_job" || die "the node root filesystem could not be built"
  import_image alyx-python-base "$PYTHON_PACKAGES"
  import_image alyx-node-base "$NODE_PACKAGES"
  say "ready in $((SECONDS - started))s"
  echo "export DOCKER_HOST=$DOCKER_HOST"
}

main "$@"
