// Workflow code for the codec-proxy scenario, bundled by the worker: exercises every user-payload path.
'use strict';

const {
  ActivityFailure,
  ApplicationFailure,
  condition,
  defineQuery,
  defineSignal,
  defineUpdate,
  executeChild,
  proxyActivities,
  setHandler,
} = require('@temporalio/workflow');

const scenarioSignal = defineSignal('scenarioSignal');
const scenarioQuery = defineQuery('scenarioQuery');
const scenarioUpdate = defineUpdate('scenarioUpdate');

const { echoActivity, failingActivity } = proxyActivities({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 1 },
});

const { heartbeatActivity } = proxyActivities({
  startToCloseTimeout: '10 seconds',
  heartbeatTimeout: '5 seconds',
  retry: { initialInterval: '200 milliseconds', backoffCoefficient: 1, maximumAttempts: 2 },
});

async function childWorkflow(input) {
  return { childEchoed: input, marker: 'ts-secret-child-result' };
}

async function scenarioWorkflow(input) {
  let signalArgs;
  let updateArgs;

  setHandler(scenarioSignal, (...args) => {
    signalArgs = args;
  });
  // The query answer depends only on its args and the workflow input, so it does not race the signal.
  setHandler(scenarioQuery, (arg) => ({ queryEchoed: arg, inputMarker: input.marker, marker: 'ts-secret-query-result' }));
  setHandler(scenarioUpdate, (...args) => {
    updateArgs = args;
    return { updateEchoed: args, marker: 'ts-secret-update-result' };
  });

  const activityResult = await echoActivity(input.activityInput);
  const heartbeatResult = await heartbeatActivity(input.heartbeatDetails);

  let failureDetails;
  try {
    await failingActivity(input.failureDetails);
    throw ApplicationFailure.nonRetryable('failingActivity unexpectedly succeeded');
  } catch (err) {
    if (!(err instanceof ActivityFailure) || !(err.cause instanceof ApplicationFailure)) {
      throw err;
    }
    failureDetails = err.cause.details;
  }

  const childResult = await executeChild(childWorkflow, {
    workflowId: input.childWorkflowId,
    args: [input.childInput],
  });

  await condition(() => signalArgs !== undefined && updateArgs !== undefined);

  return {
    marker: 'ts-secret-workflow-result',
    input,
    activityResult,
    heartbeatResult,
    failureDetails,
    childResult,
    signalArgs,
    updateArgs,
  };
}

module.exports = { scenarioWorkflow, childWorkflow, scenarioSignal, scenarioQuery, scenarioUpdate };
