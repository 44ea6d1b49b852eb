#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/test_report_browser.py), which open
# vaelab's HTML reports headless. The tests never download a browser; without one they skip.
# Needs root and apt-get; anything else: a message, and the tests skip with the reason.
set -uo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then exit 0; fi
done
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser.sh: no chromium, and no root apt-get to install it: the browser" \
       "tests will skip (install Debian's chromium package to run them)" >&2
  exit 0
fi
echo "install_browser.sh: installing Debian's chromium package for the browser tests"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
         chromium >/dev/null; }; then
  echo "install_browser.sh: apt-get could not install chromium: the browser tests will skip" >&2
fi
exit 0
