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

# A real OpenID Connect provider for the sign-in tests (tests/oidc), from the npm registry,
# as its lock file pins it; installed again only when the lock changed.
if [ ! -f tests/oidc/node_modules/.package-lock.json ] ||
  ! cmp -s tests/oidc/package-lock.json tests/oidc/node_modules/.lock-installed; then
  npm ci --prefix tests/oidc --no-audit --no-fund --loglevel=error
  cp tests/oidc/package-lock.json tests/oidc/node_modules/.lock-installed
fi

python3 -m venv .venv
.venv/bin/pip install -q -e ".[test]"
exec .venv/bin/python -m pytest "$@"
