// A headless Chromium for the Python tests: JSON commands on stdin, one
// per line, answers on stdout. Debian's /usr/bin/chromium through
// playwright-core (no browser download). See tests/web/browser.py.
import { chromium } from 'playwright-core';
import readline from 'node:readline';

const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args: FLAGS,
});
let context = null;
let page = null;
const logs = [];

async function newPage(opts) {
  if (context) await context.close();
  context = await browser.newContext({
    viewport: { width: opts.width || 1280, height: opts.height || 800 },
    deviceScaleFactor: opts.scale || 1, isMobile: !!opts.mobile, hasTouch: !!opts.mobile,
    colorScheme: opts.dark ? 'dark' : 'light',
  });
  page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') logs.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  page.on('dialog', (d) => d.accept());   // window.confirm() says yes, as the owner would
  return true;
}

const ops = {
  page: (c) => newPage(c),
  goto: async (c) => { await page.goto(c.url, { waitUntil: 'load', timeout: c.timeout || 15000 }); return page.url(); },
  eval: (c) => page.evaluate(c.js),
  wait: async (c) => (await page.waitForFunction(c.js, null, { timeout: c.timeout || 10000, polling: 100 })).jsonValue(),
  click: async (c) => { await page.click(c.selector, { timeout: c.timeout || 10000 }); return true; },
  clickLoad: async (c) => {   // a click that reloads or leaves the page
    await Promise.all([page.waitForEvent('load', { timeout: c.timeout || 10000 }), page.click(c.selector)]);
    return page.url();
  },
  fill: async (c) => { await page.fill(c.selector, c.value, { timeout: c.timeout || 10000 }); return true; },
  press: async (c) => { await page.press(c.selector, c.key, { timeout: c.timeout || 10000 }); return true; },
  screenshot: async (c) => { await page.screenshot({ path: c.path, fullPage: !!c.fullPage }); return c.path; },
  reload: async () => { await page.reload({ waitUntil: 'load' }); return true; },
  logs: () => logs.splice(0),
};

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const cmd = JSON.parse(line);
  if (cmd.op === 'close') break;
  let out;
  try {
    const value = await ops[cmd.op](cmd);
    out = { id: cmd.id, ok: true, value: value === undefined ? null : value };
  } catch (e) {
    out = { id: cmd.id, ok: false, error: String(e && e.message || e).split('\n').slice(0, 6).join('\n') };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
await browser.close();
process.exit(0);
