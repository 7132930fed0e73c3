"""Runs one sample workflow through the proxy and prints what the worker and client saw."""

import argparse
import asyncio
import json
import os
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


@activity.defn
async def compose_greeting(order: dict) -> str:
    return f"Hello {order['customer']}, your card ending {order['card'][-4:]} was charged {order['amount']}"


@workflow.defn
class GreetingWorkflow:
    @workflow.run
    async def run(self, order: dict) -> str:
        return await workflow.execute_activity(
            compose_greeting, order, start_to_close_timeout=timedelta(seconds=10)
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True, help="the proxy's address")
    parser.add_argument("--workflow-id", default=f"demo-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--task-queue", default="demo")
    args = parser.parse_args()
    client = await Client.connect(args.address)
    order = {"customer": "Ada Lovelace", "card": "4111 1111 1111 1111", "amount": "42.00 EUR"}
    async with Worker(client, task_queue=args.task_queue, workflows=[GreetingWorkflow], activities=[compose_greeting]):
        result = await client.execute_workflow(
            GreetingWorkflow.run, order, id=args.workflow_id, task_queue=args.task_queue
        )
    print(json.dumps({"workflow_id": args.workflow_id, "input": order, "result": result}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    # The SDK's native runtime can abort during interpreter shutdown
    # (temporalio/sdk-python#300); everything is done and flushed by now.
    os._exit(0)
