"""Reads a Temporal server directly and checks that every stored user payload is encrypted."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.enums.v1 import EncodingType
from temporalio.api.history.v1 import History
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import (
    DescribeScheduleRequest,
    DescribeWorkflowExecutionRequest,
    GetWorkflowExecutionHistoryRequest,
    ListSchedulesRequest,
    ListWorkflowExecutionsRequest,
)
from temporalio.service import ConnectConfig, ServiceClient

from samples_codec import ENCODING_KEY, ENCRYPTED_ENCODING, is_encrypted
from sdk_exit import exit_process

PAGE_SIZE = 1000
PAYLOAD_TYPE = Payload.DESCRIPTOR.full_name
SEARCH_ATTRIBUTES_TYPE = SearchAttributes.DESCRIPTOR.full_name
ANY_TYPE = AnyMessage.DESCRIPTOR.full_name

# An unfiltered listing leaves out runs tagged with a namespace division (the schedulers' own runs).
LISTING_QUERIES = ("", "TemporalNamespaceDivision IS NOT NULL")

# The server runs each schedule as a system workflow with its own internal worker; that worker
# writes its arguments, signals, side-effect and local-activity markers and the "ScheduleInfo"
# memo as plain payloads the server must read back. They never held user data in plaintext:
# the user payloads nested in its input are the schedule's action, checked encrypted through
# DescribeSchedule, and the marker search covers the raw bytes of these histories too.
SCHEDULER_WORKFLOW_TYPE = "temporal-sys-scheduler-workflow"
SCHEDULER_WORKFLOW_ID_PREFIX = "temporal-sys-scheduler:"
SCHEDULER_INFO_MEMO_KEY = "ScheduleInfo"
SCHEDULER_EXEMPTION = "written by the server's scheduler system workflow"
MEMO_FIELDS = (".memo", ".upserted_memo")

# Steps from a response down to a payload, each already rendered: ".input", "[0]", "['owner']".
Trail = tuple[str, ...]
Exemption = Callable[[Trail], str | None]


def no_exemption(trail: Trail) -> str | None:
    return None


def scheduler_exemption(trail: Trail) -> str | None:
    """Exempts the scheduler workflow's own payloads, but not the user memo copied from CreateSchedule."""
    for index in range(len(trail) - 2):
        if trail[index] in MEMO_FIELDS and trail[index + 1] == ".fields":
            return SCHEDULER_EXEMPTION if trail[index + 2] == f"[{SCHEDULER_INFO_MEMO_KEY!r}]" else None
    return SCHEDULER_EXEMPTION


def exemption_for(workflow_type: str, workflow_id: str) -> Exemption:
    if workflow_type == SCHEDULER_WORKFLOW_TYPE and workflow_id.startswith(SCHEDULER_WORKFLOW_ID_PREFIX):
        return scheduler_exemption
    return no_exemption


@dataclass
class Report:
    """What the walk found; payloads are counted once per response they appear in."""

    encrypted: int = 0
    plaintext_search_attributes: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)
    exempted: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)

    def count_source(self, kind: str) -> None:
        self.sources[kind] = self.sources.get(kind, 0) + 1

    def violation(self, path: str, problem: str, payload: Payload | None = None) -> None:
        entry: dict[str, Any] = {"path": path, "problem": problem}
        if payload is not None:
            entry.update(describe_payload(payload))
        self.violations.append(entry)


def describe_payload(payload: Payload) -> dict[str, str]:
    described = {"encoding": payload.metadata.get(ENCODING_KEY, b"").decode(errors="replace")}
    if "messageType" in payload.metadata:
        described["message_type"] = payload.metadata["messageType"].decode(errors="replace")
    return described


