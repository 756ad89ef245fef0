#!/usr/bin/env bash
# Builds the sett image with no base image to pull: the release binaries,
# the shared libraries `ldd` names, the dynamic loader, /etc/passwd and a
# data directory owned by the `sett` user, on `FROM scratch`. Same paths,
# user, ports, volume and stop signal as deploy/Dockerfile.
#   deploy/build-image.sh [tag]        (default tag: sett:local)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-sett:local}
uid=10001

nice -n 10 cargo build --release --locked -p sett-server --bin sett -p sett-client --bin settctl

ctx=target/image-context
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc" "$ctx/data"
bins=(target/release/sett target/release/settctl)
install -m 0755 "${bins[@]}" "$ctx/rootfs/usr/local/bin/"

# Every shared library and the loader, at the paths the binaries ask for.
ldd "${bins[@]}" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
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

docker build --pull=false -t "$tag" "$ctx"
echo "built $tag"
