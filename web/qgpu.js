// qgpu in the browser: quantized LLaMA-family models on WebGPU.
//
//   import { Qgpu } from './qgpu.js';
//   const q = await Qgpu.create();            // q.info: adapter, limits, kernel variants
//   await q.loadModel('/models/model.gguf', (p) => console.log(p));   // or a Hugging Face directory:
//   // await q.loadModel('/models/Qwen3-0.6B-GPTQ-Int4/');            // (URL ending in '/', picked Files, {config, ...})
//   const text = await q.generate('Hello', { maxTokens: 32 }, (piece) => { out.textContent += piece; });
//   console.log(q.stats());
//
// The wasm package is built into ./pkg by scripts/build-web.sh.

import init, { Qgpu as WasmQgpu, QgpuEmbedder as WasmQgpuEmbedder, ModelBytes } from './pkg/qgpu.js';

let ready = null;
function initOnce() {
  if (!ready) ready = init();
  return ready;
}

/** Bytes of WebAssembly memory the module holds now (0 before it is loaded). */
export async function wasmMemoryBytes() {
  if (!ready) return 0;
  const exports = await ready;
  return exports.memory?.buffer.byteLength ?? 0;
}

/** Throws a readable error when the browser has no WebGPU at all. */
function checkWebGpu() {
  if (typeof navigator === 'undefined' || !navigator.gpu) {
    throw new Error('This browser does not offer WebGPU (navigator.gpu is missing). ' +
      'Use a recent Chrome, Edge or Safari, or enable WebGPU in the browser settings.');
  }
}

export class Qgpu {
  /** @param {WasmQgpu} inner */
  constructor(inner) {
    this.inner = inner;
    /** Adapter, capabilities, limits and the chosen kernel variants. */
    this.info = inner.info();
  }

  static async create() {
    checkWebGpu();
    await initOnce();
    return new Qgpu(await WasmQgpu.create());
  }

  /** The reason the GPU device was lost, or undefined. */
  deviceLost() {
    return this.inner.deviceLost();
  }

  /**
   * Loads a model, replacing any loaded one. `source` is either
   * - a GGUF file: a URL (string or URL), a File/Blob, a Response, or bytes (Uint8Array/ArrayBuffer);
   * - a Hugging Face directory (see `hfDirectory`): a base URL ending in '/', the Files of an
   *   `<input type=file webkitdirectory>` pick, or `{safetensors, config, tokenizer, tokenizerConfig?,
   *   chatTemplate?}`. Quantized checkpoints (bitsandbytes NF4/FP4, GPTQ, AWQ) load as they are.
   * `onProgress({phase, loaded, total})` reports the download ('download', bytes) and the upload
   * to the GPU ('upload', tensors). `kvType` ('f32', 'f16', 'q8_0', 'q4_0'; default 'f16') is how
   * the KV cache stores values. A GGUF streams to the GPU as it downloads: WebAssembly memory
   * holds its header and one band of rows at a time, not the file (`wasmMemoryBytes()` shows
   * it). A model split by llama.cpp's gguf-split loads from the URL of any of its
   * `-0000i-of-0000N.gguf` files, or from all of them picked together. A download that breaks
   * resumes with a Range request where the server allows. `fetch` (default: the global one)
   * fetches every URL: the engine passes one that reads through its model cache.
   */
  async loadModel(source, onProgress = () => {}, { kvType, fetch: get = fetch } = {}) {
    const upload = (done, total) => onProgress({ phase: 'upload', loaded: done, total });
    let info;
    if (isHfDirectory(source)) {
      const dir = await hfDirectory(source, get);
      const weights = await readShards(dir.safetensors, onProgress, get);
      // `weights` are consumed (moved into Rust) by this call.
      info = await this.inner.loadHfModel(weights, dir, upload, kvType);
    } else {
      info = await this.streamGguf(ggufFiles(source), onProgress, upload, kvType, get);
    }
    this.model = info;
    return info;
  }

