"""Process exit that avoids a crash of the Temporal Python SDK during interpreter shutdown."""

import os
import sys


def exit_process(code: int) -> None:
    """Flushes output and exits without running interpreter finalization.

    The SDK's Rust core threads can still call into Python while the interpreter finalizes,
    which aborts the process ("PyGILState_Release: thread state ... must be current",
    temporalio/sdk-python issue 300) and turns a passed check into exit code 134.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
