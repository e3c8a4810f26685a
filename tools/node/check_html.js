// Opens HTML files in headless Chromium (Debian's /usr/bin/chromium through playwright-core) and
// reports, per file, as one JSON line: console errors, page errors, failed requests, and every
// <img>: whether it decoded and its natural size. Exits 0 when every page is clean, 1 otherwise,
// 2 when the browser cannot start.
//   node tools/node/check_html.js page.html [more.html ...] [--screenshot out.png]
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

async function main() {
  const args = process.argv.slice(2);
  let shot = null;
  const files = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--screenshot') shot = args[++i];
    else files.push(args[i]);
  }
  if (files.length === 0) {
    console.error('usage: node check_html.js page.html [...] [--screenshot out.png]');
    process.exit(2);
  }
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
             '--disable-component-update', '--disable-sync'],
    });
  } catch (e) {
    console.log(JSON.stringify({ error: 'cannot start chromium: ' + e.message.split('\n')[0] }));
    process.exit(2);
  }
  let bad = 0;
  for (const f of files) {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    const r = { file: f, console_errors: [], page_errors: [], failed_requests: [], images: [] };
    page.on('console', (m) => { if (m.type() === 'error') r.console_errors.push(m.text()); });
    page.on('pageerror', (e) => r.page_errors.push(String(e && e.message || e)));
    page.on('requestfailed', (q) => r.failed_requests.push(q.url().slice(0, 120)));
    try {
      await page.goto('file://' + path.resolve(f), { waitUntil: 'load', timeout: 60000 });
      r.title = await page.title();
      r.images = await page.evaluate(async () => {
        const out = [];
        for (const img of Array.from(document.images)) {
          let ok = true;
          try { await img.decode(); } catch (e) { ok = false; }
          out.push({ alt: img.alt || '', ok: ok && img.naturalWidth > 0, w: img.naturalWidth, h: img.naturalHeight });
        }
        return out;
      });
      r.page_width = await page.evaluate(() => document.documentElement.scrollWidth);
      if (shot) await page.screenshot({ path: shot, fullPage: false });
    } catch (e) {
      r.page_errors.push('load: ' + e.message.split('\n')[0]);
    }
    const broken = r.images.filter((i) => !i.ok).length;
    if (r.console_errors.length || r.page_errors.length || r.failed_requests.length || broken) bad++;
    console.log(JSON.stringify(r));
    await page.close();
  }
  await browser.close();
  process.exit(bad ? 1 : 0);
}
main();
