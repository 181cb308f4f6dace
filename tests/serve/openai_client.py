"""qgpu serve as its users meet it: the official `openai` package against a running server
(tests/serve.rs starts it and passes what `qgpu run` answers for the same prompts).

Environment: QGPU_SERVE_URL (http://host:port), QGPU_API_KEY, QGPU_SERVE_LOG (the server's
stderr), QGPU_CHAT_PROMPT / QGPU_EXPECTED_CHAT and QGPU_TEXT_PROMPT / QGPU_EXPECTED_TEXT (greedy,
QGPU_MAX_TOKENS tokens), QGPU_CONTEXT, QGPU_QUEUE, QGPU_PARALLEL and QGPU_BATCH_PROMPTS (a JSON
list of prompts asked one at a time, then all at once)."""

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request

import openai
from checks import check, done

URL = os.environ["QGPU_SERVE_URL"]
KEY = os.environ["QGPU_API_KEY"]
N = int(os.environ["QGPU_MAX_TOKENS"])
CONTEXT = int(os.environ["QGPU_CONTEXT"])
client = openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0, timeout=600)


def raw(path, body, key=KEY, method="POST"):
    """(status, headers, parsed JSON body) of a request sent as bytes, outside the client."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data, method=method, headers={"Content-Type": "application/json"})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, r.headers, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read() or b"null")


def chat(prompt, **kw):
    return client.chat.completions.create(model="any", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=N, **kw)


def slots_busy():
    with urllib.request.urlopen(URL + "/health", timeout=60) as r:
        return json.loads(r.read())["slots_processing"]


def wait_idle(seconds=300):
    end = time.time() + seconds
    while time.time() < end:
        if slots_busy() == 0:
            return True
        time.sleep(0.2)
    return False


# Listing and the greedy answers `qgpu run` gives.
models = client.models.list().data
check(len(models) == 1 and models[0].id, f"/v1/models lists the served model ({models[0].id})")
prompt, expected = os.environ["QGPU_CHAT_PROMPT"], os.environ["QGPU_EXPECTED_CHAT"]
r = chat(prompt)
check(r.choices[0].message.content == expected, f"chat, greedy: {r.choices[0].message.content!r} equals qgpu run's {expected!r}")
check(r.choices[0].message.role == "assistant" and r.choices[0].finish_reason in ("stop", "length"), "chat: role and finish_reason")
check(r.usage.prompt_tokens > 0 and r.usage.completion_tokens <= N and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, f"chat usage {r.usage}")
first_usage = r.usage

# Streamed, with usage: the same text; the same prompt again is served from the slot's cache.
pieces, usage, finish = [], None, None
for chunk in chat(prompt, stream=True, stream_options={"include_usage": True}):
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        pieces.append(c.delta.content or "")
        finish = c.finish_reason or finish
check("".join(pieces) == expected, f"chat, streamed: {''.join(pieces)!r}")
check(finish in ("stop", "length") and usage is not None and usage.completion_tokens == first_usage.completion_tokens, f"streamed finish {finish} and usage {usage}")
check(usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens - 1, f"the repeated prompt reused {usage.prompt_tokens_details.cached_tokens} of {usage.prompt_tokens} positions")

# Text completion, whole and streamed.
tprompt, texpected = os.environ["QGPU_TEXT_PROMPT"], os.environ["QGPU_EXPECTED_TEXT"]
r = client.completions.create(model="any", prompt=tprompt, temperature=0, max_tokens=N)
check(r.choices[0].text == texpected, f"completion, greedy: {r.choices[0].text!r} equals qgpu run's {texpected!r}")
text = "".join(c.choices[0].text for c in client.completions.create(model="any", prompt=tprompt, temperature=0, max_tokens=N, stream=True) if c.choices)
check(text == texpected, f"completion, streamed: {text!r}")

# A stop string: the answer ends before it, with finish_reason "stop".
words = texpected.split()
stop = words[len(words) // 2]
cut = texpected[: texpected.index(stop)]
r = client.completions.create(model="any", prompt=tprompt, temperature=0, max_tokens=N, stop=[stop, "never appears"])
check(r.choices[0].text == cut and r.choices[0].finish_reason == "stop", f"stop {stop!r}: {r.choices[0].text!r}")

# Batching: concurrent greedy requests answer exactly what each answers alone.
batch_prompts = json.loads(os.environ["QGPU_BATCH_PROMPTS"])
batch_expected = [chat(p).choices[0].message.content for p in batch_prompts]
answers = [None] * len(batch_prompts)


def one(i):
    answers[i] = chat(batch_prompts[i]).choices[0].message.content


threads = [threading.Thread(target=one, args=(i,)) for i in range(len(batch_prompts))]
for t in threads:
    t.start()
for t in threads:
    t.join()
for p, got, want in zip(batch_prompts, answers, batch_expected):
    check(got == want, f"{len(batch_prompts)} at once, {p!r}: {got!r} equals the answer alone {want!r}")

# Errors: the client's typed exceptions, with the field named.
try:
    openai.OpenAI(base_url=URL + "/v1", api_key="wrong", max_retries=0).models.list()
    check(False, "a wrong API key is refused")
except openai.AuthenticationError as e:
    check(e.status_code == 401, "a wrong API key is a 401")
for body, param in [({"temperature": 5}, "temperature"), ({"n": 2}, "n"), ({"max_tokens": "8"}, "max_tokens"), ({"max_tokens": CONTEXT + 1}, "max_tokens"), ({"top_p": 0}, "top_p"), ({"stop": [1]}, "stop"), ({"logprobs": True}, "logprobs")]:
    try:
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}], extra_body=body)
        check(False, f"{body} is refused")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and e.body.get("param") == param, f"{body}: 400 naming {param}: {e.body.get('message')}")
for messages, param in [([], "messages"), ([{"role": "wizard", "content": "x"}], "messages[0].role"), ([{"role": "user", "content": 5}], "messages[0].content")]:
    try:
        client.chat.completions.create(model="any", messages=messages)
        check(False, f"{messages} is refused")
    except openai.BadRequestError as e:
        check(e.body.get("param") == param, f"messages {messages}: 400 naming {param}")
try:
    client.completions.create(model="any", prompt="word " * CONTEXT, max_tokens=1)
    check(False, "a prompt longer than the context is refused")
except openai.BadRequestError as e:
    check(e.body.get("code") == "context_length_exceeded", f"a prompt past the context: {e.body.get('message')}")
status, _, body = raw("/v1/chat/completions", b'{"messages": [')
check(status == 400 and "not valid JSON" in body["error"]["message"], f"malformed JSON: {status} {body['error']['message']}")
status, _, body = raw("/v1/chat/completions", b"[1, 2]")
check(status == 400, "a body that is not an object: 400")
status, _, body = raw("/v1/chat/completions", b"x" * (1 << 20))
check(status == 413 and "limit" in body["error"]["message"], f"an oversized body: {status} {body['error']['message']}")
status, _, body = raw("/v1/nothing", None, method="GET")
check(status == 404 and body["error"]["code"] == "not_found", "an unknown route: 404")
status, _, body = raw("/v1/embeddings", {"input": "x"})
check(status == 400, "embeddings from a decoder: 400")
status, _, body = raw("/v1/models", None, key=None, method="GET")
check(status == 401, "no API key: 401")
status, _, body = raw("/health", None, key=None, method="GET")
check(status == 200 and body["status"] == "ok", "/health needs no key")

# A client that goes away cancels its sequence: the slot frees long before the tokens run out.
stream = client.chat.completions.create(
    model="any", messages=[{"role": "user", "content": "Write a long story about a dragon."}], temperature=0, max_tokens=CONTEXT // 2, stream=True
)
next(iter(stream))
stream.close()
check(wait_idle(), "a closed stream frees its slot")
log = open(os.environ["QGPU_SERVE_LOG"]).read()
cancelled = [l for l in log.splitlines() if "finish=cancelled" in l]
check(cancelled and int(cancelled[-1].split("generated=")[1].split()[0]) < CONTEXT // 2, f"the server logged the cancel: {cancelled[-1] if cancelled else None}")

# Past every slot and the queue: 503 with Retry-After, and the held streams still finish.
parallel, queue = int(os.environ["QGPU_PARALLEL"]), int(os.environ["QGPU_QUEUE"])
held, refused = [], None
for i in range(parallel + queue + 1):
    req = urllib.request.Request(URL + "/v1/completions", data=json.dumps({"prompt": f"Count to {i}:", "max_tokens": 2, "stream": True}).encode(), headers={"Authorization": f"Bearer {KEY}"})
    try:
        held.append(urllib.request.urlopen(req, timeout=600))
    except urllib.error.HTTPError as e:
        refused = (e.code, e.headers.get("Retry-After"), json.loads(e.read())["error"]["code"])
        break
# The engine admits between passes, so requests that arrive during one wait in the queue: the
# refusal comes after at least `queue` of them, at most after every slot and the queue.
check(refused == (503, "1", "queue_full") and queue <= len(held) <= parallel + queue, f"request {len(held) + 1}, with {parallel} slots and a queue of {queue}: {refused}")
for r in held:
    body = r.read().decode()
    check(body.rstrip().endswith("data: [DONE]"), "a held stream finishes")
check(wait_idle(), "every slot is free afterwards")
done()
