// Makes the Web UI's codec-server call from a page in headless Chromium: a cross-origin POST
// with the headers the UI sends when it passes the user's tokens, so the browser's CORS
// preflight decides whether the call may be made at all.
'use strict';

const http = require('node:http');
const { parseArgs } = require('node:util');
const { chromium } = require('playwright-core');

const { CHROMIUM_PATH, CHROMIUM_ARGS } = require('./chromium');
const TIMEOUT_MS = 60000;

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node codec_fetch.js --page-port PORT --codec-url URL --namespace NS ` +
      '--access-token TOKEN --id-token TOKEN --body JSON\n',
  );
  process.exit(2);
}

function parseOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        'page-port': { type: 'string' },
        'codec-url': { type: 'string' },
        namespace: { type: 'string' },
        'access-token': { type: 'string' },
        'id-token': { type: 'string' },
        body: { type: 'string' },
      },
    }));
  } catch (err) {
    usage(err.message);
  }
  for (const name of ['page-port', 'codec-url', 'namespace', 'access-token', 'id-token', 'body']) {
    if (!values[name]) usage(`missing --${name}`);
  }
  return values;
}

// Serves an empty page, so the call is made from this origin as the UI's is from its own.
function servePage(port) {
  const server = http.createServer((_, response) => {
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end('<!doctype html><title>codec call</title>');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(port), '127.0.0.1', () => resolve(server));
  });
}

// Runs in the page: the UI's decode call, with both of the user's tokens.
async function decodeInPage({ codecUrl, namespace, accessToken, idToken, body }) {
  try {
    const response = await fetch(`${codecUrl}/decode?preserveStorageRefs=true`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-namespace': namespace,
        authorization: `Bearer ${accessToken}`,
        'authorization-extras': idToken,
      },
      body,
    });
    return { status: response.status, body: await response.text() };
  } catch (err) {
    // A failed preflight surfaces as a network error with no response at all.
    return { error: String(err) };
  }
}

async function main() {
  const options = parseOptions();
  const report = { ok: false };
  const hardStop = setTimeout(() => {
    report.error = `no result within ${TIMEOUT_MS} ms`;
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exit(1);
  }, TIMEOUT_MS);
  const server = await servePage(options['page-port']);
  let browser;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
    const page = await browser.newPage();
    report.origin = `http://127.0.0.1:${options['page-port']}`;
    await page.goto(`${report.origin}/`);
    Object.assign(
      report,
      await page.evaluate(decodeInPage, {
        codecUrl: options['codec-url'],
        namespace: options.namespace,
        accessToken: options['access-token'],
        idToken: options['id-token'],
        body: options.body,
      }),
    );
    report.ok = report.status === 200;
  } catch (err) {
    report.error = String(err).split('\n')[0];
  } finally {
    if (browser) await browser.close().catch(() => {});
    server.close();
  }
  clearTimeout(hardStop);
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(report.ok ? 0 : 1);
}

main();
