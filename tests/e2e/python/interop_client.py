"""Samples-codec client, connected straight to the server, that runs a workflow on the worker behind the proxy."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client, WorkflowFailureError
from temporalio.converter import PayloadConverter

from checks import CheckFailure, expect
from samples_codec import KEY_ID_KEY, SamplesEncryptionCodec, codec_from_base64, encrypting_data_converter, is_encrypted
from sdk_exit import exit_process

PAGE_SIZE = 1000


def payloads_of(event: HistoryEvent) -> list[Payload]:
    """The user payloads of the events this check reads, in the order they appear."""
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        return list(event.workflow_execution_started_event_attributes.input.payloads)
    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        return list(event.activity_task_scheduled_event_attributes.input.payloads)
    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
        return list(event.activity_task_completed_event_attributes.result.payloads)
    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        return list(event.workflow_execution_completed_event_attributes.result.payloads)
    return []


async def raw_history(client: Client, namespace: str, workflow_id: str, run_id: str) -> list[HistoryEvent]:
    """History as the server stores it: read through the service stub, so no codec touches it."""
    events: list[HistoryEvent] = []
    token = b""
    while True:
        page = await client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=namespace,
                execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                maximum_page_size=PAGE_SIZE,
                next_page_token=token,
            )
        )
        events.extend(page.history.events)
        token = page.next_page_token
        if not token:
            return events


def check_stored_payloads(
    events: list[HistoryEvent], codec: SamplesEncryptionCodec, value: Any, expected_result: Any
) -> int:
    """Every payload written by either side must be ciphertext under our key that decrypts to the right value."""
    expected_by_type = {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: value,
        EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: value,
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: value,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: expected_result,
    }
    seen: set[int] = set()
    for event in events:
        for payload in payloads_of(event):
            label = f"event {event.event_id} {EventType.Name(event.event_type)}"
            if not is_encrypted(payload):
                raise CheckFailure(f"{label}: stored payload is not binary/encrypted: {dict(payload.metadata)!r}")
            expect(f"{label} key id", payload.metadata[KEY_ID_KEY].decode(), codec.key_id)
            decoded = PayloadConverter.default.from_payload(codec.decrypt_payload(payload))
            expect(f"{label} decrypted value", decoded, expected_by_type[event.event_type])
            seen.add(event.event_type)
    missing = set(expected_by_type) - seen
    if missing:
        raise CheckFailure(f"history lacks payloads for {sorted(EventType.Name(kind) for kind in missing)}")
    return len(seen)


async def run(args: argparse.Namespace) -> dict:
    codec = codec_from_base64(args.key_id, args.key_base64)
    client = await Client.connect(
        args.address, namespace=args.namespace, data_converter=encrypting_data_converter(codec)
    )
    marker = f"secret-interop-input-{secrets.token_hex(4)}"
    value = {"marker": marker, "numbers": [1, 2.5, -3], "nested": {"ok": True, "none": None}, "text": "ünï"}
    expected_result = {"echo": value, "from": "proxied-worker"}
    handle = await client.start_workflow(
        args.workflow_name,
        value,
        id=args.workflow_id or f"interop-{secrets.token_hex(4)}",
        task_queue=args.task_queue,
        execution_timeout=timedelta(seconds=args.timeout),
    )
    try:
        result = await handle.result()
    except WorkflowFailureError as err:
        raise CheckFailure(f"workflow {args.workflow_name} did not complete: {err.cause!r}") from err
    expect("workflow result", result, expected_result)
    run_id = handle.first_execution_run_id
    events = await raw_history(client, args.namespace, handle.id, run_id)
    checked_events = check_stored_payloads(events, codec, value, expected_result)
    return {
        "ok": True,
        "workflow_id": handle.id,
        "run_id": run_id,
        "checked_event_types": checked_events,
        "markers": [marker],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True, help="HOST:PORT of the Temporal frontend itself (not the proxy)")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", required=True, help="task queue of the worker behind the proxy")
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--key-base64", required=True, help="32-byte AES-256 key, base64")
    parser.add_argument("--workflow-name", default="InteropWorkflow")
    parser.add_argument("--workflow-id", help="defaults to a random interop-… id")
    parser.add_argument("--timeout", type=float, default=30.0, help="workflow execution timeout in seconds")
    args = parser.parse_args()
    try:
        summary = asyncio.run(run(args))
    except CheckFailure as failure:
        print(f"interop FAILED: {failure}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    exit_process(main())
