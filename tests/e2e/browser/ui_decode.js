// Checks in headless Chromium that the Temporal Web UI shows a workflow's input decoded by the codec server.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { chromium } = require('playwright-core');

const { CHROMIUM_PATH, CHROMIUM_ARGS } = require('./chromium');
const CODEC_ERROR_TEXT = 'Codec Server could not connect';
const POLL_INTERVAL_MS = 250;
// Time kept back from --timeout-ms so the failure screenshot and browser shutdown still fit.
const SHUTDOWN_RESERVE_MS = 10000;

class CheckFailure extends Error {}

// Playwright errors carry a multi-line, colour-coded call log; the first line says what failed.
function describeError(err) {
  return err instanceof CheckFailure ? err.message : String(err).split('\n')[0];
}

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node ui_decode.js --ui-url URL --namespace NS --workflow-id ID --run-id RUN_ID ` +
      '--expect TEXT [--reject TEXT] --screenshot PATH [--timeout-ms 60000]\n',
  );
  process.exit(2);
}

function parseOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        'ui-url': { type: 'string' },
        namespace: { type: 'string' },
        'workflow-id': { type: 'string' },
        'run-id': { type: 'string' },
        expect: { type: 'string' },
        reject: { type: 'string' },
        screenshot: { type: 'string' },
        'timeout-ms': { type: 'string', default: '60000' },
      },
    }));
  } catch (err) {
    usage(err.message);
  }
  for (const name of ['ui-url', 'namespace', 'workflow-id', 'run-id', 'expect', 'screenshot']) {
    if (!values[name]) usage(`missing --${name}`);
  }
  const timeoutMs = Number(values['timeout-ms']);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= SHUTDOWN_RESERVE_MS) {
    usage(`--timeout-ms must be an integer above ${SHUTDOWN_RESERVE_MS}`);
  }
  return {
    uiUrl: values['ui-url'].replace(/\/+$/, ''),
    namespace: values.namespace,
    workflowId: values['workflow-id'],
    runId: values['run-id'],
    expect: values.expect,
    reject: values.reject,
    screenshot: path.resolve(values.screenshot),
    timeoutMs,
  };
}

function historyUrl(options) {
  const segments = [options.namespace, 'workflows', options.workflowId, options.runId, 'history'];
  return `${options.uiUrl}/namespaces/${segments.map(encodeURIComponent).join('/')}`;
}

// Records every request the page sends to a codec server; the UI posts payloads to <endpoint>/decode.
// CORS preflights are made by the browser itself and never reach page events, so only the POSTs count.
function watchCodecTraffic(page) {
  const traffic = { requests: 0, statuses: [], failures: [], origin: null };
  const isCodecRequest = (request) => new URL(request.url()).pathname.endsWith('/decode');
  page.on('request', (request) => {
    if (!isCodecRequest(request)) return;
    traffic.requests += 1;
    request.allHeaders().then(
      (headers) => {
        traffic.origin = traffic.origin || headers.origin || null;
      },
      () => {},
    );
  });
  page.on('response', (response) => {
    if (isCodecRequest(response.request())) traffic.statuses.push(response.status());
  });
  page.on('requestfailed', (request) => {
    if (isCodecRequest(request)) traffic.failures.push(request.failure()?.errorText || 'failed');
  });
  return traffic;
}

async function codecErrorShown(page) {
  // The status icon in the top bar carries this test id whenever a decode call failed; the
  // banner text is the same condition spelled out for readers of the screenshot.
  const icon = await page.getByTestId('data-encoder-status-error').count();
  return icon > 0 || (await page.getByText(CODEC_ERROR_TEXT).first().isVisible());
}

// Polls until `ready` holds, failing at once if the UI reports a codec error.
async function waitUntil(page, description, deadline, ready) {
  for (;;) {
    if (await codecErrorShown(page)) throw new CheckFailure(`the UI shows "${CODEC_ERROR_TEXT}"`);
    if (await ready()) return;
    if (Date.now() >= deadline) throw new CheckFailure(`timed out waiting for ${description}`);
    await page.waitForTimeout(POLL_INTERVAL_MS);
  }
}

async function rejectShown(page, options) {
  if (!options.reject) return false;
  return (await page.locator('body').innerText({ timeout: 1000 })).includes(options.reject);
}

async function textOf(locator) {
  if ((await locator.count()) === 0) return null;
  return (await locator.first().innerText({ timeout: 1000 })).slice(0, 300);
}

async function checkPage(page, options, report, deadline) {
  await page.goto(historyUrl(options), { waitUntil: 'domcontentloaded', timeout: deadline - Date.now() });

  // The summary above the event history shows the workflow input without any interaction.
  const inputCard = page.getByTestId('input-and-result').getByRole('textbox', { name: 'Input' });
  await waitUntil(page, `"${options.expect}" in the Input card`, deadline, async () => {
    report.input_card_text = await textOf(inputCard);
    return (report.input_card_text || '').includes(options.expect);
  });
  report.input_card = true;

  // The same input is rendered again, from the history's own decode, in the details of the
  // WorkflowExecutionStarted event (event id 1), which open when its row is clicked.
  const startedRow = page.locator('tr[data-testid="event-summary-row"][data-eventid="1"]');
  await waitUntil(page, 'the WorkflowExecutionStarted row', deadline, () => startedRow.isVisible());
  await startedRow.click({ timeout: deadline - Date.now() });
  const startedInput = page.getByTestId('event-summary-table').getByRole('textbox', { name: 'Input' });
  await waitUntil(page, `"${options.expect}" in the WorkflowExecutionStarted details`, deadline, async () => {
    report.started_event_text = await textOf(startedInput);
    return (report.started_event_text || '').includes(options.expect);
  });
  report.started_event = true;

  if (await codecErrorShown(page)) throw new CheckFailure(`the UI shows "${CODEC_ERROR_TEXT}"`);
  if (await rejectShown(page, options)) {
    throw new CheckFailure(`the page shows the rejected text "${options.reject}"`);
  }
  if (!report.codec_statuses.includes(200)) {
    // Plaintext without a successful decode call would mean the payload was never encrypted.
    throw new CheckFailure('the page showed the text without a successful codec request');
  }
}

async function takeScreenshot(page, file) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await page.screenshot({ path: file, fullPage: true, timeout: SHUTDOWN_RESERVE_MS / 2 });
}

async function main() {
  const options = parseOptions();
  const started = Date.now();
  const deadline = started + options.timeoutMs - SHUTDOWN_RESERVE_MS;
  const report = {
    ok: false,
    screenshot: options.screenshot,
    codec_requests: 0,
    codec_statuses: [],
    codec_failures: [],
    codec_origin: null,
    input_card: false,
    started_event: false,
    url: historyUrl(options),
  };

  // Last resort if the browser itself stops answering: report and leave without it.
  const hardStop = setTimeout(() => {
    report.error = `no result within --timeout-ms ${options.timeoutMs}`;
    report.elapsed_ms = Date.now() - started;
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exit(1);
  }, options.timeoutMs);

  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: SHUTDOWN_RESERVE_MS * 2,
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 1400 } });
    const traffic = watchCodecTraffic(page);
    report.codec_statuses = traffic.statuses;
    report.codec_failures = traffic.failures;
    try {
      await checkPage(page, options, report, deadline);
      report.ok = true;
    } catch (err) {
      report.error = describeError(err);
    }
    report.codec_requests = traffic.requests;
    report.codec_origin = traffic.origin;
    if (options.reject) report.reject_shown = await rejectShown(page, options).catch(() => null);
    try {
      await takeScreenshot(page, options.screenshot);
    } catch (err) {
      report.ok = false;
      report.screenshot_error = describeError(err);
    }
  } catch (err) {
    report.ok = false;
    report.error = report.error || describeError(err);
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  clearTimeout(hardStop);
  report.elapsed_ms = Date.now() - started;
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(report.ok ? 0 : 1);
}

main();
