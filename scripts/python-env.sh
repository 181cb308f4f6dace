# Sourced by scripts/test.sh and scripts/test-browser.sh: the tests' Python virtual environment
# (the pinned `openai` package for the server test, gguf-py for the browser test), made when
# missing; exports QGPU_PYTHON.
VENV="${CARGO_TARGET_DIR:-target}/python"
if ! "$VENV/bin/python" -c "import openai, gguf" 2>/dev/null; then
  python3 -m venv "$VENV" 2>/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip
    python3 -m venv "$VENV"
  }
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/serve/requirements.txt
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -r tests/browser/requirements.txt
fi
export QGPU_PYTHON="$VENV/bin/python"
