"""A converter that crashes, raises or hangs costs one artifact, never the run."""

from conftest import REPO  # noqa: F401  (tests/ is on sys.path, so the worker can import crashers)

import crashers
from edgeseq.export.isolation import run_isolated


def test_crashes_are_contained_and_the_rest_go_on(tmp_path):
    jobs = ["a", "segfault", "b", "abort", "raise", "c"]
    seen = []
    outcomes = run_isolated(jobs, crashers.job, crashers.setup, ("hello",), tmp_path, log_name=lambda j: f"{j}.log",
                            on_done=lambda o: seen.append(o.job))
    by_job = {o.job: o for o in outcomes}
    assert [o.job for o in outcomes] == jobs and seen == jobs
    for ok in ("a", "b", "c"):
        assert by_job[ok].ok and by_job[ok].result["context"] == "hello"
        assert f"converting {ok}" in (tmp_path / f"{ok}.log").read_text()
    assert not by_job["segfault"].ok and "converter crashed (SIGSEGV)" in by_job["segfault"].error
    assert not by_job["abort"].ok and "converter crashed (SIGABRT)" in by_job["abort"].error
    assert not by_job["raise"].ok and by_job["raise"].error.startswith("RuntimeError: converter said no")
    assert "RuntimeError" in (tmp_path / "raise.log").read_text()  # the traceback is kept in the log
    # A fresh worker took over after each crash, and a plain exception did not need one.
    assert by_job["a"].result["pid"] != by_job["b"].result["pid"] != by_job["c"].result["pid"]


def test_a_hanging_converter_times_out(tmp_path):
    outcomes = run_isolated(["hang", "a"], crashers.job, crashers.setup, (None,), tmp_path,
                            log_name=lambda j: f"{j}.log", timeout_s=3)
    assert not outcomes[0].ok and "timed out after 3 s" in outcomes[0].error
    assert outcomes[1].ok


def test_a_worker_whose_export_is_gone_exits_quietly(capfd, tmp_path):
    """A terminal's Ctrl-C goes to its foreground process group: the worker sits in a session of its own,
    ignores SIGINT, and when the interrupted export closes its end of the pipe, leaves without a traceback
    (the export kills it otherwise)."""
    import os
    import signal

    from edgeseq.export.isolation import _start_worker

    parent_end, worker = _start_worker(crashers.setup, ("hello",), crashers.job)
    assert os.getsid(worker.pid) != os.getsid(0)
    parent_end.send(("a", str(tmp_path / "a.log")))
    assert parent_end.recv()[0] is True  # up and waiting for the next job
    worker.send_signal(signal.SIGINT)
    parent_end.close()
    assert worker.wait(timeout=60) == 0
    assert "Traceback" not in capfd.readouterr().err
