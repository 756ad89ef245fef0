#!/usr/bin/env bash
# Installs the Debian packages sett-bench needs (see ../.ci/apt-install.sh).
#   librocksdb-dev  RocksDB 7.8.3 shared library + C header, linked by the
#                   `rocksdb` crate (see ../.cargo/config.toml)
#   libclang-dev    libclang for bindgen, which generates the RocksDB bindings
#   clang           its resource headers (stddef.h, ...) for bindgen
#   build-essential C/C++ toolchain and libstdc++ for linking
#   etcd-server     etcd 3.4 (/usr/bin/etcd), the peer of `sett-bench cluster`
#   etcd-client     etcdctl 3.4 (/usr/bin/etcdctl), its health checks
set -euo pipefail
exec bash "$(dirname "$0")/../.ci/apt-install.sh" librocksdb-dev libclang-dev clang build-essential \
    etcd-server etcd-client
