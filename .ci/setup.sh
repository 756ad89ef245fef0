#!/usr/bin/env bash
# Installs the Debian packages the test suites need. Idempotent; needs root
# (or sudo) only when something is missing.
#   protobuf-compiler  protoc, run by the build script of the `etcd-client`
#                      crate the cluster tests use as their client
#   libprotobuf-dev    google/protobuf/*.proto, imported by those protos
#   etcd-client        etcdctl 3.4, run against a sett cluster
#   etcd-server        etcd 3.4, the reference the etcdctl tests compare with
set -euo pipefail

packages=(protobuf-compiler libprotobuf-dev etcd-client etcd-server)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup.sh: all packages present: ${packages[*]}"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
