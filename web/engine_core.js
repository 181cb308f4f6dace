// The part of the OpenAI-style engine that owns the GPU: a Qgpu (language model) and a
// QgpuEmbedder (encoder), and the model cache. engine.js runs it in a module worker (worker.js)
// or on the page's thread; either way it is called as `handle(method, args, onEvent)`.

import { Qgpu, QgpuEmbedder, resumableBody, wasmMemoryBytes } from './qgpu.js';

/** The Cache Storage bucket holding downloaded model files. */
export const CACHE_NAME = 'qgpu-models';

function mib(n) {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

/** The cache key of a URL: the URL, and the expected sha256 when one is given. */
function cacheKey(url, sha256) {
  const u = new URL(url, typeof location !== 'undefined' ? location.href : undefined);
  if (sha256) u.hash = `sha256=${sha256}`;
  return u.href;
}

/** A readable stream's bytes counted into `counter.bytes` as they pass. */
function counted(response, counter) {
  const count = new TransformStream({
    transform(chunk, controller) {
      counter.bytes += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  return new Response(response.body.pipeThrough(count), { status: response.status, headers: response.headers });
}

/**
 * Fetches model files through Cache Storage: a hit is read from the cache with no network
 * request; a miss is downloaded once (resuming with Range requests if it breaks), streamed
 * both to the caller and into the cache.
 * `network` and `cached` count the bytes of each kind.
 */
export class CachedFetcher {
  constructor(useCache) {
    this.useCache = useCache && typeof caches !== 'undefined';
    this.network = { bytes: 0 };
    this.cached = { bytes: 0 };
    this.stores = [];
    this.errors = [];
  }

  /**
   * The Response for `url`, as `fetch` gives it (the engine hands this to Qgpu.loadModel as its
   * fetch): from the cache when it holds the file, else downloaded and stored. Only successful
   * downloads are stored, so an absent optional file (HTTP 404) stays absent.
   */
  async fetch(url, sha256) {
    const key = cacheKey(url, sha256);
    const store = this.useCache ? await caches.open(CACHE_NAME) : null;
    const hit = store && (await store.match(key));
    if (hit) return counted(hit, this.cached);
    const response = await fetch(url);
    if (!response.ok || !store) return response.ok ? counted(response, this.network) : response;
    // Resumed where the server allows, so a broken download still caches the whole file.
    const [mine, theirs] = resumableBody(response, response.url || url).tee();
    const size = Number(response.headers.get('Content-Length')) || 0;
    const headers = new Headers(response.headers);
    headers.set('X-Qgpu-Cached-At', new Date().toISOString());
    this.stores.push(store.put(key, new Response(theirs, { status: 200, headers })).catch(async (e) => {
      const estimate = navigator.storage?.estimate ? await navigator.storage.estimate() : {};
      const free = estimate.quota !== undefined ? ` (the browser allows ${mib(estimate.quota - estimate.usage)} more)` : '';
      this.errors.push(e.name === 'QuotaExceededError'
        ? `not cached: ${url} needs ${size ? mib(size) : 'more space'} in Cache Storage${free}; it will download again next time`
        : `not cached: ${url}: ${e.message}`);
    }));
    return counted(new Response(mine, { status: 200, headers: response.headers }), this.network);
  }

  /** Waits for every download to be in the cache (or to have failed to get there). */
  async settle() {
    await Promise.all(this.stores);
    return { networkBytes: this.network.bytes, cachedBytes: this.cached.bytes, cacheErrors: this.errors };
  }
}

/** Every cached model file: `[{url, bytes, cachedAt}]`. */
export async function listCachedModels() {
  if (typeof caches === 'undefined') return [];
  const store = await caches.open(CACHE_NAME);
  const out = [];
  for (const request of await store.keys()) {
    const response = await store.match(request);
    out.push({ url: request.url, bytes: Number(response.headers.get('Content-Length')) || undefined, cachedAt: response.headers.get('X-Qgpu-Cached-At') });
  }
  return out;
}

/** Deletes the cached files under `url` (one file, or every file of a directory URL ending in '/'). */
export async function deleteCachedModel(url) {
  if (typeof caches === 'undefined') return 0;
  const store = await caches.open(CACHE_NAME);
  const target = cacheKey(url);
  let deleted = 0;
  for (const request of await store.keys()) {
    const key = request.url.split('#')[0];
    if (key === target || (target.endsWith('/') && key.startsWith(target))) {
      if (await store.delete(request)) deleted++;
    }
  }
  return deleted;
}

export class EngineCore {
  constructor() {
    this.q = null;
    this.embedder = null;
  }

  /** Runs one call; `onEvent` hears progress (load) or text pieces (generate). */
  async handle(method, args, onEvent = () => {}) {
    switch (method) {
      case 'create':
        this.q = await Qgpu.create();
        return this.q.info;
      case 'load':
        return this.load(args[0], args[1] ?? {}, onEvent);
      case 'loadEmbedder':
        return this.loadEmbedder(args[0], args[1] ?? {});
      case 'generate': {
        // options.messages for a chat, else options.prompt continued as it is.
        const text = await this.q.generate(args[0].prompt ?? '', args[0], (piece) => { onEvent(piece); });
        return { text, stats: this.q.stats() };
      }
      case 'unload':
        this.q.unload();
        return null;
      case 'memory':
        return wasmMemoryBytes();
      case 'cancel':
        this.q?.cancel();
        return null;
      case 'embed': {
        const vectors = await this.embedder.embed(args[0]);
        return vectors.map((v) => Array.from(v));
      }
      case 'stats':
        return this.q.stats();
      case 'destroy':
        this.embedder?.destroy();
        this.q?.destroy();
        return null;
      default:
        throw new Error(`unknown engine call ${method}`);
    }
  }

  async load(source, { kvType, cache, sha256 }, onProgress) {
    const fetcher = new CachedFetcher(cache);
    const t0 = performance.now();
    const info = await this.q.loadModel(source, onProgress, { kvType, fetch: (url) => fetcher.fetch(url, sha256) });
    const cacheInfo = await fetcher.settle();
    const name = String(source.config ?? source).replace(/\/(config\.json)?$/, '').split('/').pop();
    return { ...info, name, loadSeconds: (performance.now() - t0) / 1000, wasmMemoryBytes: await wasmMemoryBytes(), ...cacheInfo };
  }

  async loadEmbedder(source, { cache }) {
    const fetcher = new CachedFetcher(cache);
    this.embedder?.destroy();
    this.embedder = null;
    this.embedder = await QgpuEmbedder.load(source, { fetch: (url) => fetcher.fetch(url) });
    return { ...this.embedder.info, ...(await fetcher.settle()) };
  }
}
