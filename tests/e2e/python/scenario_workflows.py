"""Workflows, activities and the header interceptor that scenario.py runs on its worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import activity, client, worker, workflow
from temporalio.api.common.v1 import Payload
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.converter import PayloadConverter
from temporalio.exceptions import ActivityError, ApplicationError

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
TRACE_HEADER = "scenario-trace"
ACTIVITY_TIMEOUT = timedelta(seconds=10)
# A short interval keeps the deliberate retry of the heartbeat activity quick.
QUICK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0, maximum_attempts=2)
NO_RETRY = RetryPolicy(maximum_attempts=1)
REJECTION_TYPE = "OrderRejected"


@activity.defn
async def compose_greeting(request: dict) -> dict:
    return {"marker": request["result_marker"], "greeting": f"hello {request['name']}", "request": request}


@activity.defn
async def resume_from_heartbeat(request: dict) -> dict:
    """First attempt heartbeats then fails; the retry returns the details the server kept."""
    info = activity.info()
    if info.attempt == 1:
        activity.heartbeat(request["details"])
        raise ApplicationError("first attempt fails on purpose so the retry sees the heartbeat")
    return {"marker": request["result_marker"], "attempt": info.attempt, "heartbeat_details": list(info.heartbeat_details)}


@activity.defn
async def reject_order(request: dict) -> None:
    # The message is data, not source text, so its marker never lands in a stack trace.
    raise ApplicationError(request["message"], request["details"], type=REJECTION_TYPE, non_retryable=True)


@activity.defn
async def echo(value: Any) -> Any:
    return value


@workflow.defn
class ChildWorkflow:
    @workflow.run
    async def run(self, request: dict) -> dict:
        return {"marker": request["result_marker"], "echo": request}


@workflow.defn
class CountdownWorkflow:
    """Continues as new until the countdown reaches zero, recording each hop."""

    @workflow.run
    async def run(self, state: dict) -> dict:
        if state["remaining"] > 0:
            workflow.continue_as_new(
                {**state, "remaining": state["remaining"] - 1, "trail": [*state["trail"], state["remaining"]]}
            )
        return {"marker": state["result_marker"], "final_state": state, "run_id": workflow.info().run_id}


@workflow.defn
class ScheduledWorkflow:
    def __init__(self) -> None:
        self.trace_header: Any = None

    @workflow.run
    async def run(self, request: dict) -> dict:
        return {
            "marker": request["result_marker"],
            "echo": request,
            "memo": workflow.memo_value("origin", None),
            "trace_header": self.trace_header,
        }


@workflow.defn
class InteropWorkflow:
    @workflow.run
    async def run(self, value: Any) -> dict:
        echoed = await workflow.execute_activity(echo, value, start_to_close_timeout=ACTIVITY_TIMEOUT)
        return {"echo": echoed, "from": "proxied-worker"}


@workflow.defn
class MainWorkflow:
    """Touches every payload slot a workflow owns: activities, child, memo, signal, query, update."""

    def __init__(self) -> None:
        self.trace_header: Any = None
        self.signal_args: list[Any] | None = None
        self.update_arg: Any = None
        self.stage = "started"

    @workflow.run
    async def run(self, request: dict) -> dict:
        memo_at_start = dict(workflow.memo())
        activity_result = await workflow.execute_activity(
            compose_greeting, request["activity"], start_to_close_timeout=ACTIVITY_TIMEOUT
        )
        heartbeat_result = await workflow.execute_activity(
            resume_from_heartbeat,
            request["heartbeat"],
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=QUICK_RETRY,
        )
        rejection = await self._rejection(request["rejection"])
        child_result = await workflow.execute_child_workflow(
            ChildWorkflow.run, request["child"], id=f"{workflow.info().workflow_id}-child"
        )
        workflow.upsert_search_attributes([CUSTOMER_ID.value_set(request["upserted_customer_id"])])
        workflow.upsert_memo({"progress": request["upserted_memo"]})
        self.stage = "waiting"
        await workflow.wait_condition(lambda: self.signal_args is not None and self.update_arg is not None)
        return {
            "marker": request["result_marker"],
            "input": request,
            "memo_at_start": memo_at_start,
            "activity": activity_result,
            "heartbeat": heartbeat_result,
            "rejection": rejection,
            "child": child_result,
            "signal_args": self.signal_args,
            "update_arg": self.update_arg,
            "trace_header": self.trace_header,
        }

    async def _rejection(self, request: dict) -> dict:
        try:
            await workflow.execute_activity(
                reject_order, request, start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=NO_RETRY
            )
        except ActivityError as err:
            cause = err.cause
            if not isinstance(cause, ApplicationError):
                raise
            return {"type": cause.type, "message": cause.message, "details": list(cause.details)}
        raise ApplicationError("reject_order unexpectedly succeeded", non_retryable=True)

    @workflow.signal
    async def submit(self, first: Any, second: Any) -> None:
        self.signal_args = [first, second]

    @workflow.query
    def status(self, question: dict) -> dict:
        return {"marker": question["result_marker"], "question": question, "stage": self.stage}

    @workflow.update
    async def adjust(self, change: dict) -> dict:
        self.update_arg = change
        return {"marker": change["result_marker"], "applied": change}


def trace_header_payload(value: Any) -> Payload:
    return PayloadConverter.default.to_payload(value)


class TraceHeaderInterceptor(client.Interceptor, worker.Interceptor):
    """Sends a header with every workflow start and hands it to the workflow instance."""

    def __init__(self, header_value: Any = None) -> None:
        self.header_value = header_value

    def intercept_client(self, next: client.OutboundInterceptor) -> client.OutboundInterceptor:
        return _TraceHeaderClientOutbound(next, self.header_value)

    def workflow_interceptor_class(
        self, input: worker.WorkflowInterceptorClassInput
    ) -> type[worker.WorkflowInboundInterceptor]:
        return _TraceHeaderWorkflowInbound


class _TraceHeaderClientOutbound(client.OutboundInterceptor):
    def __init__(self, next: client.OutboundInterceptor, header_value: Any) -> None:
        super().__init__(next)
        self.header_value = header_value

    async def start_workflow(self, input: client.StartWorkflowInput) -> client.WorkflowHandle[Any, Any]:
        if self.header_value is not None:
            input.headers = {**input.headers, TRACE_HEADER: trace_header_payload(self.header_value)}
        return await super().start_workflow(input)


class _TraceHeaderWorkflowInbound(worker.WorkflowInboundInterceptor):
    async def execute_workflow(self, input: worker.ExecuteWorkflowInput) -> Any:
        header: Payload | None = input.headers.get(TRACE_HEADER)
        instance = workflow.instance()
        if header is not None and hasattr(instance, "trace_header"):
            instance.trace_header = workflow.payload_converter().from_payload(header)
        return await super().execute_workflow(input)
