"""End-to-end Temporal scenario: one worker and one client exercising every payload-carrying feature."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import HeaderCodecBehavior, SearchAttributePair, TypedSearchAttributes
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from checks import CheckFailure, expect
from samples_codec import codec_from_base64, encrypting_data_converter
from scenario_workflows import (
    CUSTOMER_ID,
    REJECTION_TYPE,
    TRACE_HEADER,
    ChildWorkflow,
    CountdownWorkflow,
    InteropWorkflow,
    MainWorkflow,
    ScheduledWorkflow,
    TraceHeaderInterceptor,
    compose_greeting,
    echo,
    reject_order,
    resume_from_heartbeat,
    trace_header_payload,
)
from sdk_exit import exit_process

WORKFLOW_TIMEOUT = timedelta(seconds=60)
VISIBILITY_WAIT_SECONDS = 10.0
SCENARIO_TIMEOUT_SECONDS = 120.0
POLL_INTERVAL_SECONDS = 0.2


async def poll_until(label: str, probe: Callable[[], Awaitable[Any]], timeout: float) -> Any:
    """Calls probe until it returns something truthy; visibility and schedules are eventually consistent."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailure(f"{label}: not observed within {timeout:.0f} s")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


class Markers:
    """Hands out recognisable plaintext strings so a later check can grep storage for them.

    Failure messages are strings, not payloads: they stay readable unless failure attributes
    are encoded, so their markers are reported apart from the payload markers.
    """

    def __init__(self) -> None:
        self.token = secrets.token_hex(4)
        self.in_payloads: list[str] = []
        self.in_failure_messages: list[str] = []

    def new(self, name: str) -> str:
        marker = f"secret-{name}-{self.token}"
        self.in_payloads.append(marker)
        return marker

    def new_failure_message(self, name: str) -> str:
        marker = f"secret-{name}-{self.token}"
        self.in_failure_messages.append(marker)
        return marker


async def ensure_search_attribute(client: Client, namespace: str) -> None:
    """Registers the CustomerId keyword attribute and waits until the server lists it."""
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=namespace,
                search_attributes={CUSTOMER_ID.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
            )
        )
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise

    async def registered() -> bool:
        response = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        return CUSTOMER_ID.name in response.custom_attributes

    await poll_until("search attribute CustomerId registered", registered, VISIBILITY_WAIT_SECONDS)


async def start_when_attribute_known(start: Callable[[], Awaitable[Any]]) -> Any:
    """Starts a workflow, retrying while the frontend's search attribute cache still lacks CustomerId."""
    deadline = time.monotonic() + VISIBILITY_WAIT_SECONDS
    while True:
        try:
            return await start()
        except RPCError as err:
            unknown_attribute = err.status == RPCStatusCode.INVALID_ARGUMENT and CUSTOMER_ID.name in err.message
            if not unknown_attribute or time.monotonic() > deadline:
                raise
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def run_main_workflow(client: Client, task_queue: str, prefix: str, markers: Markers, header: Any) -> list[str]:
    """Start with memo and search attribute, then signal, update, query, describe and list it."""
    workflow_id = f"{prefix}-main"
    initial_customer = f"{prefix}-customer-initial"
    upserted_customer = f"{prefix}-customer-upserted"
    profile_memo = {"marker": markers.new("memo"), "tier": "gold", "limits": [1, 2, 3]}
    rejection_details = {"marker": markers.new("failure-details"), "reason_code": 42}
    request = {
        "marker": markers.new("workflow-input"),
        "result_marker": markers.new("workflow-result"),
        "upserted_customer_id": upserted_customer,
        "upserted_memo": {"marker": markers.new("upserted-memo"), "step": 5},
        "activity": {"marker": markers.new("activity-input"), "result_marker": markers.new("activity-result"), "name": "ada"},
        "heartbeat": {
            "details": {"marker": markers.new("heartbeat-details"), "progress": 7},
            "result_marker": markers.new("heartbeat-result"),
        },
        "rejection": {"message": markers.new_failure_message("failure-message"), "details": rejection_details},
        "child": {"marker": markers.new("child-input"), "result_marker": markers.new("child-result"), "depth": 1},
        "nested": {"numbers": [3.5, -1, 0], "flag": True, "nothing": None, "text": "ünïcödé"},
    }
    signal_args = [{"marker": markers.new("signal-arg"), "count": 2}, markers.new("signal-second-arg")]
    question = {"marker": markers.new("query-arg"), "result_marker": markers.new("query-result")}
    change = {"marker": markers.new("update-arg"), "result_marker": markers.new("update-result"), "delta": -3}

    handle = await start_when_attribute_known(
        lambda: client.start_workflow(
            MainWorkflow.run,
            request,
            id=workflow_id,
            task_queue=task_queue,
            execution_timeout=WORKFLOW_TIMEOUT,
            memo={"profile": profile_memo},
            search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, initial_customer)]),
        )
    )
    await handle.signal(MainWorkflow.submit, args=signal_args)
    update_result = await handle.execute_update(MainWorkflow.adjust, change)
    expect("update result", update_result, {"marker": change["result_marker"], "applied": change})
    query_result = await handle.query(MainWorkflow.status, question)
    expect("query result marker", query_result.get("marker"), question["result_marker"])
    expect("query result echo", query_result.get("question"), question)

    result = await handle.result()
    expect(
        "main workflow result",
        result,
        {
            "marker": request["result_marker"],
            "input": request,
            "memo_at_start": {"profile": profile_memo},
            "activity": {
                "marker": request["activity"]["result_marker"],
                "greeting": "hello ada",
                "request": request["activity"],
            },
            "heartbeat": {
                "marker": request["heartbeat"]["result_marker"],
                "attempt": 2,
                "heartbeat_details": [request["heartbeat"]["details"]],
            },
            "rejection": {
                "type": REJECTION_TYPE,
                "message": request["rejection"]["message"],
                "details": [rejection_details],
            },
            "child": {"marker": request["child"]["result_marker"], "echo": request["child"]},
            "signal_args": signal_args,
            "update_arg": change,
            "trace_header": header,
        },
    )

    description = await handle.describe()
    expect("described memo", await description.memo(), {"profile": profile_memo, "progress": request["upserted_memo"]})
    expect("described CustomerId", description.typed_search_attributes.get(CUSTOMER_ID), upserted_customer)

    async def listed_by_upserted_customer() -> bool:
        query = f"{CUSTOMER_ID.name} = '{upserted_customer}'"
        return any([execution.id == workflow_id async for execution in client.list_workflows(query)])

    await poll_until("visibility query on upserted CustomerId", listed_by_upserted_customer, VISIBILITY_WAIT_SECONDS)
    return [workflow_id, f"{workflow_id}-child"]


