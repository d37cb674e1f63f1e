#!/usr/bin/env bash
# Installs what the HTML report tests need when it is missing (Debian/Ubuntu): headless Chromium
# (package `chromium`, /usr/bin/chromium) and one CJK font, so that Chinese text in screenshots is
# drawn with real glyphs. Call it from .ci/run before `make test`.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
fc-list :lang=zh family 2>/dev/null | grep -q . || missing+=(fonts-wqy-microhei)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
