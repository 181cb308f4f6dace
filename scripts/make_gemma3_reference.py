import json, sys, torch, time
from transformers import AutoTokenizer, AutoModelForCausalLM
d = "/work/models/gemma"; f = "gemma-3-270m-q4_k_m.gguf"
t0 = time.time()
tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager").eval()
print("loaded", time.time() - t0, file=sys.stderr)
prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]
texts = ["Hello world! 你好，世界。 🙂 emoji  and   spaces\n\n\ttabs 12345 3.14159 $100", "fn main() {\n    println!(\"{}\", 1 + 2);\n}", "日本語のテキストと한국어 텍스트", "  leading spaces", "The quick brown fox jumps over the lazy dog."]
out = {"transformers": __import__("transformers").__version__, "cases": [], "tokenize": []}
for t in texts:
    out["tokenize"].append({"text": t, "ids": tok(t, add_special_tokens=True)["input_ids"]})
for p in prompts:
    ids = tok(p, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        g = model.generate(ids, max_new_tokens=24, do_sample=False)
        logits = model(ids).logits[0, -1]
    top = torch.topk(torch.log_softmax(logits, -1), 10)
    out["cases"].append({"prompt": p, "prompt_ids": ids[0].tolist(), "generated_ids": g[0, ids.shape[1]:].tolist(),
                         "text": tok.decode(g[0, ids.shape[1]:]), "top10_ids": top.indices.tolist(), "top10_logprobs": [round(v, 5) for v in top.values.tolist()]})
    print(p, "->", out["cases"][-1]["text"], file=sys.stderr)
json.dump(out, open("/work/ref/gemma3_reference.json", "w"), ensure_ascii=False, indent=1)
