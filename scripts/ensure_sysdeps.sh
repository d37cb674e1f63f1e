#!/usr/bin/env bash
# Installs the system packages alliance-psi needs when they are missing (Debian/Ubuntu).
# libsodium provides ristretto255; pysodium loads it at run time.
# `ensure_sysdeps.sh container` also installs what `make container-test` needs: podman with runc
# (this machine kind runs no systemd; tests/container/containers.conf), and debootstrap for the
# base images (there is no image registry).
set -euo pipefail
missing=()
ldconfig -p 2>/dev/null | grep -q 'libsodium\.so' || missing+=(libsodium23)
if [ "${1:-}" = "container" ]; then
  for tool in podman runc debootstrap; do
    command -v "$tool" > /dev/null || missing+=("$tool")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