async def run_continue_as_new(client: Client, task_queue: str, prefix: str, markers: Markers) -> list[str]:
    workflow_id = f"{prefix}-countdown"
    state = {
        "marker": markers.new("continue-as-new-input"),
        "result_marker": markers.new("continue-as-new-result"),
        "remaining": 2,
        "trail": [],
    }
    handle = await client.start_workflow(
        CountdownWorkflow.run, state, id=workflow_id, task_queue=task_queue, execution_timeout=WORKFLOW_TIMEOUT
    )
    result = await handle.result()
    expect("continue-as-new result marker", result.get("marker"), state["result_marker"])
    expect("continue-as-new final state", result.get("final_state"), {**state, "remaining": 0, "trail": [2, 1]})
    if result.get("run_id") == handle.first_execution_run_id:
        raise CheckFailure("continue-as-new: final result came from the first run")
    return [workflow_id]


async def run_schedule(
    client: Client, task_queue: str, prefix: str, markers: Markers, header: Any
) -> tuple[list[str], list[str]]:
    """Create a paused schedule, trigger it once, check the run and what describe returns."""
    schedule_id = f"{prefix}-schedule"
    request = {"marker": markers.new("schedule-arg"), "result_marker": markers.new("schedule-result")}
    action_memo = {"marker": markers.new("schedule-action-memo"), "kind": "scheduled"}
    schedule_memo = {"marker": markers.new("schedule-memo"), "owner": "e2e"}
    scheduled_customer = f"{prefix}-customer-scheduled"
    action = ScheduleActionStartWorkflow(
        ScheduledWorkflow.run,
        request,
        id=f"{prefix}-scheduled",
        task_queue=task_queue,
        execution_timeout=WORKFLOW_TIMEOUT,
        memo={"origin": action_memo},
        typed_search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, scheduled_customer)]),
        headers={TRACE_HEADER: trace_header_payload(header)},
    )
    # Created paused so the hourly spec never fires during (or after) the test; trigger ignores the pause.
    schedule_handle = await start_when_attribute_known(
        lambda: client.create_schedule(
            schedule_id,
            Schedule(
                action=action,
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=1))]),
                state=ScheduleState(paused=True, note="paused: only triggered by the e2e scenario"),
            ),
            memo={"owner": schedule_memo},
            search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, scheduled_customer)]),
        )
    )
    await schedule_handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)

    async def started_execution() -> ScheduleActionExecutionStartWorkflow | None:
        actions = (await schedule_handle.describe()).info.recent_actions
        return actions[0].action if actions else None

    execution = await poll_until("scheduled workflow start", started_execution, VISIBILITY_WAIT_SECONDS)
    if not isinstance(execution, ScheduleActionExecutionStartWorkflow):
        raise CheckFailure(f"schedule action: unexpected execution {execution!r}")
    scheduled = client.get_workflow_handle(execution.workflow_id, run_id=execution.first_execution_run_id)
    expect(
        "scheduled workflow result",
        await scheduled.result(),
        {"marker": request["result_marker"], "echo": request, "memo": action_memo, "trace_header": header},
    )

    description = await schedule_handle.describe()
    expect("schedule paused", description.schedule.state.paused, True)
    expect("schedule memo", await description.memo_value("owner"), schedule_memo)
    described_action = description.schedule.action
    if not isinstance(described_action, ScheduleActionStartWorkflow):
        raise CheckFailure(f"schedule action: unexpected type {type(described_action).__name__}")
    converter = client.data_converter
    expect("schedule action args", await converter.decode(list(described_action.args)), [request])
    expect(
        "schedule action memo",
        {key: (await converter.decode([payload]))[0] for key, payload in (described_action.memo or {}).items()},
        {"origin": action_memo},
    )
    expect(
        "schedule action CustomerId",
        described_action.typed_search_attributes.get(CUSTOMER_ID),
        scheduled_customer,
    )
    return [execution.workflow_id], [schedule_id]


