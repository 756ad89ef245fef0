#!/usr/bin/env bash
# Builds the sett image with no base image to pull: the binaries, the
# shared libraries `ldd` names, the dynamic loader, /etc/passwd and a data
# directory owned by the `sett` user, on `FROM scratch`. Same paths, user,
# ports, volume and stop signal as deploy/Dockerfile.
#   deploy/build-image.sh [--profile PROFILE] [tag]    (default tag: sett:local)
#     builds `sett` and `settctl` with `cargo build --profile PROFILE`
#     (default: release; `debug` is cargo's `dev` profile) and uses them;
#   SETT_BIN_DIR=target/debug deploy/build-image.sh [tag]
#     builds nothing: takes `sett` and `settctl` as they are in that
#     directory (what the container tests do with the binaries `cargo test`
#     built). Debug information is stripped from the copies when `strip`
#     is installed, which keeps a debug image small.
set -euo pipefail
cd "$(dirname "$0")/.."
uid=10001
profile=release
tag=sett:local
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=${2:?--profile needs a value}; shift 2 ;;
        --profile=*) profile=${1#--profile=}; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) echo "build-image.sh: unknown option $1" >&2; exit 2 ;;
        *) tag=$1; shift ;;
    esac
done

if [ -n "${SETT_BIN_DIR:-}" ]; then
    bin_dir=$SETT_BIN_DIR
else
    case "$profile" in
        debug|dev) cargo_profile=dev; bin_dir=target/debug ;;
        *) cargo_profile=$profile; bin_dir=target/$profile ;;
    esac
    nice -n 10 cargo build --profile "$cargo_profile" --locked \
        -p sett-server --bin sett -p sett-client --bin settctl
fi
bins=("$bin_dir/sett" "$bin_dir/settctl")
for b in "${bins[@]}"; do
    if [ ! -x "$b" ]; then
        echo "build-image.sh: $b is missing (build it: cargo build -p sett-server --bin sett -p sett-client --bin settctl)" >&2
        exit 1
    fi
done

# A context of its own per run, so that two builds do not mix their files.
mkdir -p target
ctx=$(mktemp -d target/image-context.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc" "$ctx/data"
install -m 0755 "${bins[@]}" "$ctx/rootfs/usr/local/bin/"
if [ -n "${SETT_BIN_DIR:-}" ] && command -v strip >/dev/null; then
    strip --strip-debug "$ctx/rootfs/usr/local/bin/sett" "$ctx/rootfs/usr/local/bin/settctl"
fi

# Every shared library and the loader, at the paths the binaries ask for.
ldd "${bins[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && NF > 1 { print $1 }' |
    sort -u | while read -r lib; do
        cp -L --parents "$lib" "$ctx/rootfs/"
    done

cat > "$ctx/rootfs/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
sett:x:$uid:$uid:sett:/var/lib/sett:/sbin/nologin
PASSWD
cat > "$ctx/rootfs/etc/group" <<GROUP
root:x:0:
sett:x:$uid:
GROUP
echo "hosts: files dns" > "$ctx/rootfs/etc/nsswitch.conf"
chmod 0700 "$ctx/data"

cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY rootfs/ /
COPY --chown=$uid:$uid data/ /var/lib/sett/
USER $uid:$uid
WORKDIR /var/lib/sett
ENV PATH=/usr/local/bin SETT_DATA_DIR=/var/lib/sett/data
VOLUME ["/var/lib/sett"]
EXPOSE 2379 2380
STOPSIGNAL SIGTERM
CMD ["sett"]
DOCKERFILE

docker build --pull=false -q -t "$tag" "$ctx" >/dev/null
echo "built $tag from $bin_dir"
