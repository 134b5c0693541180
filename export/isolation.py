"""Run conversions in a child process, so a converter that crashes (segfault, abort) or hangs costs
one artifact, not the whole export.

One worker process (a fresh ``python -m edgeseq.export.isolation``, so it starts with a clean TensorFlow
and never re-imports the caller's ``__main__`` script) loads the model once and converts job after job. When it dies, the job it was on is reported failed with the signal and the tail of its
log, and a fresh worker takes the remaining jobs. Each job's converter output goes to its own log file.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
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
            connection.send((False, None, f"{type(exc).__name__}: {str(exc).strip()[:4000]}",
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
    log_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    pending = list(jobs)
    while pending:
        parent_end, worker = _start_worker(setup, setup_args, job_fn)
        try:
            while pending:
                job = pending[0]
                log_path = log_dir / log_name(job)
                parent_end.send((job, str(log_path)))
                if not parent_end.poll(timeout_s):
                    worker.kill()
                    worker.wait()
                    outcome = Outcome(job, False, None, f"converter timed out after {timeout_s:.0f} s", timeout_s)
                else:
                    try:
                        ok, result, error, seconds = parent_end.recv()
                        outcome = Outcome(job, ok, result, error, seconds)
                    except (EOFError, OSError):  # the worker died mid-job
                        worker.wait()
                        tail = _log_tail(log_path)
                        outcome = Outcome(job, False, None, _death(worker.returncode) + (f": {tail}" if tail else ""), 0.0)
                pending.pop(0)
                outcomes.append(outcome)
                if on_done:
                    on_done(outcome)
                if worker.poll() is not None:
                    break  # start a fresh worker for the rest
            else:
                parent_end.send(None)
        except BaseException:  # Ctrl-C or an error here: the conversion under way must not outlive it
            worker.kill()
            raise
        finally:
            parent_end.close()
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    return outcomes


def _start_worker(setup: Callable, setup_args: tuple, job_fn: Callable) -> tuple[Connection, subprocess.Popen]:
    """A fresh interpreter running :func:`_worker`, connected by two inherited pipes."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # find job_fn's module
    worker = subprocess.Popen([sys.executable, "-m", "edgeseq.export.isolation", str(to_child_r), str(from_child_w),
                               str(os.getpid())],
                              pass_fds=(to_child_r, from_child_w), env=env, stdin=subprocess.DEVNULL,
                              start_new_session=True)  # a terminal's Ctrl-C reaches the export, which kills it
    os.close(to_child_r)
    os.close(from_child_w)
    parent_end = _Duplex(Connection(from_child_r, writable=False), Connection(to_child_w, readable=False))
    try:
        parent_end.send(pickle.dumps((setup, setup_args, job_fn)))
    except BaseException:  # Ctrl-C before the caller holds the worker: it must not outlive this
        worker.kill()
        worker.wait()
        parent_end.close()
        raise
    return parent_end, worker


class _Duplex:
    """One object with send/recv/poll over a pair of one-way connections."""

    def __init__(self, incoming: Connection, outgoing: Connection):
        self._in, self._out = incoming, outgoing

    def send(self, obj) -> None:
        self._out.send(obj)

    def recv(self):
        return self._in.recv()

    def poll(self, timeout: float) -> bool:
        return self._in.poll(timeout)

    def close(self) -> None:
        self._in.close()
        self._out.close()


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when its parent dies (even by SIGKILL), so no converter writes on
    after the export that started it is gone; elsewhere, a thread notices the parent is gone."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _child_main(read_fd: int, write_fd: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the export owns Ctrl-C: it kills this worker, never a traceback
    _die_with_parent(parent)
    connection = _Duplex(Connection(read_fd, writable=False), Connection(write_fd, readable=False))
    try:
        setup, setup_args, job_fn = pickle.loads(connection.recv())
        _worker(connection, setup, setup_args, job_fn)
    except (EOFError, OSError):  # the export was interrupted and closed its end: nothing left to do, nothing to say
        os._exit(0)


if __name__ == "__main__":
    _child_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