def data_converter_for(args: argparse.Namespace) -> tuple[DataConverter, HeaderCodecBehavior]:
    """Plain SDK defaults, unless the hidden codec options ask this process to encrypt by itself."""
    if args.codec_key_id is None:
        return DataConverter.default, HeaderCodecBehavior.NO_CODEC
    codec = codec_from_base64(args.codec_key_id, args.codec_key_base64)
    return encrypting_data_converter(codec), HeaderCodecBehavior.CODEC


async def connect(args: argparse.Namespace, header: Any = None) -> Client:
    data_converter, header_behavior = data_converter_for(args)
    return await Client.connect(
        args.address,
        namespace=args.namespace,
        data_converter=data_converter,
        header_codec_behavior=header_behavior,
        interceptors=[TraceHeaderInterceptor(header)],
    )


async def run_scenario(args: argparse.Namespace) -> dict:
    markers = Markers()
    header = {"marker": markers.new("header"), "trace": "e2e"}
    client = await connect(args, header)
    await ensure_search_attribute(client, args.namespace)
    async with Worker(
        client,
        task_queue=args.task_queue,
        workflows=[MainWorkflow, ChildWorkflow, CountdownWorkflow, ScheduledWorkflow],
        activities=[compose_greeting, resume_from_heartbeat, reject_order],
    ):
        main_ids, countdown_ids, (scheduled_ids, schedule_ids) = await asyncio.gather(
            run_main_workflow(client, args.task_queue, args.id_prefix, markers, header),
            run_continue_as_new(client, args.task_queue, args.id_prefix, markers),
            run_schedule(client, args.task_queue, args.id_prefix, markers, header),
        )
    return {
        "ok": True,
        "workflow_ids": main_ids + countdown_ids + scheduled_ids,
        "schedule_ids": schedule_ids,
        "markers": markers.in_payloads,
        "failure_message_markers": markers.in_failure_messages,
    }


async def run_interop_worker(args: argparse.Namespace) -> None:
    """Serves InteropWorkflow until SIGTERM/SIGINT or --run-seconds elapse."""
    client = await connect(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with Worker(client, task_queue=args.task_queue, workflows=[InteropWorkflow], activities=[echo]):
        print(json.dumps({"worker_ready": True, "task_queue": args.task_queue}), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=args.run_seconds)
        except asyncio.TimeoutError:
            pass


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True, help="HOST:PORT of the frontend (the proxy in the real test)")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--id-prefix", default=f"e2e-py-{secrets.token_hex(4)}", help="prefix of workflow/schedule ids")
    parser.add_argument(
        "--interop-worker-only", action="store_true", help="only run a worker serving InteropWorkflow"
    )
    parser.add_argument("--run-seconds", type=float, default=None, help="with --interop-worker-only: stop after N s")
    # Development aid: encrypt in-process with the samples codec, so the server holds ciphertext without a proxy.
    parser.add_argument("--codec-key-id", help=argparse.SUPPRESS)
    parser.add_argument("--codec-key-base64", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if (args.codec_key_id is None) != (args.codec_key_base64 is None):
        parser.error("--codec-key-id and --codec-key-base64 go together")
    return args


def main() -> int:
    args = parse_args()
    if args.interop_worker_only:
        asyncio.run(run_interop_worker(args))
        return 0
    try:
        summary = asyncio.run(asyncio.wait_for(run_scenario(args), timeout=SCENARIO_TIMEOUT_SECONDS))
    except CheckFailure as failure:
        print(f"scenario FAILED: {failure}", file=sys.stderr)
        return 1
    except asyncio.TimeoutError:
        print(f"scenario FAILED: did not finish within {SCENARIO_TIMEOUT_SECONDS:.0f} s", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    exit_process(main())