  /** Streams the files of one GGUF model (several when split) into a wasm-side upload. */
  async streamGguf(files, onProgress, onTensor, kvType, get) {
    const upload = this.inner.beginGguf(files.length, onTensor, kvType);
    try {
      let before = 0;
      for (const file of files) {
        const { stream, total } = await openBody(file, get);
        upload.beginFile(total);
        let loaded = 0;
        const reader = stream.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          // Bounded pieces: each is copied into WebAssembly memory before it is consumed.
          for (let at = 0; at < value.length; at += PUSH_BYTES) upload.push(value.subarray(at, at + PUSH_BYTES));
          loaded += value.length;
          onProgress({ phase: 'download', loaded: before + loaded, total: files.length === 1 ? total : undefined });
        }
        upload.endFile();
        before += loaded;
      }
    } catch (e) {
      upload.free();
      throw e;
    }
    return upload.finish();
  }

  /**
   * Generates a continuation of `prompt`; with `options.messages` ([{role, content}, ...]), the
   * next assistant message of that chat instead (the earlier turns' KV cache is kept between
   * calls; `stats().cachedTokens` says how much). options: {maxTokens, temperature, topK, topP, minP,
   * repetitionPenalty, repeatLastN, seed, chat, stop, parseSpecial, messages}; sampling defaults as llama.cpp's
   * (temperature 0.8, topK 40, topP 0.95, minP 0.05, repetitionPenalty 1.0, repeatLastN 64)
   * with qgpu's fixed seed 42; temperature 0 is greedy. `onToken(piece)` gets each piece of text; return
   * false to stop. Resolves to the whole generated text.
   */
  generate(prompt, options = {}, onToken = undefined) {
    return this.inner.generate(prompt, options, onToken);
  }

  /** Stops a running generation after the current token. */
  cancel() {
    this.inner.cancel();
  }

  /** Timings of the last generation: prefill/decode tokens per second, memory. */
  stats() {
    return this.inner.stats();
  }

  /** Drops the model and its GPU memory. */
  unload() {
    this.model = undefined;
    this.inner.unload();
  }

  /** Runs every kernel against the CPU oracle on this device; resolves to a report. */
  selfTest() {
    return this.inner.selfTest();
  }

  /**
   * Runs the kernel benchmark suite (the same as `qgpu bench`); `onProgress(line)` hears each
   * step. Options: {quick, formats, shapes: ['576x576'], rows: [1, 64], repeats, warmup,
   * wallClock, rotationBytes, probeBytes}. Resolves to {report, table, svg}: the JSON report
   * (docs/bench.schema.json), the text table and an SVG chart.
   */
  bench(options = {}, onProgress = () => {}) {
    return this.inner.bench(options, onProgress);
  }

  /** Times every matvec variant and keeps the fastest per shape in localStorage. */
  tune(options = {}, onProgress = () => {}) {
    return this.inner.tune(options, onProgress);
  }

  /** Forgets the tune table kept in localStorage. */
  clearTuneCache() {
    this.inner.clearTuneCache();
  }

  /** Releases the GPU device; the object is unusable afterwards. */
  destroy() {
    this.inner.destroy();
  }
}

// Sentence embeddings (BERT, e.g. all-MiniLM-L6-v2) on WebGPU:
//
//   import { QgpuEmbedder } from './qgpu.js';
//   const base = '/models/all-MiniLM-L6-v2/';
//   const e = await QgpuEmbedder.load({ safetensors: base + 'model.safetensors', config: base + 'config.json',
//                                       tokenizer: base + 'tokenizer.json', sentenceConfig: base + 'sentence_bert_config.json' });
//   const [a, b] = await e.embed(['first text', 'second text']);   // L2-normalised Float32Arrays
//
// Or `QgpuEmbedder.load('/models/all-MiniLM-L6-v2/')` (a directory URL), or `QgpuEmbedder.load({ gguf: url })` for a GGUF that carries its tokenizer
// (`tokenizer.huggingface.json`, as `qgpu quantize` writes it). The embedder has its own device.