class PayloadWalker:
    """Finds every Payload in a message by reflection and applies the storage rules to it."""

    def __init__(self, report: Report, markers: list[str]) -> None:
        self.report = report
        self.markers = [(marker, marker.encode()) for marker in markers]

    def inspect(self, path: str, message: Message, exemption: Exemption = no_exemption) -> None:
        """Checks one server response: marker bytes anywhere, then every payload in it."""
        self.check_markers(path, message)
        self.walk(path, message, exemption)

    def check_markers(self, path: str, message: Message) -> None:
        raw = message.SerializeToString()
        for marker, needle in self.markers:
            if needle in raw:
                self.report.violation(path, f"marker {marker!r} found in plaintext bytes")

    def walk(self, path: str, message: Message, exemption: Exemption = no_exemption) -> None:
        self._walk(path, (), message, False, exemption)

    def _walk(self, path: str, trail: Trail, message: Message, in_search_attributes: bool, exemption: Exemption) -> None:
        type_name = message.DESCRIPTOR.full_name
        if type_name == PAYLOAD_TYPE:
            self._check_payload(path, trail, message, in_search_attributes, exemption)
            return
        if type_name == ANY_TYPE:
            self._walk_any(path, trail, message, in_search_attributes, exemption)
            return
        in_search_attributes = in_search_attributes or type_name == SEARCH_ATTRIBUTES_TYPE
        for field_descriptor, value in message.ListFields():
            if field_descriptor.type != FieldDescriptor.TYPE_MESSAGE:
                continue
            field_trail = (*trail, f".{field_descriptor.name}")
            if field_descriptor.message_type.GetOptions().map_entry:
                if field_descriptor.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                    for key, item in value.items():
                        self._walk(path, (*field_trail, f"[{key!r}]"), item, in_search_attributes, exemption)
            elif field_descriptor.is_repeated:
                for index, item in enumerate(value):
                    self._walk(path, (*field_trail, f"[{index}]"), item, in_search_attributes, exemption)
            else:
                self._walk(path, field_trail, value, in_search_attributes, exemption)

    def _walk_any(
        self, path: str, trail: Trail, packed: AnyMessage, in_search_attributes: bool, exemption: Exemption
    ) -> None:
        # Update protocol messages travel as Any; types unknown to this runtime cannot hold Temporal payloads.
        try:
            descriptor = descriptor_pool.Default().FindMessageTypeByName(packed.TypeName())
        except KeyError:
            return
        unpacked = message_factory.GetMessageClass(descriptor)()
        packed.Unpack(unpacked)
        self._walk(path, (*trail, f"<{packed.TypeName()}>"), unpacked, in_search_attributes, exemption)

    def _check_payload(
        self, path: str, trail: Trail, payload: Payload, in_search_attributes: bool, exemption: Exemption
    ) -> None:
        where = path + "".join(trail)
        if in_search_attributes:
            if payload.metadata.get(ENCODING_KEY) == ENCRYPTED_ENCODING:
                self.report.violation(where, "search attribute is encrypted; the server cannot index it", payload)
            else:
                self.report.plaintext_search_attributes += 1
        elif is_encrypted(payload):
            self.report.encrypted += 1
        elif reason := exemption(trail):
            self.report.exempted.append({"path": where, "reason": reason, **describe_payload(payload)})
        else:
            self.report.violation(where, "payload is not binary/encrypted with a key id", payload)


async def pages(call: Callable[[bytes], Awaitable[Any]]) -> AsyncIterator[Any]:
    """Yields every page of a paginated call until the server returns an empty token."""
    token = b""
    while True:
        page = await call(token)
        yield page
        token = page.next_page_token
        if not token:
            return


def histories_in(response: Any) -> list[History]:
    """The history of a page, whether sent as messages or (frontend.sendRawWorkflowHistory) as blobs."""
    found = [response.history]
    for blob in response.raw_history:
        if blob.encoding_type == EncodingType.ENCODING_TYPE_JSON:
            found.append(json_format.Parse(blob.data, History(), ignore_unknown_fields=True))
        else:
            found.append(History.FromString(blob.data))
    return found


