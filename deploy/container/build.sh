#!/usr/bin/env bash
# Build the image with podman on a machine with no image registry (this project's machines, CI):
# a Debian bookworm base made with debootstrap, the llama-cpp-python wheel `make install` keeps, and
# the machine's CA bundle as a build secret. With a registry, `podman build` / `docker build` with
# the default BASE is enough (see the Dockerfile's header).
#
#   deploy/container/build.sh [TAG]      (default localhost/whisper-assistant:latest)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/container/containers.conf}"
TAG="${1:-localhost/whisper-assistant:latest}"
BASE="${BASE:-localhost/debian:bookworm}"
WHEELS="${WHEELS:-$HOME/.cache/whisper-assistant/wheels}"
CA="${CA:-/etc/ssl/certs/ca-certificates.crt}"

if [ "$BASE" = localhost/debian:bookworm ] && ! podman image exists "$BASE"; then
  echo "Making $BASE with debootstrap (about a minute)"
  root="$(mktemp -d)"
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import - "$BASE" >/dev/null
fi

# --format docker: the OCI format has no HEALTHCHECK, and podman would drop it.
args=(--format docker --build-arg "BASE=$BASE" --tag "$TAG" --file deploy/container/Dockerfile)
# The prebuilt llama-cpp-python wheel replaces the Dockerfile's `wheels` stage (minutes of C++).
if compgen -G "$WHEELS/llama_cpp_python-*.whl" >/dev/null; then args+=(--build-context "wheels=$WHEELS"); fi
[ -f "$CA" ] && args+=(--secret "id=ca,src=$CA")
exec podman build "${args[@]}" .
