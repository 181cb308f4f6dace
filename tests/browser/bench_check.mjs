// Browser check of web/bench.html: a tiny suite through the wasm build; the JSON report must
// validate against docs/bench.schema.json (the same subset validator as tests/common), its
// fractions must be in (0, 1.5], and the page must show the table and the chart (screenshot).

import { readFileSync } from 'node:fs';
import path from 'node:path';

/** Violations of `schema` (the JSON Schema subset docs/bench.schema.json uses) by `doc`. */
export function validate(schema, doc, at = '$', errors = []) {
  const type = (t, v) => ({
    object: v !== null && typeof v === 'object' && !Array.isArray(v), array: Array.isArray(v), string: typeof v === 'string',
    boolean: typeof v === 'boolean', null: v === null, number: typeof v === 'number', integer: Number.isInteger(v),
  })[t];
  if (schema.type !== undefined && ![].concat(schema.type).some((t) => type(t, doc))) {
    errors.push(`${at}: expected ${schema.type}, got ${JSON.stringify(doc)}`);
    return errors;
  }
  if ('const' in schema && doc !== schema.const) errors.push(`${at}: expected ${schema.const}`);
  if (schema.enum && !schema.enum.includes(doc)) errors.push(`${at}: ${JSON.stringify(doc)} not in ${schema.enum}`);
  if (typeof doc === 'number') {
    if (schema.minimum !== undefined && doc < schema.minimum) errors.push(`${at}: ${doc} < ${schema.minimum}`);
    if (schema.maximum !== undefined && doc > schema.maximum) errors.push(`${at}: ${doc} > ${schema.maximum}`);
    if (schema.exclusiveMinimum !== undefined && doc <= schema.exclusiveMinimum) errors.push(`${at}: ${doc} <= ${schema.exclusiveMinimum}`);
  }
  if (typeof doc === 'string' && schema.minLength !== undefined && doc.length < schema.minLength) errors.push(`${at}: too short`);
  if (Array.isArray(doc)) {
    if (schema.minItems !== undefined && doc.length < schema.minItems) errors.push(`${at}: too few items`);
    if (schema.maxItems !== undefined && doc.length > schema.maxItems) errors.push(`${at}: too many items`);
    if (schema.items) doc.forEach((item, i) => validate(schema.items, item, `${at}[${i}]`, errors));
  } else if (doc !== null && typeof doc === 'object') {
    for (const r of schema.required ?? []) if (!(r in doc)) errors.push(`${at}: missing ${r}`);
    for (const [k, v] of Object.entries(doc)) {
      if (schema.properties?.[k]) validate(schema.properties[k], v, `${at}.${k}`, errors);
      else if (schema.additionalProperties === false) errors.push(`${at}: unexpected ${k}`);
    }
  }
  return errors;
}

/** Opens bench.html, runs a tiny suite, checks the report; returns the result. */
export async function benchCheck(browser, url, repo, artifacts, check) {
  const schema = JSON.parse(readFileSync(path.join(repo, 'docs/bench.schema.json'), 'utf8'));
  const page = await browser.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  await page.goto(`${url}/bench.html`);
  await page.waitForFunction(() => window.qgpuBench && (window.qgpuBench.ready || window.qgpuBench.failed), null, { timeout: 60000 });
  const t0 = Date.now();
  const options = { quick: true, formats: ['F32', 'Q8_0', 'Q4_0', 'Q4_1'], shapes: ['96x256', '576x576'], rows: [1, 9], repeats: 3, warmup: 1, rotationBytes: 4 << 20, probeBytes: 16 << 20 };
  const result = await page.evaluate((o) => window.qgpuBench.run(o).catch((e) => ({ error: String(e) })), options);
  if (result.error) {
    check(false, 'bench.html runs the suite', result.error);
    for (const l of logs) console.log(l);
    await page.close();
    return null;
  }
  const report = result.report;
  const errors = validate(schema, report);
  check(errors.length === 0, 'bench.html report validates against docs/bench.schema.json', errors.slice(0, 5).join('; '));
  const fractions = report.cases.flatMap((c) => [c.bandwidth_fraction, c.fma_fraction]);
  check(report.cases.length === 2 * 2 * 4 && fractions.every((f) => f > 0 && f <= 1.5), 'bench.html cases and fractions in (0, 1.5]',
    `${report.cases.length} cases, clock ${report.clock}, copy ${report.probes.copy.gb_per_s.toFixed(2)} GB/s, fma ${report.probes.fma.gflop_per_s.toFixed(1)} GFLOP/s, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const shown = await page.evaluate(() => ({ table: document.getElementById('table').textContent, rects: document.querySelectorAll('#chart svg rect').length, download: !document.getElementById('download').disabled }));
  check(shown.table.includes('of copy') && shown.rects >= report.cases.length && shown.download, 'bench.html shows table, chart and download', `${shown.rects} rects`);
  const shot = path.join(artifacts, 'bench.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`     screenshot: ${shot}`);
  await page.close();
  return result;
}
