// The module worker behind engine.js: one EngineCore, driven by messages
// `{id, method, args}`. Each call answers `{id, result}` or `{id, error: {name, message}}`;
// progress and text pieces come before that as `{id, event}`. Calls run as they arrive, so a
// `cancel` reaches a running generation at its next token.

import { EngineCore } from './engine_core.js';

const core = new EngineCore();

self.onmessage = async ({ data: { id, method, args } }) => {
  try {
    const result = await core.handle(method, args, (event) => self.postMessage({ id, event }));
    self.postMessage({ id, result });
  } catch (e) {
    self.postMessage({ id, error: { name: e?.name ?? 'Error', message: e?.message ?? String(e) } });
  }
};
