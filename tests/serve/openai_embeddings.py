"""qgpu serve with a BERT encoder, through the official `openai` package: /v1/embeddings
(float, and base64, the package's default) equals what `qgpu embed` prints for the same texts.

Environment: QGPU_SERVE_URL, QGPU_EMBED_TEXTS (a JSON list) and QGPU_EXPECTED_EMBEDDINGS (a JSON
list of `qgpu embed`'s vectors for them)."""

import base64
import json
import math
import struct
import os

import openai
from checks import check, done

URL = os.environ["QGPU_SERVE_URL"]
texts = json.loads(os.environ["QGPU_EMBED_TEXTS"])
expected = json.loads(os.environ["QGPU_EXPECTED_EMBEDDINGS"])
client = openai.OpenAI(base_url=URL + "/v1", api_key="none", max_retries=0, timeout=600)


def worst(a, b):
    return max(abs(x - y) for x, y in zip(a, b))


# The package asks for base64 by default and decodes it itself; asked explicitly, it hands
# back the base64 text.
for fmt in ("default", "float", "base64"):
    r = client.embeddings.create(model="any", input=texts, **({} if fmt == "default" else {"encoding_format": fmt}))
    got = [d.embedding for d in sorted(r.data, key=lambda d: d.index)]
    if fmt == "base64":
        got = [list(struct.unpack(f"<{len(base64.b64decode(g)) // 4}f", base64.b64decode(g))) for g in got]
    check(len(got) == len(expected) and all(len(g) == len(e) for g, e in zip(got, expected)), f"{fmt}: {len(got)} embeddings of {len(got[0])} values")
    diff = max(worst(g, e) for g, e in zip(got, expected))
    check(diff < 1e-5, f"{fmt}: within {diff:.2e} of qgpu embed")
    check(all(abs(math.sqrt(sum(x * x for x in g)) - 1) < 1e-4 for g in got), f"{fmt}: unit length")
    check(r.usage.prompt_tokens > len(texts) and r.usage.total_tokens == r.usage.prompt_tokens, f"{fmt}: usage {r.usage}")
one = client.embeddings.create(model="any", input=texts[0], encoding_format="float").data[0].embedding
check(worst(one, expected[0]) < 1e-5, "a single string input")
for body, param in [({"input": []}, "input"), ({"input": [1, 2]}, "input"), ({"input": ""}, "input"), ({"input": "x", "dimensions": 8}, "dimensions"), ({"input": "x", "encoding_format": "hex"}, "encoding_format")]:
    try:
        client.embeddings.create(model="any", **body)
        check(False, f"{body} is refused")
    except openai.BadRequestError as e:
        check(e.body.get("param") == param, f"{body}: 400 naming {param}")
try:
    client.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}])
    check(False, "chat on an encoder is refused")
except openai.BadRequestError as e:
    check("encoder" in e.body.get("message", ""), "chat on an encoder: 400")
done()