async def list_executions(
    service: ServiceClient, namespace: str, walker: PayloadWalker
) -> list[WorkflowExecutionInfo]:
    """Every run in the namespace, including system runs that an unfiltered listing hides."""
    found: dict[tuple[str, str], WorkflowExecutionInfo] = {}
    for query in LISTING_QUERIES:
        listing = pages(
            lambda token: service.workflow_service.list_workflow_executions(
                ListWorkflowExecutionsRequest(
                    namespace=namespace, page_size=PAGE_SIZE, next_page_token=token, query=query
                )
            )
        )
        async for page in listing:
            walker.check_markers(f"list_workflow_executions({query!r})", page)
            for index, info in enumerate(page.executions):
                walker.walk(
                    f"list_workflow_executions({query!r}).executions[{index}]",
                    info,
                    exemption_for(info.type.name, info.execution.workflow_id),
                )
                found[(info.execution.workflow_id, info.execution.run_id)] = info
    return list(found.values())


async def inspect_workflows(service: ServiceClient, namespace: str, walker: PayloadWalker) -> None:
    workflow_service = service.workflow_service
    for info in await list_executions(service, namespace, walker):
        execution = info.execution
        exemption = exemption_for(info.type.name, execution.workflow_id)
        label = f"workflow {execution.workflow_id} run {execution.run_id}"
        walker.report.count_source("workflow_runs")
        description = await workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(namespace=namespace, execution=execution)
        )
        walker.inspect(f"{label} describe", description, exemption)
        history_pages = pages(
            lambda token: workflow_service.get_workflow_execution_history(
                GetWorkflowExecutionHistoryRequest(
                    namespace=namespace,
                    execution=execution,
                    maximum_page_size=PAGE_SIZE,
                    next_page_token=token,
                )
            )
        )
        async for page in history_pages:
            walker.check_markers(f"{label} history page", page)
            for history in histories_in(page):
                for event in history.events:
                    walker.report.count_source("history_events")
                    walker.walk(f"{label} event {event.event_id}", event, exemption)


async def inspect_schedules(service: ServiceClient, namespace: str, walker: PayloadWalker) -> None:
    workflow_service = service.workflow_service
    listing = pages(
        lambda token: workflow_service.list_schedules(
            ListSchedulesRequest(namespace=namespace, maximum_page_size=PAGE_SIZE, next_page_token=token)
        )
    )
    schedule_ids: list[str] = []
    async for page in listing:
        walker.inspect("list_schedules", page)
        schedule_ids.extend(entry.schedule_id for entry in page.schedules)

    for schedule_id in schedule_ids:
        walker.report.count_source("schedules")
        description = await workflow_service.describe_schedule(
            DescribeScheduleRequest(namespace=namespace, schedule_id=schedule_id)
        )
        walker.inspect(f"schedule {schedule_id} describe", description)


async def inspect_server(address: str, namespace: str, markers: list[str]) -> Report:
    service = await ServiceClient.connect(ConnectConfig(target_host=address))
    report = Report()
    walker = PayloadWalker(report, markers)
    await inspect_workflows(service, namespace, walker)
    await inspect_schedules(service, namespace, walker)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True, help="HOST:PORT of the Temporal frontend itself (not the proxy)")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--marker", action="append", default=[], help="plaintext that must appear nowhere (repeatable)")
    args = parser.parse_args()
    report = asyncio.run(inspect_server(args.address, args.namespace, args.marker))
    ok = not report.violations and report.encrypted > 0
    summary = {
        "ok": ok,
        "encrypted": report.encrypted,
        "plaintext_search_attributes": report.plaintext_search_attributes,
        "sources": report.sources,
        "violations": report.violations,
        "exempted_server_payloads": report.exempted,
    }
    print(json.dumps(summary))
    if report.encrypted == 0:
        print("inspect FAILED: no encrypted payload found at all", file=sys.stderr)
    elif report.violations:
        print(f"inspect FAILED: {len(report.violations)} violation(s)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    exit_process(main())
