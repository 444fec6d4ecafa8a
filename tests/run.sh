#!/bin/sh
# Install what the test suite needs, then run all of it. Arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."

# Debian's Chromium drives the page tests, with a Japanese font so that the screenshots
# show the pages as people read them (nothing is downloaded at run time).
if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-ipafont-gothic >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-ipafont-gothic >/dev/null
fi

python3 -m venv .venv
.venv/bin/pip install -q -e ".[test]"
exec .venv/bin/python -m pytest "$@"
