"""Run conversions in a child process, so a converter that crashes (segfault, abort) or hangs costs
one artifact, not the whole export.

One worker process (spawned, so it starts with a clean TensorFlow) loads the model once and converts
job after job. When it dies, the job it was on is reported failed with the signal and the tail of its
log, and a fresh worker takes the remaining jobs. Each job's converter output goes to its own log file.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

JOB_TIMEOUT_S = 900.0  # an int8 calibration of a big recurrent model on a slow CPU stays well under this


@dataclass(frozen=True)
class Outcome:
    job: object
    ok: bool
    result: dict | None  # what the job function returned
    error: str | None  # one line: why it failed
    seconds: float


def _redirect_output(log_path: Path) -> None:
    """Point this process's fd 1 and 2 (C++ converters write there) at ``log_path``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _worker(connection, setup: Callable, setup_args: tuple, job_fn: Callable) -> None:
    import time

    context = None
    while True:
        message = connection.recv()
        if message is None:
            return
        job, log_path = message
        _redirect_output(Path(log_path))
        started = time.perf_counter()
        try:
            if context is None:
                context = setup(*setup_args)
            result = job_fn(context, job)
            connection.send((True, result, None, time.perf_counter() - started))
        except BaseException as exc:  # anything a converter raises is this job's failure, not the worker's
            traceback.print_exc()
            first = str(exc).strip().splitlines()
            connection.send((False, None, f"{type(exc).__name__}: {first[0][:300] if first else ''}",
                             time.perf_counter() - started))


def _log_tail(log_path: Path, lines: int = 3) -> str:
    try:
        text = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(text[-lines:])[:400]


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"converter crashed ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"converter crashed (signal {-exitcode})"
    return f"converter process exited with code {exitcode}"


def run_isolated(jobs: list, job_fn: Callable, setup: Callable, setup_args: tuple, log_dir: Path,
                 log_name: Callable[[object], str], timeout_s: float = JOB_TIMEOUT_S,
                 on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run ``job_fn(setup(*setup_args), job)`` for each job in a crash-isolated worker process.

    ``job_fn`` and ``setup`` must be importable module-level functions (the worker is spawned).
    Returns one :class:`Outcome` per job, in order.
    """
    context = multiprocessing.get_context("spawn")
    log_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    pending = list(jobs)
    while pending:
        parent_end, child_end = context.Pipe()
        worker = context.Process(target=_worker, args=(child_end, setup, setup_args, job_fn), daemon=True)
        worker.start()
        child_end.close()
        try:
            while pending:
                job = pending[0]
                log_path = log_dir / log_name(job)
                parent_end.send((job, str(log_path)))
                if not parent_end.poll(timeout_s):
                    worker.kill()
                    worker.join()
                    outcome = Outcome(job, False, None, f"converter timed out after {timeout_s:.0f} s", timeout_s)
                else:
                    try:
                        ok, result, error, seconds = parent_end.recv()
                        outcome = Outcome(job, ok, result, error, seconds)
                    except EOFError:  # the worker died mid-job
                        worker.join()
                        tail = _log_tail(log_path)
                        outcome = Outcome(job, False, None, _death(worker.exitcode) + (f": {tail}" if tail else ""), 0.0)
                pending.pop(0)
                outcomes.append(outcome)
                if on_done:
                    on_done(outcome)
                if not worker.is_alive():
                    break  # start a fresh worker for the rest
            else:
                parent_end.send(None)
        finally:
            parent_end.close()
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
                worker.join()
    return outcomes
