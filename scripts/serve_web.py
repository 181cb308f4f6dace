#!/usr/bin/env python3
"""Static server for the browser demo: web/ at /, the model cache at /models/, and the browser
test's own models ($QGPU_TEST_MODELS, when set) at /test-models/ (127.0.0.1 only).

Files are served with Range support (`Range: bytes=N-` and `bytes=N-M`, honouring `If-Range`),
as a CDN serves model files, so a broken download can resume. For the browser test, with
$QGPU_TEST_MODELS set, /flaky/<path> serves <path> but breaks every download that is not a
Range request half way: the connection closes after half the announced bytes."""
import argparse
import http.server
import os
import posixpath
import re
import socket
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
        if self.flaky():
            path = path[len("/flaky"):]
        base, rest = ROOT, path
        if path.startswith("/models/"):
            base, rest = cache_dir(), path[len("/models/"):]
        elif path.startswith("/test-models/") and os.environ.get("QGPU_TEST_MODELS"):
            base, rest = os.environ["QGPU_TEST_MODELS"], path[len("/test-models/"):]
        parts = [p for p in posixpath.normpath(rest).split("/") if p not in ("", ".", "..")]
        return os.path.join(base, *parts)

    def flaky(self):
        return self.path.startswith("/flaky/") and bool(os.environ.get("QGPU_TEST_MODELS"))

    def do_GET(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            return super().do_GET()
        size = os.path.getsize(path)
        modified = self.date_time_string(int(os.path.getmtime(path)))
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "").strip())
        if ranged and self.headers.get("If-Range", modified) != modified:
            ranged = None  # the file changed since the client's first bytes: send it whole
        start, end = 0, size
        if ranged:
            start = int(ranged.group(1))
            end = min(int(ranged.group(2)) + 1, size) if ranged.group(2) else size
            if start >= size or start >= end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Length", str(end - start))
        self.send_header("Last-Modified", modified)
        self.send_header("Accept-Ranges", "bytes")
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        # A flaky download stops half way, with the connection closed under it.
        stop = start + (end - start) // 2 if self.flaky() and not ranged else end
        with open(path, "rb") as f:
            f.seek(start)
            try:
                copy_bytes(f, self.wfile, stop - start)
                if stop < end:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, fmt, *args):
        if os.environ.get("QGPU_SERVE_QUIET") != "1":
            super().log_message(fmt, *args)


def copy_bytes(src, dst, n):
    while n > 0:
        block = src.read(min(n, 1 << 20))
        if not block:
            return
        dst.write(block)
        n -= len(block)


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
