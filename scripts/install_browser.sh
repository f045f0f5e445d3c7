#!/usr/bin/env bash
# Makes sure headless Chromium is on this machine for the HTML report's browser test.
# As root with apt-get, Debian's chromium package is installed when missing; otherwise this says
# plainly what to do, and the browser test fails with the same advice (it is never skipped silently).
set -euo pipefail
for name in "${FROZENASD_CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [ -n "$name" ] && command -v "$name" >/dev/null 2>&1; then
    exit 0
  fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Chromium not found: installing Debian's chromium package (for the HTML report's browser test)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
  command -v chromium >/dev/null
else
  cat >&2 <<'MSG'
Chromium not found, and it cannot be installed from here (needs root and apt-get).
The HTML report's browser test will fail. Install Chromium (Debian/Ubuntu: sudo apt-get install chromium),
or point FROZENASD_CHROMIUM at a Chromium or Chrome binary, then run make test again.
MSG
fi
