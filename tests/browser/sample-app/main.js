// A sample app that uses qgpu from its npm package (`qgpu-web`), bundled by esbuild in the
// browser test (scripts/test-browser.sh): the engine's worker and the wasm file are resolved
// from the bundle's own URL, the way a bundled app ships them.
import { createEngine } from 'qgpu-web/engine';

const status = document.getElementById('status');
window.sampleApp = (async () => {
  status.textContent = 'loading…';
  const engine = await createEngine();
  await engine.load('/models/SmolLM2-135M-Instruct.Q4_1.gguf', { cache: false });
  const reply = await engine.chat.completions.create({
    messages: [{ role: 'user', content: 'What are the three primary colors?' }], temperature: 0, max_tokens: 8,
  });
  status.textContent = reply.choices[0].message.content;
  engine.terminate();
  return reply;
})();
