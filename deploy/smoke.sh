#!/usr/bin/env bash
# Smoke test of the image and the compose cluster (needs Docker and
# docker-compose; pulls nothing):
#   1. builds the image (deploy/build-image.sh) unless SETT_SKIP_BUILD=1;
#   2. `sett --version` and `settctl --version` in the image;
#   3. `docker-compose up -d` of deploy/docker-compose.yml, waits (bounded)
#      for `endpoint health --cluster` from inside the network, then a put
#      and a get through the host's loopback port; one member stopped, a
#      write still succeeds;
#   4. tears the cluster and its volumes down (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
image=${SETT_IMAGE:-sett:local}
export SETT_IMAGE=$image
compose=(docker-compose -p sett-smoke -f deploy/docker-compose.yml)
wait_secs=${SETT_SMOKE_WAIT:-120}

if [ "${SETT_SKIP_BUILD:-0}" != 1 ]; then
    deploy/build-image.sh "$image"
fi

echo "== image"
docker run --rm "$image" sett --version
docker run --rm "$image" settctl --version

cleanup() { "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

echo "== compose up"
"${compose[@]}" up -d
ctl=("${compose[@]}" exec -T sett-1 settctl --endpoints=http://sett-1:2379,http://sett-2:2379,http://sett-3:2379)

deadline=$((SECONDS + wait_secs))
until "${ctl[@]}" endpoint health --cluster; do
    if [ $SECONDS -ge $deadline ]; then
        echo "cluster not healthy within ${wait_secs}s" >&2
        "${compose[@]}" logs --tail=40 >&2
        exit 1
    fi
    sleep 2
done
"${ctl[@]}" member list -w table

echo "== put/get through the host"
host_ctl=(docker run --rm --network host "$image" settctl --endpoints=http://127.0.0.1:12379)
"${host_ctl[@]}" put smoke-key smoke-value
got=$("${ctl[@]}" get smoke-key --print-value-only)
if [ "$got" != smoke-value ]; then
    echo "get smoke-key: got '$got'" >&2
    exit 1
fi
echo "get smoke-key: $got"

echo "== stop one member (SIGTERM, clean exit), the others still take writes"
"${compose[@]}" stop -t 30 sett-3
code=$(docker inspect -f '{{.State.ExitCode}}' "$("${compose[@]}" ps -q sett-3)")
if [ "$code" != 0 ]; then
    echo "sett-3 exited with $code after SIGTERM" >&2
    exit 1
fi
# A write may meet the election that follows a stopped leader: retried.
deadline=$((SECONDS + wait_secs))
until "${ctl[@]}" put after-stop ok; do
    if [ $SECONDS -ge $deadline ]; then
        echo "no write accepted within ${wait_secs}s with sett-3 stopped" >&2
        exit 1
    fi
    sleep 1
done
"${compose[@]}" start sett-3
deadline=$((SECONDS + wait_secs))
until "${ctl[@]}" endpoint health --cluster >/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
        echo "sett-3 did not rejoin within ${wait_secs}s" >&2
        exit 1
    fi
    sleep 2
done
echo "sett-3 rejoined"
echo "smoke: ok"
