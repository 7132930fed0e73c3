// Activities for the codec-proxy scenario: each one carries user payloads the proxy must encrypt and decrypt.
'use strict';

const { Context, heartbeat, sleep } = require('@temporalio/activity');
const { ApplicationFailure } = require('@temporalio/common');

async function echoActivity(input) {
  return { echoed: input, marker: 'ts-secret-activity-result' };
}

// First attempt records heartbeat details and fails; the retry proves those details survived
// the round trip (RecordActivityTaskHeartbeat in, PollActivityTaskQueue out) by returning them.
async function heartbeatActivity(details) {
  const { attempt, heartbeatDetails } = Context.current().info;
  if (attempt === 1) {
    heartbeat(details);
    // Give the worker a moment to flush the heartbeat before the failure completes the attempt.
    await sleep(300);
    throw ApplicationFailure.retryable('first attempt fails on purpose', 'ScenarioRetry');
  }
  return { attempt, heartbeatDetails };
}

async function failingActivity(details) {
  throw ApplicationFailure.create({
    message: 'non-retryable failure on purpose',
    type: 'ScenarioFailure',
    nonRetryable: true,
    details: [details],
  });
}

module.exports = { echoActivity, heartbeatActivity, failingActivity };
