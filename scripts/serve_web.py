#!/usr/bin/env python3
"""Static server for the browser demo: web/ at /, the model cache at /models/, and the browser
test's own models ($QGPU_TEST_MODELS, when set) at /test-models/ (127.0.0.1 only)."""
import argparse
import http.server
import os
import posixpath
import urllib.parse

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "web"))


def cache_dir():
    base = os.environ.get("QGPU_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(xdg, "qgpu")
    return os.path.join(base, "models")


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript", ".gguf": "application/octet-stream"}

    def translate_path(self, path):
        path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        base, rest = ROOT, path
        if path.startswith("/models/"):
            base, rest = cache_dir(), path[len("/models/"):]
        elif path.startswith("/test-models/") and os.environ.get("QGPU_TEST_MODELS"):
            base, rest = os.environ["QGPU_TEST_MODELS"], path[len("/test-models/"):]
        parts = [p for p in posixpath.normpath(rest).split("/") if p not in ("", ".", "..")]
        return os.path.join(base, *parts)

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, fmt, *args):
        if os.environ.get("QGPU_SERVE_QUIET") != "1":
            super().log_message(fmt, *args)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"serving {ROOT} and {cache_dir()} at /models/ on http://{args.host}:{server.server_port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
