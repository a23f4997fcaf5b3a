#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the checks: ruff, then the whole test suite.
# pytest's exit code 5 ("no tests collected") is a failure here, never a silent pass.
set -euo pipefail
cd "$(dirname "$0")/.."
# the tested versions (scripts/ci-constraints.txt); TMRL2_UNPINNED=1 tests the newest instead
if [ "${TMRL2_UNPINNED:-0}" != 1 ]; then
    export PIP_CONSTRAINT="$PWD/scripts/ci-constraints.txt"
fi
bash scripts/setup.sh
# The plugin compile check needs g++ and Debian's AngelScript (angelscript-dev). Install them
# when we can (root with apt); otherwise that one test skips and says why.
if [ ! -f /usr/include/angelscript.h ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ angelscript-dev) \
        >/dev/null 2>&1 || echo "note: could not install angelscript-dev; the plugin compile check will skip" >&2
fi
# The report's page is opened in a headless browser (Debian's chromium-headless-shell) when
# one can be installed; otherwise that one test skips and says why.
if ! command -v chromium-headless-shell >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium-headless-shell) >/dev/null 2>&1 \
        || echo "note: could not install chromium-headless-shell; the report's browser test will skip" >&2
fi
.venv/bin/ruff check tmrl2 tests benchmarks
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
    echo "pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit "$code"