/** Largest piece handed to wasm at once. */
const PUSH_BYTES = 1 << 20;

/**
 * A model file's bytes as a stream, with its length when known: a URL (fetched with `get`; a
 * broken download resumes with a Range request), a File/Blob, a Response, or bytes.
 */
async function openBody(source, get = fetch) {
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    const array = source instanceof Uint8Array ? source : new Uint8Array(source);
    return { stream: new Blob([array]).stream(), total: array.length };
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) return { stream: source.stream(), total: source.size };
  const url = source instanceof Response ? source.url : String(source);
  const response = source instanceof Response ? source : await get(source);
  if (!response.ok) throw new Error(`fetching ${response.url || source} failed: HTTP ${response.status} ${response.statusText}`);
  const length = Number(response.headers.get('Content-Length'));
  // A compressed response's Content-Length is not the file's.
  const total = Number.isFinite(length) && length > 0 && !response.headers.get('Content-Encoding') ? length : undefined;
  return { stream: url ? resumableBody(response, url) : response.body, total };
}

/** Attempts to resume one broken download. */
const RESUME_TRIES = 5;

/**
 * `response`'s body, resumed after a network error with `Range: bytes=N-` requests (and
 * `If-Range`, so a file changed on the server is not spliced), up to RESUME_TRIES times.
 * A server that answers anything but 206 from byte N ends it with the original error.
 */
