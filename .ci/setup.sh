#!/usr/bin/env bash
# Installs the Debian packages the test suites need (see apt-install.sh).
#   protobuf-compiler  protoc, run by the build script of the `etcd-client`
#                      crate the cluster tests use as their client
#   libprotobuf-dev    google/protobuf/*.proto, imported by those protos
#   etcd-client        etcdctl 3.4, run against a sett cluster
#   etcd-server        etcd 3.4, the reference the etcdctl tests compare with
#   curl               sends malformed protobuf over raw HTTP/2 in the
#                      bad-input suite (tests/tests/bad_input.rs)
#   docker-compose     runs deploy/docker-compose.yml in the container test
#                      (tests/tests/containers.rs) on the machine's Docker
#                      engine, which this script does not install: without
#                      an engine that test prints why and passes
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" protobuf-compiler libprotobuf-dev etcd-client etcd-server curl \
    docker-compose
