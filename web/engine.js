// qgpu's OpenAI-style engine for web pages, in a Web Worker (default) or on the page's thread.
//
//   import { createEngine } from './engine.js';
//   const engine = await createEngine();                       // a module worker runs the model
//   await engine.load('/models/SmolLM2-135M-Instruct.Q4_1.gguf'); // cached in Cache Storage
//   const reply = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }] });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) {
//     out.textContent += chunk.choices[0]?.delta?.content ?? '';
//   }
//   const { choices } = await engine.completions.create({ prompt: 'Once upon a time', max_tokens: 16 });
//
// Both modes run the same `EngineCore` (engine_core.js); in a worker the page only exchanges
// messages with it, so loading, prefill and decode never block the page. Cancel with an
// AbortSignal: `create(params, { signal })`.

import { EngineCore, listCachedModels, deleteCachedModel } from './engine_core.js';

let nextEngine = 0;

/** Thrown (rejected) when an AbortSignal cancels a request, as fetch does. */
function abortError() {
  return new DOMException('the request was aborted', 'AbortError');
}

/** Talks to an EngineCore in a module worker: one message per call, streamed events by id. */
class WorkerTransport {
  constructor() {
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.pending = new Map();
    this.nextId = 1;
    this.worker.onmessage = ({ data }) => {
      const call = this.pending.get(data.id);
      if (!call) return;
      if (data.event !== undefined) {
        call.onEvent?.(data.event);
      } else {
        this.pending.delete(data.id);
        if ('error' in data) call.reject(Object.assign(new Error(data.error.message), { name: data.error.name }));
        else call.resolve(data.result);
      }
    };
    this.worker.onerror = (e) => {
      const error = new Error(`the qgpu worker failed: ${e.message}`);
      for (const call of this.pending.values()) call.reject(error);
      this.pending.clear();
    };
  }

  call(method, args, onEvent) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onEvent });
      this.worker.postMessage({ id, method, args });
    });
  }

  terminate() {
    this.worker.terminate();
    for (const call of this.pending.values()) call.reject(new Error('the engine was terminated'));
    this.pending.clear();
  }
}

/** Calls an EngineCore on this thread, with the same interface as WorkerTransport. */
class LocalTransport {
  constructor() {
    this.core = new EngineCore();
  }

  async call(method, args, onEvent) {
    return this.core.handle(method, args, onEvent);
  }

  terminate() {
    this.core.handle('destroy', []).catch(() => {});
  }
}

/**
 * An engine: `{ worker }` (default true) puts the model in a module Web Worker; false runs it
 * on the page's thread. Resolves once the GPU device is open.
 */
export async function createEngine({ worker = true } = {}) {
  const transport = worker ? new WorkerTransport() : new LocalTransport();
  const info = await transport.call('create', []);
  return new Engine(transport, info, worker);
}

/** OpenAI finish reasons for qgpu's stop reasons. */
const FINISH = { endOfText: 'stop', stopString: 'stop', maxTokens: 'length', contextFull: 'length', cancelled: 'stop' };

function usageOf(stats) {
  return {
    prompt_tokens: stats.promptTokens,
    completion_tokens: stats.generatedTokens,
    total_tokens: stats.promptTokens + stats.generatedTokens,
    prompt_tokens_details: { cached_tokens: stats.cachedTokens },
  };
}

/** OpenAI request parameters as qgpu's generate options; unsupported ones are errors. */
function generateOptions(params, context) {
  for (const key of ['frequency_penalty', 'presence_penalty']) {
    if (params[key]) throw new TypeError(`${key} is not supported (use repetition_penalty)`);
  }
  if ((params.n ?? 1) !== 1) throw new TypeError('n must be 1');
  const options = { maxTokens: params.max_completion_tokens ?? params.max_tokens ?? context };
  const copy = { temperature: 'temperature', top_p: 'topP', top_k: 'topK', min_p: 'minP', seed: 'seed', repetition_penalty: 'repetitionPenalty' };
  for (const [from, to] of Object.entries(copy)) if (params[from] !== undefined && params[from] !== null) options[to] = params[from];
  if (params.stop !== undefined && params.stop !== null) options.stop = Array.isArray(params.stop) ? params.stop : [params.stop];
  return options;
}

