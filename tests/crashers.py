"""Job functions for the crash-isolation tests. Kept free of heavy imports: the worker imports this module."""

import os
import signal


def setup(greeting):
    return greeting


def job(context, name):
    if name == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if name == "abort":
        os.abort()
    if name == "raise":
        raise RuntimeError("converter said no")
    if name == "hang":
        import time

        time.sleep(60)
    print(f"converting {name}")  # goes to the job's log
    return {"name": name, "context": context, "pid": os.getpid()}
