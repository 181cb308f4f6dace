#!/usr/bin/env python3
"""Load test of an OpenAI-compatible server (qgpu serve, llama-server): for each concurrency,
that many clients stream chat completions at once, each a bounded number of requests; reports
aggregate generated tokens/s, time to first token and time between tokens (p50, p99).
Standard library only; loopback URLs only.

  scripts/bench_serve.py --url http://127.0.0.1:8080 --name qgpu --clients 1,2,4,8 \
      --requests 1 --max-tokens 32 --json out.json

Token counts come from the final usage chunk (stream_options.include_usage), so a server that
sends several tokens in one chunk is counted right; time between tokens is between chunks
that carry text.

  scripts/bench_serve.py report chart.svg qgpu.json llama-server.json   # table and chart"""

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.parse
import urllib.request

PROMPTS = [
    "Write a long story about a dragon who learns to bake bread.",
    "Explain how a steam engine works, step by step, in detail.",
    "Describe a walk through a busy city market in the morning.",
    "Tell me about the history of the bicycle, with as much detail as you can.",
    "Write a long letter to a friend about a trip to the mountains.",
    "Explain photosynthesis to a curious ten-year-old, at length.",
    "Describe the life of a lighthouse keeper on a remote island.",
    "Write a detailed recipe for a vegetable soup, with tips.",
]


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def one_request(url, key, prompt, max_tokens, timeout):
    """Streams one chat completion; returns (ttft_s, [gaps_s], completion_tokens, seconds)."""
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    req = urllib.request.Request(url + "/v1/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    start = time.perf_counter()
    first, last, gaps, tokens = None, None, [], None
    with urllib.request.urlopen(req, timeout=timeout) as r:
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            text = "".join((c.get("delta") or {}).get("content") or "" for c in chunk.get("choices", []))
            if text:
                now = time.perf_counter()
                if first is None:
                    first = now - start
                else:
                    gaps.append(now - last)
                last = now
    return first, gaps, tokens or 0, time.perf_counter() - start


def run_level(url, key, clients, requests, max_tokens, timeout):
    results, errors = [], []
    lock = threading.Lock()

    def client(i):
        for j in range(requests):
            prompt = PROMPTS[(i * requests + j) % len(PROMPTS)]
            try:
                r = one_request(url, key, prompt, max_tokens, timeout)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                with lock:
                    errors.append(repr(e))

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    tokens = sum(r[2] for r in results)
    ttft = [r[0] for r in results if r[0] is not None]
    gaps = [g for r in results for g in r[1]]
    return {
        "clients": clients,
        "requests": len(results),
        "errors": errors,
        "generated_tokens": tokens,
        "seconds": wall,
        "tokens_per_second": tokens / wall if wall > 0 else None,
        "ttft_p50_s": percentile(ttft, 50),
        "ttft_p99_s": percentile(ttft, 99),
        "itl_p50_s": percentile(gaps, 50),
        "itl_p99_s": percentile(gaps, 99),
    }


def report(paths, svg_path):
    """A markdown table of several runs' JSON, and an SVG chart of tokens/s by clients."""
    runs = [json.load(open(p)) for p in paths]
    print("| server | clients | tok/s | × 1 client | TTFT p50 / p99 (s) | between tokens p50 / p99 (ms) |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        base = run["levels"][0]["tokens_per_second"]
        for lv in run["levels"]:
            print(
                f"| {run['server']} | {lv['clients']} | {lv['tokens_per_second']:.2f} | {lv['tokens_per_second'] / base:.2f} | "
                f"{lv['ttft_p50_s']:.1f} / {lv['ttft_p99_s']:.1f} | {lv['itl_p50_s'] * 1e3:.0f} / {lv['itl_p99_s'] * 1e3:.0f} |"
            )
    w, h, m = 640, 360, 50
    top = max(lv["tokens_per_second"] for run in runs for lv in run["levels"]) * 1.15
    xs = sorted({lv["clients"] for run in runs for lv in run["levels"]})
    x = lambda c: m + (w - 2 * m) * xs.index(c) / max(len(xs) - 1, 1)  # noqa: E731
    y = lambda v: h - m - (h - 2 * m) * v / top  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">Aggregate decode tokens/s by concurrent streaming clients</text>',
             f'<line x1="{m}" y1="{h - m}" x2="{w - m}" y2="{h - m}" stroke="black"/>', f'<line x1="{m}" y1="{m}" x2="{m}" y2="{h - m}" stroke="black"/>']
    for c in xs:
        parts.append(f'<text x="{x(c)}" y="{h - m + 16}" text-anchor="middle">{c}</text>')
    for i in range(5):
        v = top * i / 4
        parts.append(f'<text x="{m - 6}" y="{y(v) + 4}" text-anchor="end">{v:.1f}</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 12}" text-anchor="middle">clients</text>')
    for i, run in enumerate(runs):
        color = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"][i % 4]
        pts = " ".join(f"{x(lv['clients'])},{y(lv['tokens_per_second'])}" for lv in run["levels"])
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for lv in run["levels"]:
            parts.append(f'<circle cx="{x(lv["clients"])}" cy="{y(lv["tokens_per_second"])}" r="3" fill="{color}"/>')
        parts.append(f'<text x="{m + 10}" y="{m + 16 * i}" fill="{color}">{run["server"]}</text>')
    parts.append("</svg>")
    with open(svg_path, "w") as out:
        out.write("\n".join(parts) + "\n")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        if len(sys.argv) < 4:
            sys.exit("usage: bench_serve.py report OUT.svg RUN.json [RUN.json ...]")
        return report(sys.argv[3:], sys.argv[2])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8080 (loopback only)")
    ap.add_argument("--name", default="server")
    ap.add_argument("--key", default=None)
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--requests", type=int, default=1, help="requests per client at each level")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    host = urllib.parse.urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing to load-test {host}: loopback only")
    levels = []
    for c in [int(x) for x in args.clients.split(",")]:
        level = run_level(args.url, args.key, c, args.requests, args.max_tokens, args.timeout)
        levels.append(level)
        f = lambda v, scale=1.0, d=2: "-" if v is None else f"{v * scale:.{d}f}"  # noqa: E731
        print(
            f"{args.name}: {c} clients, {level['requests']} requests ({len(level['errors'])} failed), "
            f"{level['generated_tokens']} tokens in {level['seconds']:.1f} s = {f(level['tokens_per_second'])} tok/s; "
            f"TTFT p50 {f(level['ttft_p50_s'], 1e3, 0)} ms p99 {f(level['ttft_p99_s'], 1e3, 0)} ms; "
            f"between tokens p50 {f(level['itl_p50_s'], 1e3, 0)} ms p99 {f(level['itl_p99_s'], 1e3, 0)} ms",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"server": args.name, "max_tokens": args.max_tokens, "requests_per_client": args.requests, "levels": levels}, out, indent=1)


if __name__ == "__main__":
    main()