export function resumableBody(response, url) {
  let reader = response.body.getReader();
  let loaded = 0;
  let tries = 0;
  // If-Range takes only a strong validator: a weak ETag (W/"…") would always get the whole file.
  const etag = response.headers.get('ETag');
  const validator = (etag && !etag.startsWith('W/') ? etag : null) || response.headers.get('Last-Modified');
  return new ReadableStream({
    async pull(controller) {
      for (;;) {
        try {
          const { done, value } = await reader.read();
          if (done) controller.close();
          else {
            loaded += value.length;
            controller.enqueue(value);
          }
          return;
        } catch (e) {
          if (++tries > RESUME_TRIES) throw e;
          const headers = { Range: `bytes=${loaded}-` };
          if (validator) headers['If-Range'] = validator;
          const again = await fetch(url, { headers, cache: 'no-store' });
          const start = /^bytes (\d+)-/.exec(again.headers.get('Content-Range') || '');
          if (again.status !== 206 || !start || Number(start[1]) !== loaded) {
            again.body?.cancel();
            throw new Error(`the download of ${url} broke after ${loaded} bytes (${e.message}) and the server did not resume it (HTTP ${again.status})`);
          }
          reader = again.body.getReader();
        }
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

/** The name's gguf-split parts, `[prefix, count]`, or null (`model-00002-of-00003.gguf`). */
function splitName(name) {
  const m = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/.exec(name);
  return m && Number(m[2]) >= 1 && Number(m[2]) <= Number(m[3]) ? [m[1], Number(m[3])] : null;
}

/**
 * The files of one GGUF model, in order: one, or every file of a gguf-split model (from the
 * URL of any of them, or from all of them picked).
 */
function ggufFiles(source) {
  if (isFileList(source)) {
    const ggufs = Array.from(source).filter((f) => f.name.endsWith('.gguf')).sort((a, b) => (a.name < b.name ? -1 : 1));
    const split = ggufs.length > 0 && splitName(ggufs[0].name);
    if (!split) return ggufs.slice(0, 1);
    if (ggufs.length !== split[1] || ggufs.some((f, i) => f.name !== `${split[0]}-${String(i + 1).padStart(5, '0')}-of-${String(split[1]).padStart(5, '0')}.gguf`)) {
      throw new Error(`a split model needs all ${split[1]} of its files picked together; got ${ggufs.map((f) => f.name).join(', ')}`);
    }
    return ggufs;
  }
  if (typeof source === 'string' || source instanceof URL) {
    const url = new URL(source, typeof location !== 'undefined' ? location.href : undefined);
    const name = url.pathname.split('/').pop();
    const split = splitName(name);
    if (!split || split[1] === 1) return [source];
    return Array.from({ length: split[1] }, (_, i) => new URL(`${split[0]}-${String(i + 1).padStart(5, '0')}-of-${String(split[1]).padStart(5, '0')}.gguf`, url).href);
  }
  if (typeof File !== 'undefined' && source instanceof File && splitName(source.name)?.[1] > 1) {
    throw new Error(`${source.name} is one file of a split model: pick all of its files together`);
  }
  return [source];
}

/**
 * Streams a URL, File/Blob, Response or bytes into a wasm-side ModelBytes;
 * `onLoaded(loaded, total)` hears each chunk (total undefined when the server does not say).
 */
async function readModelBytes(source, onLoaded = () => {}, get = fetch) {
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    const array = source instanceof Uint8Array ? source : new Uint8Array(source);
    const bytes = new ModelBytes(array.length);
    bytes.push(array);
    onLoaded(array.length, array.length);
    return bytes;
  }
  const { stream, total } = await openBody(source, get);
  const bytes = new ModelBytes(total ?? 0);
  try {
    const reader = stream.getReader();
    let loaded = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes.push(value);
      loaded += value.length;
      onLoaded(loaded, total);
    }
  } catch (e) {
    bytes.free();
    throw e;
  }
  return bytes;
}

/** Every safetensors shard into ModelBytes, one after another, with one running progress count. */
async function readShards(shards, onProgress, get = fetch) {
  const out = [];
  let before = 0;
  try {
    for (const shard of shards) {
      const bytes = await readModelBytes(shard, (loaded) => onProgress({ phase: 'download', loaded: before + loaded, total: undefined }), get);
      before += bytes.length;
      out.push(bytes);
    }
  } catch (e) {
    for (const b of out) b.free();
    throw e;
  }
  return out;
}

function isFileList(source) {
  return (typeof FileList !== 'undefined' && source instanceof FileList) ||
    (Array.isArray(source) && source.length > 0 && source.every((f) => typeof File !== 'undefined' && f instanceof File));
}

/** Whether `source` names a Hugging Face directory rather than one GGUF file. */
function isHfDirectory(source) {
  if (typeof source === 'string') return source.endsWith('/');
  if (source instanceof URL) return source.pathname.endsWith('/');
  if (isFileList(source)) return !Array.from(source).some((f) => f.name.endsWith('.gguf'));
  return source !== null && typeof source === 'object' && 'config' in source && 'tokenizer' in source;
}

/** A text file that may be absent: undefined on HTTP 404. */
async function optionalText(url, get = fetch) {
  const response = await get(url);
  if (response.status === 404) return undefined;
  return readText(response);
}

/**
 * The files of a Hugging Face model directory as {safetensors: [...], config, tokenizer,
 * tokenizerConfig, chatTemplate, sentenceConfig}: weights as sources for `readModelBytes`, text
 * files read. From a base URL ending in '/' (model.safetensors, or the shards that
 * model.safetensors.index.json lists; tokenizer_config.json, chat_template.jinja and
 * sentence_bert_config.json when the server has them), from Files picked from a directory
 * (matched by name), or from an object naming each file.
 */
export async function hfDirectory(source, get = fetch) {
  if (typeof source === 'string' || source instanceof URL) {
    const base = new URL(source, typeof location !== 'undefined' ? location.href : undefined);
    const at = (name) => new URL(name, base).href;
    const index = await optionalText(at('model.safetensors.index.json'), get);
    const safetensors = index === undefined
      ? [at('model.safetensors')]
      : [...new Set(Object.values(JSON.parse(index).weight_map ?? {}))].sort().map(at);
    const [config, tokenizer, tokenizerConfig, chatTemplate, sentenceConfig] = await Promise.all([
      readText(at('config.json'), get), readText(at('tokenizer.json'), get), optionalText(at('tokenizer_config.json'), get),
      optionalText(at('chat_template.jinja'), get), optionalText(at('sentence_bert_config.json'), get)]);
    return { safetensors, config, tokenizer, tokenizerConfig, chatTemplate, sentenceConfig };
  }
  if (isFileList(source)) {
    const files = Array.from(source);
    const named = (name) => files.find((f) => f.name === name);
    const safetensors = files.filter((f) => f.name.endsWith('.safetensors')).sort((a, b) => (a.name < b.name ? -1 : 1));
    if (!named('config.json') || !named('tokenizer.json') || safetensors.length === 0) {
      throw new Error('a Hugging Face directory needs config.json, tokenizer.json and .safetensors weights; ' +
        `got ${files.map((f) => f.name).join(', ')}`);
    }
    const [config, tokenizer, tokenizerConfig, chatTemplate, sentenceConfig] = await Promise.all(
      ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'sentence_bert_config.json'].map((n) => readText(named(n))));
    return { safetensors, config, tokenizer, tokenizerConfig, chatTemplate, sentenceConfig };
  }
  const [config, tokenizer, tokenizerConfig, chatTemplate, sentenceConfig] = await Promise.all(
    [source.config, source.tokenizer, source.tokenizerConfig, source.chatTemplate, source.sentenceConfig].map((f) => readText(f, get)));
  const safetensors = Array.isArray(source.safetensors) ? source.safetensors : [source.safetensors];
  return { safetensors, config, tokenizer, tokenizerConfig, chatTemplate, sentenceConfig };
}

/** A text file from a URL, Blob, Response or string contents ({text}). */
async function readText(source, get = fetch) {
  if (source === undefined || source === null) return undefined;
  if (typeof source === 'object' && 'text' in source && typeof source.text === 'string') return source.text;
  if (typeof Blob !== 'undefined' && source instanceof Blob) return source.text();
  const response = source instanceof Response ? source : await get(source);
  if (!response.ok) throw new Error(`fetching ${response.url} failed: HTTP ${response.status} ${response.statusText}`);
  return response.text();
}

export class QgpuEmbedder {
  constructor(inner) {
    this.inner = inner;
    /** {dim, layers, heads, maxSequence, weightBytes} */
    this.info = inner.info();
  }

  /**
   * Loads a BERT model: `{gguf}` (a GGUF that carries its tokenizer), or a Hugging Face directory
   * as `Qgpu.loadModel` takes one (a base URL ending in '/', picked Files, or `{safetensors, config,
   * tokenizer, sentenceConfig?}`), each file a URL, File/Blob, Response or bytes (text files may
   * also be `{text: '...'}`).
   */
  static async load(files, { fetch: get = fetch } = {}) {
    checkWebGpu();
    await initOnce();
    if (files.gguf !== undefined) {
      const weights = await readModelBytes(files.gguf, () => {}, get);
      return new QgpuEmbedder(await WasmQgpuEmbedder.load(weights, undefined, undefined, undefined));
    }
    const dir = await hfDirectory(files, get);
    if (dir.safetensors.length !== 1) throw new Error(`the embedder takes one .safetensors file, not ${dir.safetensors.length}`);
    const weights = await readModelBytes(dir.safetensors[0], () => {}, get);
    // `weights` is consumed (moved into Rust) by this call.
    return new QgpuEmbedder(await WasmQgpuEmbedder.load(weights, dir.config, dir.tokenizer, dir.sentenceConfig));
  }

  /** Resolves to one L2-normalised Float32Array per text (texts: string or string[]). */
  embed(texts) {
    return this.inner.embed(Array.isArray(texts) ? texts : [texts]);
  }

  /** Releases the model and its GPU device. */
  destroy() {
    this.inner.destroy();
  }
}
