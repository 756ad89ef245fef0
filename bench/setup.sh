#!/usr/bin/env bash
# Installs the Debian packages sett-bench needs. Idempotent; run as root.
#   librocksdb-dev  RocksDB 7.8.3 shared library + C header, linked by the
#                   `rocksdb` crate (see ../.cargo/config.toml)
#   libclang-dev    libclang for bindgen, which generates the RocksDB bindings
#   clang           its resource headers (stddef.h, ...) for bindgen
#   build-essential C/C++ toolchain and libstdc++ for linking
set -euo pipefail

packages=(librocksdb-dev libclang-dev clang build-essential)

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
$sudo apt-get update
$sudo apt-get install -y --no-install-recommends "${missing[@]}"
