// Loads analytics.js (@segment/analytics-next from npm, bundled here with esbuild) in
// Debian's headless Chromium through playwright-core, on a page of another origin (a
// server of this script's on localhost; on loopback, as ingest is, because Chromium
// refuses a public page's requests to a more private address), with its settings
// fetched from Switchyard (cdnURL = ingest).
// Sends --count track events one request each (--mode single) or in /v1/b batches
// (--mode batching), then waits until Chromium's network log shows every event in a
// request ingest answered 2xx. Prints one JSON line: the messageIds the page made, the
// ones answered 2xx, and every status seen. Used by cli/tests/browser.rs.
import { chromium } from 'playwright-core';
import * as esbuild from 'esbuild';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createServer } from 'node:http';

const { values: args } = parseArgs({
  options: {
    ingest: { type: 'string' },
    'write-key': { type: 'string' },
    mode: { type: 'string', default: 'single' },
    count: { type: 'string', default: '20' },
    // Events per wave, waves 0.5 s apart: analytics.js' batching fills a batch up to
    // ~500 KB whatever its configured size, so waves keep each batch within ingest's
    // max_batch_events (a 413 is not retried by analytics.js).
    wave: { type: 'string', default: '30' },
    'timeout-secs': { type: 'string', default: '90' },
  },
});
const here = dirname(fileURLToPath(import.meta.url));
const bundle = esbuild.buildSync({
  entryPoints: [join(here, 'entry.js')],
  bundle: true,
  format: 'iife',
  write: false,
  minify: true,
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'error',
}).outputFiles[0].text;

const shop = createServer((_, response) => {
  response.writeHead(200, { 'content-type': 'text/html' });
  response.end('<!doctype html><title>shop</title><p>shop</p>');
});
await new Promise((resolve) => shop.listen(0, '127.0.0.1', resolve));
const shopURL = `http://localhost:${shop.address().port}/`;

const profile = mkdtempSync(join(tmpdir(), 'switchyard-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const statuses = {};
const answered = new Set();
try {
  const page = await context.newPage();
  page.on('response', async (response) => {
    const request = response.request();
    if (!response.url().startsWith(args.ingest) || request.method() !== 'POST') return;
    const status = response.status();
    statuses[status] = (statuses[status] || 0) + 1;
    if (status < 200 || status > 299) {
      if (statuses[status] === 1) {
        const why = await response.text().catch(() => '');
        console.error(`first ${status} from ingest, to ${response.url()}: ${why}`);
      }
      return;
    }
    let body;
    try { body = JSON.parse(request.postData() || '{}'); } catch { return; }
    for (const event of body.batch || [body]) {
      if (event.messageId) answered.add(event.messageId);
    }
  });
  await page.goto(shopURL);
  await page.addScriptTag({ content: bundle });
  const sent = await page.evaluate(async ({ writeKey, cdnURL, mode, count, wave }) => {
    const segment = mode === 'batching'
      ? { deliveryStrategy: { strategy: 'batching', config: { size: 10, timeout: 300 } } }
      : {};
    const [analytics] = await window.AnalyticsBrowser.load(
      { writeKey, cdnURL },
      { integrations: { 'Segment.io': segment } },
    );
    const ids = [];
    const pending = [];
    for (let i = 0; i < count; i += 1) {
      if (i > 0 && i % wave === 0) await new Promise((resolve) => setTimeout(resolve, 500));
      pending.push(analytics.track('Clicked Buy', { i, mode }).then((ctx) => ids.push(ctx.event.messageId)));
    }
    await Promise.all(pending);
    return ids;
  }, { writeKey: args['write-key'], cdnURL: args.ingest, mode: args.mode, count: Number(args.count), wave: Number(args.wave) });
  const deadline = Date.now() + Number(args['timeout-secs']) * 1000;
  while (Date.now() < deadline && !sent.every((id) => answered.has(id))) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  console.log(JSON.stringify({ sent, answered: [...answered], statuses }));
} finally {
  await context.close();
  shop.close();
  rmSync(profile, { recursive: true, force: true });
}
