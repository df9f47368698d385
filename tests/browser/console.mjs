// Headless Chromium check of the web console, run by tests/web_entry.rs:
//
//   node tests/browser/console.mjs <page URL> <expected base path>
//
// Loads the page (a history-mode route below the base path), waits for the test console's
// script to call the API, and prints one JSON line with what the browser saw. Exits 0 when
// the page used the rewritten base, its CSS and script loaded, and the API call answered
// 2xx; 1 otherwise, with the reason on stderr. Every wait has a deadline.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [pageURL, expectedBase] = process.argv.slice(2);
if (!pageURL || !expectedBase) {
  console.error('usage: node console.mjs <page URL> <expected base path>');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const deadlineMs = 30_000;

const userDataDir = await mkdtemp(path.join(tmpdir(), 'hami-webui-chromium-'));
let context;
const failures = [];
const summary = { page: pageURL, requests: [], console: [] };
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    timeout: deadlineMs,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(deadlineMs);
  page.on('console', (message) => summary.console.push(`${message.type()}: ${message.text()}`));
  page.on('response', (response) =>
    summary.requests.push({
      url: response.url(),
      method: response.request().method(),
      status: response.status(),
    }),
  );
  page.on('requestfailed', (request) =>
    failures.push(`request failed: ${request.method()} ${request.url()}`),
  );

  const navigation = await page.goto(pageURL, { waitUntil: 'load' });
  summary.pageStatus = navigation ? navigation.status() : null;
  await page.waitForSelector('#result:not([data-state="pending"])');

  Object.assign(
    summary,
    await page.evaluate(() => {
      const app = document.getElementById('app');
      const result = document.getElementById('result');
      return {
        base: app.dataset.base,
        route: app.dataset.route,
        appState: app.dataset.state,
        bodyColor: getComputedStyle(document.body).color,
        resultState: result.dataset.state,
        resultStatus: Number(result.dataset.status),
        resultURL: result.dataset.url,
        resultText: result.textContent,
      };
    }),
  );

  if (summary.pageStatus !== 200) failures.push(`page answered ${summary.pageStatus}`);
  if (summary.base !== expectedBase)
    failures.push(`base marker is ${summary.base}, want ${expectedBase}`);
  if (summary.appState !== 'ready') failures.push('the console script did not run');
  if (summary.bodyColor !== 'rgb(1, 2, 3)')
    failures.push(`the stylesheet was not applied (body colour ${summary.bodyColor})`);
  if (summary.resultState !== 'ok')
    failures.push(`API call failed: ${summary.resultStatus} ${summary.resultText}`);
  const api = new URL('api/vgpu/v1/gpus', new URL(expectedBase, pageURL)).href;
  if (!summary.requests.some((r) => r.url === api && r.method === 'POST' && r.status === 200))
    failures.push(`no successful POST ${api} among ${JSON.stringify(summary.requests)}`);
} catch (error) {
  failures.push(`browser: ${error && error.message ? error.message : error}`);
} finally {
  if (context) await context.close().catch(() => {});
  await rm(userDataDir, { recursive: true, force: true }).catch(() => {});
}

console.log(JSON.stringify(summary));
if (failures.length > 0) {
  console.error(failures.join('\n'));
  process.exit(1);
}
