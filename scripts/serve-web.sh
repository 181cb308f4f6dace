#!/usr/bin/env bash
# Serves the browser demo on http://127.0.0.1:${PORT:-8080}/: web/ at the root and the model
# cache (${QGPU_CACHE_DIR:-~/.cache/qgpu}/models) at /models/. Build web/pkg first with
# scripts/build-web.sh; fetch the default model with `qgpu fetch`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/serve_web.py --port "${PORT:-8080}" "$@"
