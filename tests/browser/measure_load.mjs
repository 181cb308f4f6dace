// Measures what docs/browser.md's engine table states, in headless Chromium (SwiftShader WebGPU):
// for each model, the engine in a worker loading it downloaded and then from Cache Storage, the
// WebAssembly memory that load left (in the worker), and greedy decode speed in the worker
// against a Qgpu on the page's thread. A benchmark, not a test: it asserts nothing.
//
//   scripts/build-web.sh && node tests/browser/measure_load.mjs [MODEL_URL ...]
// (models under /models/ are the qgpu cache: `qgpu fetch`, `qgpu fetch gemma3`.)

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const models = process.argv.slice(2).length ? process.argv.slice(2)
  : ['/models/SmolLM2-135M-Instruct.Q4_1.gguf', '/models/gemma-3-270m-q4_k_m.gguf'];
const prompt = 'What are the three primary colors?';
const tokens = 16;

const server = spawn('python3', [path.join(repo, 'scripts/serve_web.py'), '--port', '0'], { env: { ...process.env, QGPU_SERVE_QUIET: '1' }, stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise((resolve) => {
  let out = '';
  server.stdout.on('data', (d) => { out += d; const m = out.match(/on (http:\/\/127\.0\.0\.1:\d+)\//); if (m) resolve(m[1]); });
});
const profile = mkdtempSync(path.join(tmpdir(), 'qgpu-measure-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
  args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu'],
});
const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;
console.log('| model (file) | load, downloaded | load, from the cache | wasm memory after load | decode, worker | decode, page thread |');
console.log('|---|---|---|---|---|---|');
try {
  for (const model of models) {
    const page = await browser.newPage();
    await page.goto(`${url}/qgpu.d.ts`);
    const r = await page.evaluate(async ({ model, prompt, tokens }) => {
      const { createEngine } = await import('/engine.js');
      const { Qgpu } = await import('/qgpu.js');
      const messages = [{ role: 'user', content: prompt }];
      const load = async () => {
        const engine = await createEngine();
        const info = await engine.load(model);
        return { engine, info };
      };
      const first = await load();
      first.engine.terminate();
      const { engine, info } = await load();
      await engine.chat.completions.create({ messages, max_tokens: tokens, temperature: 0 });
      const worker = await engine.stats();
      engine.terminate();
      const q = await Qgpu.create();
      await q.loadModel(model);
      await q.generate('', { messages, maxTokens: tokens, temperature: 0 });
      const pageStats = q.stats();
      q.destroy();
      return { first: first.info, second: info, worker: worker.decodeTokensPerSecond, page: pageStats.decodeTokensPerSecond };
    }, { model, prompt, tokens });
    await page.close();
    const name = `${model.split('/').pop()} (${mib(r.first.fileBytes)})`;
    console.log(`| ${name} | ${r.first.loadSeconds.toFixed(1)} s | ${r.second.loadSeconds.toFixed(1)} s, ${r.second.networkBytes} network bytes | ` +
      `${mib(r.first.wasmMemoryBytes)} | ${r.worker.toFixed(2)} tok/s | ${r.page.toFixed(2)} tok/s |`);
  }
} finally {
  await browser.close();
  server.kill();
  rmSync(profile, { recursive: true, force: true });
}
