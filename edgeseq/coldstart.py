"""``python -m edgeseq.coldstart ARTIFACT [THREADS] [PROVIDER] [BATCH]``: in this fresh process, time the
runtime import, the load and the first inference (apart and together; with ``tensorrt``, the engine
build), then a few more runs, and print JSON with the peak resident memory. Used by ``edgeseq bench``;
runs without TensorFlow."""

from __future__ import annotations

import json
import resource
import sys
import time


def _rss_mb() -> float:
    """Peak resident memory of this process. Linux: VmHWM, which starts afresh at exec (ru_maxrss keeps
    the forking parent's peak across exec, so a big parent would inflate every child's figure)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def main(argv: list[str]) -> dict:
    path, threads, provider, batch = argv[0], int(argv[1] or 0) or None, argv[2] or None, int(argv[3] or 1)
    started = time.perf_counter()
    import numpy as np

    from edgeseq.runtimes import open_runner

    imported = time.perf_counter()
    rss_before_load = _rss_mb()
    runner = open_runner(path, threads=threads, provider=provider)
    loaded = time.perf_counter()
    step = runner.stepper(np.zeros((batch, *runner.input_shape), np.float32))
    step()
    first = time.perf_counter()
    steady = []
    for _ in range(20):  # steady-state buffers
        tick = time.perf_counter()
        step()
        steady.append(time.perf_counter() - tick)
    found = {"import_ms": round((imported - started) * 1e3, 2), "load_and_first_inference_ms": round((first - imported) * 1e3, 2),
             "load_ms": round((loaded - imported) * 1e3, 2), "first_inference_ms": round((first - loaded) * 1e3, 2),
             "rss_before_load_mb": rss_before_load, "peak_rss_mb": _rss_mb()}
    if (provider or "") == "tensorrt":
        # ORT's TensorRT provider builds its engine on the first run (when shapes are known): that run less a
        # steady one is the build, a cold start of its own (minutes on a Jetson for a big graph; an engine
        # cache makes the next start cheap)
        found["tensorrt_engine_build_ms"] = round((first - loaded - sorted(steady)[len(steady) // 2]) * 1e3, 2)
    return found

if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:] + [""] * (4 - len(sys.argv[1:])))))
