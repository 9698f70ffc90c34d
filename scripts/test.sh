#!/usr/bin/env bash
# Install the test dependencies (Debian's chromium for the browser tests, the package with its
# [test] extra in .venv) and run the whole test suite; then the suite without browser tests on
# the oldest and the newest other supported Python (of 3.10 and 3.13, or 3.12 when one of those is
# the main one) found on this machine, two test processes at a time. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_MKDOCS_2_WARNING=1
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium >/dev/null
fi
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/python -m pytest "$@"

main=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pyenv_root=$(pyenv root 2>/dev/null || true)
case "$main" in
  3.10) others="3.11 3.13" ;;
  3.13) others="3.10 3.12" ;;
  *) others="3.10 3.13" ;;
esac
for version in $others; do
  python=""
  for candidate in "$(command -v "python$version" || true)" ${pyenv_root:+"$pyenv_root"/versions/"$version".*/bin/python}; do
    if [ -x "$candidate" ] && "$candidate" -c 'import venv' 2>/dev/null; then python=$candidate; break; fi
  done
  if [ -z "$python" ]; then echo "--- Python $version: not on this machine, skipped"; continue; fi
  echo "--- Python $version ($python)"
  "$python" -m venv ".venv-$version"
  ".venv-$version/bin/python" -m pip install --quiet --upgrade pip
  ".venv-$version/bin/python" -m pip install --quiet -e '.[test]'
  ".venv-$version/bin/python" -m pytest -q -m "not browser" -p no:cacheprovider -n 2
done
