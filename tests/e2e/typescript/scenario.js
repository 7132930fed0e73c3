// Runs a TypeScript SDK worker and client against one address and asserts every user payload round-trips intact.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const path = require('node:path');
const { parseArgs } = require('node:util');

const { Client, Connection } = require('@temporalio/client');
const { DefaultLogger, NativeConnection, Runtime, Worker } = require('@temporalio/worker');

const activities = require('./activities');
const { scenarioWorkflow, scenarioSignal, scenarioQuery, scenarioUpdate } = require('./workflows');

// Generous next to the usual few seconds, but stops a hung proxy from stalling the caller forever.
const OVERALL_TIMEOUT_MS = 90_000;
const MARKER_PREFIX = 'ts-secret-';

// Every value carries a distinct marker so a caller can search stored history for it and
// confirm the server never saw it in plaintext.
const marker = (name) => `${MARKER_PREFIX}${name}`;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      address: { type: 'string' },
      namespace: { type: 'string', default: 'default' },
      'task-queue': { type: 'string' },
      'id-prefix': { type: 'string' },
    },
    strict: true,
  });
  if (!values.address || !values['task-queue']) {
    throw new Error('usage: node scenario.js --address HOST:PORT --namespace NS --task-queue TQ [--id-prefix P]');
  }
  return {
    address: values.address,
    namespace: values.namespace,
    taskQueue: values['task-queue'],
    idPrefix: values['id-prefix'] ?? `ts-e2e-${crypto.randomBytes(4).toString('hex')}`,
  };
}

function buildInputs(idPrefix) {
  return {
    parentWorkflowId: `${idPrefix}-parent`,
    workflowInput: {
      marker: marker('workflow-input'),
      childWorkflowId: `${idPrefix}-child`,
      activityInput: { marker: marker('activity-input'), numbers: [1, 2, 3] },
      heartbeatDetails: { marker: marker('heartbeat-details'), progress: 42 },
      failureDetails: { marker: marker('failure-details'), code: 7 },
      childInput: { marker: marker('child-input'), nested: { ok: true } },
    },
    signalArgs: [marker('signal-arg-1'), { marker: marker('signal-arg-2') }],
    queryArg: { marker: marker('query-arg') },
    updateArgs: [marker('update-arg-1'), { marker: marker('update-arg-2') }],
    memo: { secret: marker('memo'), count: 3 },
  };
}

// What the workflows and activities must hand back when every payload survives the round trip.
function buildExpectations(inputs) {
  const { workflowInput } = inputs;
  return {
    queryResult: { queryEchoed: inputs.queryArg, inputMarker: workflowInput.marker, marker: marker('query-result') },
    updateResult: { updateEchoed: inputs.updateArgs, marker: marker('update-result') },
    workflowResult: {
      marker: marker('workflow-result'),
      input: workflowInput,
      activityResult: { echoed: workflowInput.activityInput, marker: marker('activity-result') },
      heartbeatResult: { attempt: 2, heartbeatDetails: workflowInput.heartbeatDetails },
      failureDetails: [workflowInput.failureDetails],
      childResult: { childEchoed: workflowInput.childInput, marker: marker('child-result') },
      signalArgs: inputs.signalArgs,
      updateArgs: inputs.updateArgs,
    },
    memo: inputs.memo,
  };
}

function check(label, actual, expected) {
  try {
    assert.deepStrictEqual(actual, expected);
  } catch {
    throw new Error(`${label} mismatch:\n  expected ${JSON.stringify(expected)}\n  actual   ${JSON.stringify(actual)}`);
  }
}

async function driveWorkflow(client, taskQueue, inputs, expected) {
  const handle = await client.workflow.start(scenarioWorkflow, {
    workflowId: inputs.parentWorkflowId,
    taskQueue,
    args: [inputs.workflowInput],
    memo: inputs.memo,
  });

  await handle.signal(scenarioSignal, ...inputs.signalArgs);
  check('query result', await handle.query(scenarioQuery, inputs.queryArg), expected.queryResult);
  check('update result', await handle.executeUpdate(scenarioUpdate, { args: inputs.updateArgs }), expected.updateResult);

  // Field by field, so a mismatch names the payload path that broke rather than dumping the whole result.
  const result = await handle.result();
  check('workflow result fields', Object.keys(result).sort(), Object.keys(expected.workflowResult).sort());
  for (const [field, value] of Object.entries(expected.workflowResult)) {
    check(`workflow result ${field}`, result[field], value);
  }

  check('memo', (await handle.describe()).memo, expected.memo);
}

function collectMarkers(value, found = new Set()) {
  if (typeof value === 'string' && value.startsWith(MARKER_PREFIX)) {
    found.add(value);
  } else if (value && typeof value === 'object') {
    for (const item of Object.values(value)) collectMarkers(item, found);
  }
  return found;
}

async function runScenario(options) {
  const inputs = buildInputs(options.idPrefix);
  const expected = buildExpectations(inputs);

  // SDK logs go to stderr so stdout carries only the final JSON line.
  Runtime.install({
    logger: new DefaultLogger('WARN', ({ level, message, meta }) => {
      process.stderr.write(`[${level}] ${message}${meta ? ` ${JSON.stringify(meta)}` : ''}\n`);
    }),
  });

  const workerConnection = await NativeConnection.connect({ address: options.address });
  try {
    const clientConnection = await Connection.connect({ address: options.address });
    try {
      const worker = await Worker.create({
        connection: workerConnection,
        namespace: options.namespace,
        taskQueue: options.taskQueue,
        workflowsPath: path.join(__dirname, 'workflows.js'),
        activities,
      });
      const client = new Client({ connection: clientConnection, namespace: options.namespace });
      // runUntil shuts the worker down gracefully once the client side finishes, and rethrows its failure.
      await worker.runUntil(driveWorkflow(client, options.taskQueue, inputs, expected));
    } finally {
      await clientConnection.close();
    }
  } finally {
    await workerConnection.close();
  }

  return {
    ok: true,
    workflow_ids: [inputs.parentWorkflowId, inputs.workflowInput.childWorkflowId],
    markers: [...collectMarkers({ inputs, expected })].sort(),
  };
}

async function main() {
  const timeout = setTimeout(() => {
    process.stderr.write(`scenario FAILED: no result after ${OVERALL_TIMEOUT_MS} ms\n`);
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  timeout.unref();

  try {
    const summary = await runScenario(parseOptions());
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    process.exitCode = 0;
  } catch (err) {
    process.stderr.write(`scenario FAILED: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  }
}

main();
