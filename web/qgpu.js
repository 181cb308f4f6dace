// qgpu in the browser: quantized LLaMA-family models on WebGPU.
//
//   import { Qgpu } from './qgpu.js';
//   const q = await Qgpu.create();            // q.info: adapter, limits, kernel variants
//   await q.loadModel('/models/model.gguf', (p) => console.log(p));
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
   * Loads a GGUF model from a URL (string or URL), a File/Blob, a Response, or bytes
   * (Uint8Array/ArrayBuffer). `onProgress({phase, loaded, total})` reports the download
   * ('download', bytes) and the upload to the GPU ('upload', tensors). `kvType` ('f32', 'f16',
   * 'q8_0', 'q4_0'; default 'f16') is how the KV cache stores values.
   * The download streams straight into WebAssembly memory: no second copy is kept in JS.
   */
  async loadModel(source, onProgress = () => {}, { kvType } = {}) {
    let bytes;
    if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
      const array = source instanceof Uint8Array ? source : new Uint8Array(source);
      bytes = new ModelBytes(array.length);
      bytes.push(array);
      onProgress({ phase: 'download', loaded: array.length, total: array.length });
    } else {
      let stream, total;
      if (typeof Blob !== 'undefined' && source instanceof Blob) {
        stream = source.stream();
        total = source.size;
      } else {
        const response = source instanceof Response ? source : await fetch(source);
        if (!response.ok) throw new Error(`fetching the model failed: HTTP ${response.status} ${response.statusText} (${response.url})`);
        const length = Number(response.headers.get('Content-Length'));
        total = Number.isFinite(length) && length > 0 ? length : undefined;
        stream = response.body;
      }
      bytes = new ModelBytes(total ?? 0);
      try {
        const reader = stream.getReader();
        let loaded = 0;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          bytes.push(value);
          loaded += value.length;
          onProgress({ phase: 'download', loaded, total });
        }
      } catch (e) {
        bytes.free();
        throw e;
      }
    }
    // `bytes` is consumed (moved into Rust) by this call.
    const info = await this.inner.loadModel(bytes, (done, total) => onProgress({ phase: 'upload', loaded: done, total }), kvType);
    this.model = info;
    return info;
  }

  /**
   * Generates a continuation of `prompt`. options: {maxTokens, temperature, topK, topP, minP,
   * repetitionPenalty, repeatLastN, seed, chat, stop, parseSpecial}; sampling defaults as llama.cpp's
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
// Or `QgpuEmbedder.load({ gguf: url })` for a GGUF that carries its tokenizer
// (`tokenizer.huggingface.json`, as `qgpu quantize` writes it). The embedder has its own device.

/** Streams a URL, File/Blob, Response or bytes into a wasm-side ModelBytes. */
async function readModelBytes(source) {
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    const array = source instanceof Uint8Array ? source : new Uint8Array(source);
    const bytes = new ModelBytes(array.length);
    bytes.push(array);
    return bytes;
  }
  let stream, total;
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    stream = source.stream();
    total = source.size;
  } else {
    const response = source instanceof Response ? source : await fetch(source);
    if (!response.ok) throw new Error(`fetching ${response.url} failed: HTTP ${response.status} ${response.statusText}`);
    total = Number(response.headers.get('Content-Length')) || 0;
    stream = response.body;
  }
  const bytes = new ModelBytes(total);
  try {
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes.push(value);
    }
  } catch (e) {
    bytes.free();
    throw e;
  }
  return bytes;
}

/** A text file from a URL, Blob, Response or string contents ({text}). */
async function readText(source) {
  if (source === undefined || source === null) return undefined;
  if (typeof source === 'object' && 'text' in source && typeof source.text === 'string') return source.text;
  if (typeof Blob !== 'undefined' && source instanceof Blob) return source.text();
  const response = source instanceof Response ? source : await fetch(source);
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
   * Loads a BERT model: `{gguf}` or `{safetensors, config, tokenizer, sentenceConfig?}`, each a
   * URL, File/Blob, Response or bytes (text files may also be `{text: '...'}`).
   */
  static async load(files) {
    checkWebGpu();
    await initOnce();
    const weights = await readModelBytes(files.gguf ?? files.safetensors);
    const [config, tokenizer, sentenceConfig] = files.gguf
      ? [undefined, undefined, undefined]
      : await Promise.all([readText(files.config), readText(files.tokenizer), readText(files.sentenceConfig)]);
    // `weights` is consumed (moved into Rust) by this call.
    return new QgpuEmbedder(await WasmQgpuEmbedder.load(weights, config, tokenizer, sentenceConfig));
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
