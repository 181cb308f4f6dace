#!/usr/bin/env python3
"""Soak test of qgpu serve: a few hundred requests from several threads, with clients that hang
up mid-stream and malformed and oversized bodies mixed in, in rounds (3 by default). After each
round every slot must be free; every well-formed request must have had a well-formed answer;
and the server's RSS after the last round must be within 16 MiB of where the first left it (the
first fills the model's bounded plan cache, so it is the baseline). Standard library only;
loopback only.

  scripts/soak_serve.py --url http://127.0.0.1:8080 --pid PID [--requests 300] [--threads 6] [--rounds 3]

Exit status 0 when every check holds."""

import argparse
import json
import random
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def health(url):
    with urllib.request.urlopen(url + "/health", timeout=60) as r:
        return json.loads(r.read())


def post(url, path, body, timeout=600):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def hang_up(url, body, after_bytes):
    """Sends a streaming request on a raw socket and closes it after `after_bytes` of the answer."""
    u = urllib.parse.urlparse(url)
    data = json.dumps(body).encode()
    with socket.create_connection((u.hostname, u.port), timeout=600) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        got = b""
        while len(got) < after_bytes:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk


BAD_BODIES = [
    b"{",
    b"[]",
    b'{"messages": "hi"}',
    b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}',
    b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}',
    b'{"messages": [{"role": "alien", "content": "hi"}]}',
    b'{"prompt": {"a": 1}}',
    b"\xff\xfe\x00garbage",
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, required=True, help="the server's process id (for its RSS)")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--threads", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="rounds the requests are split into (at least 2)")
    args = ap.parse_args()
    if urllib.parse.urlparse(args.url).hostname not in ("127.0.0.1", "localhost"):
        sys.exit("loopback only")
    rounds = max(2, args.rounds)
    rng = random.Random(args.seed)
    post(args.url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Warm up."}], "max_tokens": 2, "temperature": 0})
    rss = [rss_kib(args.pid)]
    ok = True
    for r in range(rounds):
        first, last = args.requests * r // rounds, args.requests * (r + 1) // rounds
        ok &= soak_round(args, rng, first, last - first)
        rss.append(rss_kib(args.pid))
        print(f"RSS after round {r + 1}: {rss[-1]} KiB ({(rss[-1] - rss[-2]) / 1024:+.1f} MiB)")
    # Round 1 fills the model's bounded plan cache and the allocator's pools, so it is the
    # baseline; a leak grows every round after it, retention does not.
    growth = (rss[-1] - rss[1]) / 1024
    print(f"RSS: {rss[0]} KiB warm, {rss[1]} KiB after round 1, {rss[-1]} KiB after round {rounds} ({growth:+.1f} MiB since round 1)")
    ok = ok and growth < 16
    print("soak: ok" if ok else "soak: FAILED")
    sys.exit(0 if ok else 1)


def soak_round(args, rng, first, count):
    """Runs requests first..first + count from `args.threads` threads; True if all went well."""
    plan = []
    for i in range(first, first + count):
        kind = rng.choices(["chat", "completion", "stream", "hangup", "bad", "oversized"], [4, 2, 3, 3, 3, 1])[0]
        plan.append((i, kind, rng.randint(1, 4), rng.randint(0, 400)))
    results = {}
    lock = threading.Lock()
    queue = list(plan)

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                i, kind, tokens, cut = queue.pop()
            prompt = f"Request {i}: tell me about the number {i % 17}."
            try:
                if kind == "chat":
                    status, body = post(args.url, "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens})
                    ok = status == 200 and json.loads(body)["choices"][0]["finish_reason"] in ("stop", "length")
                    ok = ok or status == 503  # the queue was full: a well-formed refusal
                elif kind == "completion":
                    status, body = post(args.url, "/v1/completions", {"prompt": prompt, "max_tokens": tokens, "seed": i})
                    ok = status in (200, 503) and ("choices" in json.loads(body) or "error" in json.loads(body))
                elif kind == "stream":
                    status, body = post(args.url, "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens, "stream": True})
                    ok = (status == 200 and body.decode().rstrip().endswith("data: [DONE]")) or status == 503
                elif kind == "hangup":
                    hang_up(args.url, {"messages": [{"role": "user", "content": prompt}], "max_tokens": 64, "stream": True}, cut)
                    ok = True
                elif kind == "bad":
                    status, body = post(args.url, "/v1/chat/completions", BAD_BODIES[i % len(BAD_BODIES)])
                    ok = status == 400 and "error" in json.loads(body)
                else:
                    # The server answers 413 once the limit is passed and closes without reading
                    # the rest, so the upload may break off first; either is a refusal.
                    try:
                        status, body = post(args.url, "/v1/chat/completions", b"{" + b" " * (8 << 20) + b"}")
                        ok = status == 413
                    except (urllib.error.URLError, ConnectionError) as e:
                        ok = isinstance(getattr(e, "reason", e), ConnectionError)
                        status = repr(e)
            except Exception as e:  # noqa: BLE001 - a failure of any kind is the finding
                ok, status = False, repr(e)
            with lock:
                results[i] = (kind, ok, None if ok else status)

    started = time.time()
    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Hung-up streams are cancelled at the engine's next turn.
    deadline = time.time() + 600
    while time.time() < deadline and health(args.url)["slots_processing"]:
        time.sleep(0.5)
    h = health(args.url)
    failed = {i: r for i, r in results.items() if not r[1]}
    kinds = {}
    for kind, _, _ in results.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"round: {len(results)} requests in {time.time() - started:.0f} s: {kinds}")
    print(f"  failed: {len(failed)} {list(failed.items())[:5]}")
    print(f"  after: {h}")
    return not failed and h["status"] == "ok" and h["slots_processing"] == 0


if __name__ == "__main__":
    main()
