#!/usr/bin/env bash
# Build a local Debian bookworm base image (Python 3.11 + venv + CA certificates) with debootstrap and
# `docker import`, for machines that cannot pull python:3.11-slim-bookworm from Docker Hub.
# Usage: docker/build-base-image.sh [TAG]   (root; skips the work when TAG already exists)
# Env: DEBIAN_MIRROR (default http://deb.debian.org/debian), FORCE=1 to rebuild an existing tag.
set -euo pipefail

tag="${1:-wdrec-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag exists (FORCE=1 rebuilds it)"
    exit 0
fi
if [[ $EUID -ne 0 ]]; then
    echo "debootstrap needs root; run as root or pass BASE_IMAGE=<an image with python3.11>" >&2
    exit 1
fi

rootfs="$(mktemp -d /var/tmp/wdrec-rootfs.XXXXXX)"
log="$rootfs.log"
trap 'rm -rf "$rootfs" "$log"' EXIT

start=$SECONDS
# minbase + what the image needs: python3 (3.11 on bookworm), venv/ensurepip, TLS roots, useradd.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    bookworm "$rootfs" "$mirror" >"$log" 2>&1 || { tail -20 "$log" >&2; exit 1; }
# Package caches and lists only weigh the image down; apt-get update restores the lists when needed.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
echo "debootstrap: $((SECONDS - start)) s"

tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$tag" >/dev/null
echo "base image $tag built in $((SECONDS - start)) s"
