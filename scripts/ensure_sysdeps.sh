#!/usr/bin/env bash
# Installs the system libraries alliance-psi needs when they are missing (Debian/Ubuntu).
# libsodium provides ristretto255; pysodium loads it at run time.
set -euo pipefail
missing=()
ldconfig -p 2>/dev/null | grep -q 'libsodium\.so' || missing+=(libsodium23)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
