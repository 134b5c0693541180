"""ONNX artifacts through ONNX Runtime, on the execution provider asked for (default: the best available)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from edgeseq.errors import ModelError
from edgeseq.lazy import require
from edgeseq.runtimes import Provider, check_input

PROVIDERS = {Provider.cpu: "CPUExecutionProvider", Provider.cuda: "CUDAExecutionProvider",
             Provider.tensorrt: "TensorrtExecutionProvider"}
_PREFERENCE = (Provider.tensorrt, Provider.cuda, Provider.cpu)
CHUNK = 1024  # examples per run() call when the batch dimension is free


def available_providers() -> list[str]:
    ort = require("onnxruntime")
    return [name.value for name in _PREFERENCE if PROVIDERS[name] in ort.get_available_providers()]


class OnnxRunner:
    def __init__(self, path: Path, threads: int | None = None, provider: str | None = None):
        ort = require("onnxruntime")
        self.path = Path(path)
        available = available_providers()
        if provider is not None and provider not in available:
            raise ModelError(f"execution provider {provider!r} is not available here; available: {', '.join(available)}")
        chosen = [provider] if provider else available[:1]
        self._providers = list(dict.fromkeys([PROVIDERS[Provider(p)] for p in chosen] + ["CPUExecutionProvider"]))
        self.session = self._session(ort, threads)
        self.threads, self.thread_choice = threads, "asked" if threads else "runtime default"
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{self.path} has {len(inputs)} inputs and {len(outputs)} outputs; edgeseq needs one of each")
        self._in, self._out = inputs[0], outputs[0]
        batch = self._in.shape[0]
        self.batch = batch if isinstance(batch, int) and batch > 0 else None
        self.input_shape = tuple(int(d) for d in self._in.shape[1:])
        self.runtime, self.runtime_version = "onnxruntime", ort.__version__
        if threads is None and self._providers[0] == "CPUExecutionProvider" and (os.cpu_count() or 1) > 1:
            self._pick_threads(ort)

    @staticmethod
    def _options(ort, threads: int | None):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        return options

    def _session(self, ort, threads: int | None):
        options = self._options(ort, threads)
        try:
            return ort.InferenceSession(str(self.path), options, providers=self._providers)
        except Exception as exc:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
            raise ModelError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).strip().splitlines()[0][:200]})") from exc

    def _pick_threads(self, ort, trials: int = 30) -> None:
        """ORT's default uses every core, which is slower than one thread on small graphs (measured: the
        zoo's int8 LSTM, 97 against 81 µs on 2 cores). Time both at batch 1 and keep the faster."""
        x = np.zeros((self.batch or 1, *self.input_shape), np.float32)
        timings = {}
        for threads, session in ((None, self.session), (1, self._session(ort, 1))):
            feed, out = {self._in.name: x}, [self._out.name]
            for _ in range(5):
                session.run(out, feed)
            started = time.perf_counter()
            for _ in range(trials):
                session.run(out, feed)
            timings[threads] = (time.perf_counter() - started, session)
        if timings[1][0] < timings[None][0]:
            self.session, self.threads, self.thread_choice = timings[1][1], 1, "measured: 1 thread faster than all cores"
        else:
            self.thread_choice = "measured: all cores faster than 1 thread"

    def run(self, x: np.ndarray, batch: int | None = None) -> np.ndarray:
        """(N, *input_shape) float32 -> (N, ...) float32, ``batch`` examples per call (default: as many as fit)."""
        x = check_input(x, self.input_shape, self.path)
        step = self.batch or batch or CHUNK
        results = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step]
            n = len(chunk)
            if self.batch and n < self.batch:
                chunk = np.concatenate([chunk, np.zeros((self.batch - n, *self.input_shape), np.float32)])
            results.append(np.asarray(self.session.run([self._out.name], {self._in.name: chunk})[0], np.float32)[:n])
        return np.concatenate(results)

    def stepper(self, x: np.ndarray):
        """A zero-argument callable doing one ``session.run`` on ``x`` (the whole batch)."""
        x = check_input(x, self.input_shape, self.path)
        session, outputs, feed = self.session, [self._out.name], {self._in.name: x}
        return lambda: session.run(outputs, feed)

    def profile(self, x: np.ndarray, runs: int = 1) -> list[dict]:
        """ORT's per-node events ("cat": "Node", with provider, op name and duration) for ``runs`` inferences
        on ``x``, from a profiling session with this runner's providers and thread count."""
        import json
        import tempfile

        ort = require("onnxruntime")
        options = self._options(ort, self.threads)
        options.enable_profiling = True
        feed, outputs = {self._in.name: check_input(x, self.input_shape, self.path)}, [self._out.name]
        with tempfile.TemporaryDirectory() as scratch:
            options.profile_file_prefix = os.path.join(scratch, "profile")
            session = ort.InferenceSession(str(self.path), options, providers=self.session.get_providers())
            for _ in range(runs):
                session.run(outputs, feed)
            with open(session.end_profiling(), encoding="utf-8") as f:
                return [e for e in json.load(f) if e.get("cat") == "Node"]

    def node_providers(self, x: np.ndarray) -> dict[str, int]:
        """How many graph nodes each execution provider actually ran, from one profiled inference."""
        counts: dict[str, set] = {}
        for event in self.profile(x):
            provider = (event.get("args") or {}).get("provider")
            if provider:
                counts.setdefault(provider, set()).add(event["name"].rsplit("_kernel_time", 1)[0])
        return {provider: len(nodes) for provider, nodes in sorted(counts.items())}

    def tensors(self) -> dict:
        """Input and output tensors as ONNX Runtime sees them (a free dimension is None; float I/O)."""
        def one(arg):
            return {"name": arg.name, "shape": [d if isinstance(d, int) else None for d in arg.shape],
                    "dtype": arg.type.replace("tensor(", "").rstrip(")"), "quantization": None}

        return {"inputs": [one(self._in)], "outputs": [one(self._out)]}

    def describe(self) -> dict:
        return {"runtime": self.runtime, "version": self.runtime_version, "threads": self.threads,
                "thread_choice": self.thread_choice, "providers": self.session.get_providers(),
                "input": {"name": self._in.name, "shape": list(self._in.shape), "dtype": self._in.type},
                "output": {"name": self._out.name, "shape": list(self._out.shape), "dtype": self._out.type}}
