#!/usr/bin/env bash
# What `make test` runs: make sure everything the suite uses is on the machine, then run
# pytest with the arguments given (the first one is the pytest executable).
#
#   1. Debian packages (bubblewrap, Node.js, Go with gorilla/websocket, Docker, debootstrap,
#      chromium):
#      installed with apt-get when missing and this user can (root, or sudo without a
#      password); otherwise one line names them with the command that installs them.
#   2. The pinned TypeScript compiler in tests/codegen_env (`npm ci`, again only when
#      package-lock.json changed).
#   3. A private Docker engine with the functions' base images (tests/env/docker-up.sh),
#      unless DOCKER_HOST already names one that answers; stopped again on exit.
#
# Each step is quick when its work is done already, so a second `make test` goes straight
# to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

say() { echo "make test: $*" >&2; }

# Debian packages the tests use. Add to this list, never around it.
APT_PACKAGES=(
  # The functions' sandbox and the Node.js runtime (tests run real sandboxed workers).
  bubblewrap
  nodejs
  # Generated clients: go vet and go build, offline, with Debian's gorilla/websocket.
  golang-go
  golang-github-gorilla-websocket-dev
  # The functions' Docker backend: a private engine and base images built offline.
  docker.io
  debootstrap
  # docs/getting-started.md followed in a real browser (Playwright drives this chromium).
  chromium
  # docs/deploy.md's reverse proxy, run with `tls internal` (tests/test_deploy_guide.py).
  caddy
)
# Debian's npm, unless a Node.js distribution that bundles npm is installed already.
if ! command -v npm >/dev/null 2>&1; then
  APT_PACKAGES+=(npm)
fi

missing_packages() {
  local package
  for package in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
      echo "$package"
    fi
  done
}

install_system_packages() {
  command -v dpkg-query >/dev/null 2>&1 || {
    say "not a Debian system: install the equivalents of ${APT_PACKAGES[*]} yourself"
    return
  }
  local missing
  mapfile -t missing < <(missing_packages "${APT_PACKAGES[@]}")
  ((${#missing[@]} == 0)) && return
  local sudo=()
  if ((EUID != 0)); then
    if sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      say "missing Debian packages ${missing[*]}: sudo apt-get install -y ${missing[*]}"
      exit 2
    fi
  fi
  say "apt-get install ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# `npm ci` when node_modules is missing or older than the lock file.
install_node_tools() {
  local env=tests/codegen_env
  if [[ -d $env/node_modules && $env/node_modules -nt $env/package-lock.json ]]; then
    return
  fi
  say "npm ci ($env)"
  (cd "$env" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$env/node_modules"
}

docker_answers() {
  [[ -n ${DOCKER_HOST:-} ]] && docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

install_system_packages
install_node_tools

# A run that leaves the Docker tests out (-m "... not docker ...") needs no engine.
if [[ "$*" == *"not docker"* ]]; then
  :
elif ! docker_answers; then
  if ((EUID == 0)); then
    trap 'bash tests/env/docker-down.sh' EXIT
    docker_env=$(bash tests/env/docker-up.sh)
    eval "$docker_env"
  else
    say "the Docker backend's tests need a private engine, which needs root:" \
      "eval \"\$(sudo bash tests/env/docker-up.sh)\" before make test"
  fi
fi

status=0
"$@" || status=$?
exit "$status"
