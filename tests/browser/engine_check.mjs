// The OpenAI-style engine (web/engine.js) in headless Chromium: a module worker runs SmolLM2;
// chat.completions.create, plain and streamed, gives native `qgpu run --chat`'s greedy text;
// no main-thread long task over 50 ms while it streams; a second turn keeps the first turn's
// KV cache; an AbortSignal cancels; the second load reads Cache Storage with zero network
// bytes; the in-page mode answers the same; embeddings.create embeds MiniLM as
// sentence-transformers does. Called from run.mjs with the browser context and server URL.

import { readFileSync } from 'node:fs';
import path from 'node:path';

const MODEL = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';

export async function engineCheck(context, url, repo, check) {
  const nativeChat = process.env.QGPU_NATIVE_CHAT;
  const chatPrompt = process.env.QGPU_CHAT_PROMPT;
  const page = await context.newPage();
  const modelRequests = [];
  const onRequest = (r) => { if (r.url().endsWith(MODEL)) modelRequests.push(r.url()); };
  context.on('request', onRequest);
  try {
    await page.goto(`${url}/index.html`);
    await page.waitForFunction(() => window.qgpuDemo && window.qgpuDemo.ready, null, { timeout: 60000 });

    // First load in a worker: downloaded, and stored in Cache Storage.
    const first = await page.evaluate(async (model) => {
      await caches.delete('qgpu-models');
      const { createEngine } = await import('/engine.js');
      window.engine = await createEngine();
      const info = await window.engine.load(model);
      return { worker: window.engine.info.worker, networkBytes: info.networkBytes, cachedBytes: info.cachedBytes, loadSeconds: info.loadSeconds, cacheErrors: info.cacheErrors };
    }, MODEL);
    check(first.worker && first.networkBytes > 1e7 && first.cachedBytes === 0 && first.cacheErrors.length === 0 && modelRequests.length >= 1,
      'engine: SmolLM2 loads in a worker, downloaded once into Cache Storage',
      `${(first.networkBytes / 1048576).toFixed(1)} MiB from the network in ${first.loadSeconds.toFixed(1)} s, ${modelRequests.length} request(s)`);

    // Greedy chat, plain and streamed, against native; long tasks watched while streaming.
    const chat = await page.evaluate(async (prompt) => {
      const engine = window.engine;
      const params = { messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 8 };
      const plain = await engine.chat.completions.create(params);
      const longTasks = [];
      const observer = new PerformanceObserver((list) => longTasks.push(...list.getEntries().map((e) => e.duration)));
      observer.observe({ type: 'longtask' });
      const chunks = [];
      for await (const chunk of await engine.chat.completions.create({ ...params, stream: true })) chunks.push(chunk);
      await new Promise((r) => setTimeout(r, 100));
      observer.disconnect();
      const streamed = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
      const stats = await engine.stats();
      return { plain, streamed, chunks: chunks.length, last: chunks[chunks.length - 1], finish: chunks[chunks.length - 2]?.choices[0]?.finish_reason, longTasks, decodeTps: stats.decodeTokensPerSecond };
    }, chatPrompt);
    const text = chat.plain.choices[0].message.content;
    check(text.trimEnd() === nativeChat.trimEnd() && chat.plain.object === 'chat.completion' && chat.plain.usage.completion_tokens === 8,
      'engine: chat.completions.create gives native qgpu run --chat\'s greedy text', `${JSON.stringify(text)} (native ${JSON.stringify(nativeChat)}), usage ${JSON.stringify(chat.plain.usage)}`);
    check(chat.streamed === text && chat.finish === 'length' && chat.last.usage?.completion_tokens === 8,
      'engine: streamed chunks add up to the same text, then finish_reason and usage', `${chat.chunks} chunks`);
    const worstTask = Math.max(0, ...chat.longTasks);
    check(worstTask <= 50, 'engine: no main-thread long task over 50 ms while the worker streams',
      `${chat.longTasks.length} long task(s), worst ${worstTask.toFixed(0)} ms; worker decode ${chat.decodeTps.toFixed(2)} tok/s`);

    // A second turn keeps the first turn's KV cache.
    const turn2 = await page.evaluate(async ({ prompt, answer }) => {
      const messages = [{ role: 'user', content: prompt }, { role: 'assistant', content: answer }, { role: 'user', content: 'And why?' }];
      const r = await window.engine.chat.completions.create({ messages, temperature: 0, max_tokens: 4 });
      return r.usage;
    }, { prompt: chatPrompt, answer: text });
    check(turn2.prompt_tokens_details.cached_tokens > 0 && turn2.prompt_tokens_details.cached_tokens < turn2.prompt_tokens,
      'engine: a second chat turn reuses the first turn\'s KV cache', JSON.stringify(turn2));

    // An AbortSignal cancels at the next token.
    const aborted = await page.evaluate(async () => {
      const controller = new AbortController();
      const params = { messages: [{ role: 'user', content: 'Count from one to fifty.' }], temperature: 0, max_tokens: 48, stream: true };
      let pieces = 0;
      let abortedAt = 0;
      try {
        for await (const chunk of await window.engine.chat.completions.create(params, { signal: controller.signal })) {
          if (chunk.choices[0]?.delta?.content) pieces++;
          if (pieces === 2 && !abortedAt) { abortedAt = performance.now(); controller.abort(); }
        }
        return { error: null, pieces };
      } catch (e) {
        const stats = await window.engine.stats();
        return { error: e.name, pieces, afterAbortMs: performance.now() - abortedAt, stepMs: 1000 * stats.decodeSeconds / Math.max(1, stats.decodeSteps), stop: stats.stop };
      }
    });
    check(aborted.error === 'AbortError' && aborted.stop === 'cancelled' && aborted.pieces < 48, 'engine: an AbortSignal cancels the stream',
      `${aborted.pieces} pieces, rejected ${aborted.afterAbortMs?.toFixed(0)} ms after abort (a decode step takes ${aborted.stepMs?.toFixed(0)} ms)`);

    // Second load: Cache Storage only, no request for the model.
    const before = modelRequests.length;
    const second = await page.evaluate(async (model) => {
      window.engine.terminate();
      const { createEngine } = await import('/engine.js');
      window.engine = await createEngine();
      const info = await window.engine.load(model);
      const listed = await window.engine.cache.list();
      return { networkBytes: info.networkBytes, cachedBytes: info.cachedBytes, loadSeconds: info.loadSeconds, listed };
    }, MODEL);
    check(second.networkBytes === 0 && second.cachedBytes === first.networkBytes && modelRequests.length === before && second.listed.some((f) => f.url.endsWith(MODEL)),
      'engine: the second load reads Cache Storage with zero network bytes',
      `${(second.cachedBytes / 1048576).toFixed(1)} MiB from the cache in ${second.loadSeconds.toFixed(1)} s (first load ${first.loadSeconds.toFixed(1)} s), ${modelRequests.length - before} new request(s)`);

    // The in-page mode answers the same; decode speed against the worker's.
    const local = await page.evaluate(async ({ model, prompt }) => {
      const { createEngine } = await import('/engine.js');
      const engine = await createEngine({ worker: false });
      await engine.load(model);
      const r = await engine.chat.completions.create({ messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 8 });
      const stats = await engine.stats();
      engine.terminate();
      return { text: r.choices[0].message.content, decodeTps: stats.decodeTokensPerSecond, worker: engine.info.worker };
    }, { model: MODEL, prompt: chatPrompt });
    check(!local.worker && local.text === text, 'engine: the in-page mode gives the same text',
      `main-thread decode ${local.decodeTps.toFixed(2)} tok/s against the worker's ${chat.decodeTps.toFixed(2)}`);

    // Embeddings from an encoder directory, through the same worker.
    const minilm = JSON.parse(readFileSync(path.join(repo, 'tests/fixtures/minilm_reference.json'), 'utf8'));
    const emb = await page.evaluate(async (texts) => {
      await window.engine.loadEmbedder('/models/all-MiniLM-L6-v2/');
      return window.engine.embeddings.create({ input: texts });
    }, minilm.cases.map((c) => c.text));
    const cosines = minilm.cases.map((c, i) => {
      const a = emb.data[i].embedding, b = c.embedding;
      let dot = 0, na = 0, nb = 0;
      for (let j = 0; j < b.length; j++) { dot += a[j] * b[j]; na += a[j] * a[j]; nb += b[j] * b[j]; }
      return dot / Math.sqrt(na * nb);
    });
    check(emb.object === 'list' && cosines.every((c) => c >= 0.9999), 'engine: embeddings.create embeds as sentence-transformers',
      `cosines ${cosines.map((c) => c.toFixed(6)).join(', ')}`);

    // Cached files can be deleted.
    const deleted = await page.evaluate(async (model) => {
      const n = await window.engine.cache.delete(model);
      const listed = await window.engine.cache.list();
      window.engine.terminate();
      return { n, still: listed.some((f) => f.url.endsWith(model)) };
    }, MODEL);
    check(deleted.n === 1 && !deleted.still, 'engine: a cached model is deleted', JSON.stringify(deleted));
  } catch (e) {
    check(false, 'engine', String(e.stack || e));
  } finally {
    context.off('request', onRequest);
    await page.close();
  }
}