class Engine {
  constructor(transport, info, inWorker) {
    this.transport = transport;
    /** Adapter, limits, kernels (as Qgpu.info), and whether the model runs in a worker. */
    this.info = { ...info, worker: inWorker };
    this.model = null;
    this.id = `qgpu-${nextEngine++}`;
    this.chat = { completions: { create: (params, options) => this.#chatCompletion(params, options) } };
    this.completions = { create: (params, options) => this.#completion(params, options) };
    this.embeddings = { create: (params) => this.#embeddings(params) };
    /** The Cache Storage holding downloaded model files. */
    this.cache = { list: listCachedModels, delete: deleteCachedModel };
  }

  /**
   * Loads a language model: a GGUF URL (a split model by the URL of any of its files), picked
   * Files, or a Hugging Face directory (a base URL ending in '/', or an object naming its
   * files), with `{kvType, cache, sha256, onProgress}`. Downloads go to Cache Storage (`cache:
   * false` skips it) and later loads read them from there. Resolves to model information plus
   * `{networkBytes, cachedBytes, cacheErrors, loadSeconds, wasmMemoryBytes}`.
   */
  async load(source, { kvType, cache = true, sha256, onProgress } = {}) {
    this.model = null;
    this.model = await this.transport.call('load', [source, { kvType, cache, sha256 }], onProgress);
    return this.model;
  }

  /** Loads a BERT encoder for `embeddings.create`: `{gguf}`, a directory URL or named files. */
  async loadEmbedder(source, { cache = true } = {}) {
    this.embedder = await this.transport.call('loadEmbedder', [source, { cache }]);
    return this.embedder;
  }

  /** Drops the language model and its GPU memory; the engine stays usable. */
  async unload() {
    this.model = null;
    await this.transport.call('unload', []);
  }

  /** Bytes of WebAssembly memory where the model runs (the worker's, in worker mode). */
  memory() {
    return this.transport.call('memory', []);
  }

  #checkModel() {
    if (!this.model) throw new Error('no model is loaded: call engine.load() first');
  }

  async #chatCompletion(params, { signal } = {}) {
    this.#checkModel();
    if (!Array.isArray(params?.messages) || params.messages.length === 0) throw new TypeError('messages must be a non-empty array');
    const messages = params.messages.map((m) => ({ role: String(m.role), content: typeof m.content === 'string' ? m.content : String(m.content ?? '') }));
    return this.#respond(params, { ...generateOptions(params, this.model.context), messages }, signal, {
      id: 'chatcmpl', object: 'chat.completion', chunkObject: 'chat.completion.chunk',
      whole: (text, finish) => ({ index: 0, message: { role: 'assistant', content: text }, finish_reason: finish, logprobs: null }),
      start: { index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null, logprobs: null },
      piece: (text) => ({ index: 0, delta: { content: text }, finish_reason: null, logprobs: null }),
      end: (finish) => ({ index: 0, delta: {}, finish_reason: finish, logprobs: null }),
    });
  }

  /** OpenAI's (legacy) completions: a continuation of `prompt`, no chat template. */
  async #completion(params, { signal } = {}) {
    this.#checkModel();
    if (typeof params?.prompt !== 'string') throw new TypeError('prompt must be a string');
    return this.#respond(params, { ...generateOptions(params, this.model.context), prompt: params.prompt }, signal, {
      id: 'cmpl', object: 'text_completion', chunkObject: 'text_completion',
      whole: (text, finish) => ({ index: 0, text, finish_reason: finish, logprobs: null }),
      start: null,
      piece: (text) => ({ index: 0, text, finish_reason: null, logprobs: null }),
      end: (finish) => ({ index: 0, text: '', finish_reason: finish, logprobs: null }),
    });
  }

  /**
   * Runs one generation and answers in OpenAI's shape `shape` (chat or text completion): one
   * object, or with `stream` an async iterator of chunks.
   */
  async #respond(params, options, signal, shape) {
    const id = `${shape.id}-${this.id}-${Date.now()}`;
    const created = Math.floor(Date.now() / 1000);
    const model = params.model ?? this.model.name ?? this.model.architecture;
    if (signal?.aborted) throw abortError();

    if (!params.stream) {
      const { text, stats } = await this.#generate(options, () => {}, signal);
      return { id, object: shape.object, created, model, choices: [shape.whole(text, FINISH[stats.stop])], usage: usageOf(stats) };
    }

    // Streaming: pieces arrive as events; the iterator hands them out as chunks.
    const queue = [];
    let wake = null;
    const push = (item) => { queue.push(item); if (wake) { wake(); wake = null; } };
    const chunk = (choice) => ({ id, object: shape.chunkObject, created, model, choices: [choice] });
    const includeUsage = params.stream_options?.include_usage ?? true;
    if (shape.start) push({ chunk: chunk(shape.start) });
    this.#generate(options, (piece) => push({ chunk: chunk(shape.piece(piece)) }), signal).then(({ stats }) => {
      push({ chunk: chunk(shape.end(FINISH[stats.stop])) });
      if (includeUsage) push({ chunk: { id, object: shape.chunkObject, created, model, choices: [], usage: usageOf(stats) } });
      push({ done: true });
    }, (error) => push({ error }));
    return {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          while (queue.length === 0) await new Promise((resolve) => { wake = resolve; });
          const item = queue.shift();
          if (item.error) throw item.error;
          if (item.done) return;
          yield item.chunk;
        }
      },
    };
  }

  /** One generation; an abort cancels it at the next token and rejects with an AbortError. */
  async #generate(options, onPiece, signal) {
    const onAbort = () => this.transport.call('cancel', []);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const result = await this.transport.call('generate', [options], onPiece);
      if (signal?.aborted) throw abortError();
      return result;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async #embeddings(params) {
    if (!this.embedder) throw new Error('no encoder is loaded: call engine.loadEmbedder() first');
    const inputs = Array.isArray(params?.input) ? params.input : [params?.input];
    if (inputs.length === 0 || inputs.some((t) => typeof t !== 'string')) throw new TypeError('input must be a string or an array of strings');
    const vectors = await this.transport.call('embed', [inputs]);
    return {
      object: 'list',
      model: params.model ?? 'encoder',
      data: vectors.map((v, index) => ({ object: 'embedding', index, embedding: Array.from(v) })),
    };
  }

  /** Timings of the last generation (as Qgpu.stats()). */
  stats() {
    return this.transport.call('stats', []);
  }

  /** Drops the models and the GPU device; in worker mode, ends the worker. */
  terminate() {
    this.transport.terminate();
  }
}
