"""The documents edgeseq passes between stages, as types: one reader and one writer each.

The model card, the bundle manifest (with its artifact entries), and the verify, bench and pipeline
reports are frozen pydantic models with a schema version. :func:`read_document` validates a file when
it is read and turns any malformed field into one line naming the file and the field; :func:`write_document`
validates before it writes (atomically), so edgeseq never writes a document it would refuse to read.
``python -m edgeseq.schema DIR`` writes the JSON Schema of each (``edgeseq/schemas/`` holds the
published copies, checked against the types by a test), so other tools can read our reports.

Annotations use ``typing`` names (``List``, ``Optional``) so that the on-device part keeps working on
older Pythons. Parts whose shape is owned by one converter or runtime (recipes, coverage, host facts)
are typed as JSON objects here; their producers document them.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Dict, List, Literal, Optional, Type, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from typing_extensions import Annotated

from edgeseq import atomic
from edgeseq.errors import DocumentError, OutputError
from edgeseq.formats import Format, Quant

D = TypeVar("D", bound="Document")
JsonObject = Dict[str, Any]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class Part(BaseModel):
    """A section of a document: frozen, and an unknown field is an error (a typo is never ignored)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Document(Part):
    """A whole document; ``SCHEMA`` names it and its version, ``WHAT`` says what it is in messages."""

    SCHEMA: ClassVar[str]
    WHAT: ClassVar[str]

    schema_: str = Field(alias="schema")  # "edgeseq.<kind>/<version>": checked before any other field

    @model_validator(mode="before")
    @classmethod
    def _schema_first(cls, data):
        if isinstance(data, dict) and data.get("schema") != cls.SCHEMA:
            raise ValueError(f"schema {cls.SCHEMA!r} expected, found {data.get('schema')!r}")
        return data


def sha256_field(value: Optional[str]) -> Optional[str]:
    if value is not None and not _SHA256.match(value):
        raise ValueError("not a SHA-256 (64 lowercase hex digits)")
    return value


def bundle_relative(value: str) -> str:
    """A path inside the bundle: relative, POSIX, no '..', no hidden parts."""
    parts = PurePosixPath(value).parts
    if not value or "\\" in value or value.startswith("/") or not parts or any(p in ("..", ".") for p in parts) \
            or any(p.startswith(".") for p in parts) or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"{value!r} is not a plain path inside the bundle")
    return value


# ----------------------------------------------------------------------------------- model card

class TensorShape(Part):
    name: str
    shape: List[Optional[int]]
    dtype: Literal["float32"]


class OutputSpec(Part):
    """What the model's output means: digit probabilities, or a spelled word's character probabilities."""

    kind: Literal["classify", "spell"]
    shape: List[int]
    meaning: str
    labels: Optional[List[str]] = None  # classify: one per class
    vocab: Optional[str] = None  # spell: one character per class
    pad: Optional[str] = None
    length: Optional[int] = None
    words: Optional[List[str]] = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.kind == "classify" and (self.labels is None or [len(self.labels)] != self.shape):
            raise ValueError(f"a classify output needs one label per class of shape {self.shape}")
        if self.kind == "spell" and (self.vocab is None or self.pad is None or self.length is None or self.words is None
                                     or self.shape != [self.length, len(self.vocab)]):
            raise ValueError("a spell output needs vocab, pad, length and words, and shape [length, len(vocab)]")
        return self


class Preprocessing(Part):
    image: str
    scale: str
    dtype: Literal["float32"]
    range: List[float] = Field(min_length=2, max_length=2)
    layout: str


class Card(Document):
    """``card.json`` beside a ``model.keras``: written by ``edgeseq train``, or by a user for their own model."""

    SCHEMA: ClassVar[str] = "edgeseq.card/1"
    WHAT: ClassVar[str] = "model card"

    name: Optional[str] = None
    source: Optional[str] = None
    summary: Optional[str] = None
    parameters: Optional[int] = None
    input: TensorShape
    output: OutputSpec
    preprocessing: Preprocessing
    recipe: Optional[JsonObject] = None  # the training recipe (training/zoo.py)
    metrics: Optional[JsonObject] = None  # {"test": {metric: value}, "seed_target": ..., ...}
    training: Optional[JsonObject] = None  # seconds, epochs, device, ...
    data: Optional[JsonObject] = None
    versions: Optional[Dict[str, Optional[str]]] = None
    model_file: Optional[JsonObject] = None
    created: Optional[str] = None

    def test_metrics(self) -> Optional[Dict[str, float]]:
        test = (self.metrics or {}).get("test")
        return test if isinstance(test, dict) else None


# ----------------------------------------------------------------------------------- bundle manifest

class Tensor(Part):
    name: str
    shape: List[Optional[int]]
    dtype: str
    quantization: Optional[JsonObject] = None  # {"scale", "zero_point"} for int8 tensors


class Coverage(Part):
    """How much of an artifact runs in integer arithmetic (export/coverage.py), or why it was not measured."""

    macs: Optional[int] = Field(default=None, ge=0)  # multiply-accumulates per example, loops times their trips
    macs_int8_static: Optional[int] = Field(default=None, ge=0)
    macs_int8_dynamic: Optional[int] = Field(default=None, ge=0)
    macs_float: Optional[int] = Field(default=None, ge=0)
    int8_mac_share: Optional[float] = Field(default=None, ge=0, le=1)
    ops: Optional[Dict[Literal["int8", "dynamic", "float"], Dict[str, int]]] = None  # op counts by arithmetic
    float_mac_ops: Optional[Dict[str, int]] = None
    notes: List[str] = []
    error: Optional[str] = None  # coverage could not be read: the artifact stands, its share is unknown

    @model_validator(mode="after")
    def _measured_or_why_not(self):
        if self.error is None and (self.macs is None or self.int8_mac_share is None):
            raise ValueError("coverage needs macs and int8_mac_share, or the error that stopped it")
        return self


Share = Annotated[float, Field(ge=0, le=1)]  # a fraction of a whole


class Storage(Part):
    """Where an artifact's bytes go (export/coverage.py): what 8-bit weights can shrink and what they cannot.
    The parts add up to the file's size; ``names`` is the share of ``graph`` that is tensor and node names."""

    weights_float: int = Field(ge=0)  # constants of two or more dimensions stored as float
    float_weight_elements: int = Field(ge=0)  # how many numbers those are (one byte each at 8 bits)
    weights_integer: int = Field(ge=0)  # constants of two or more dimensions stored as integers
    vectors: int = Field(ge=0)  # 1-D and scalar constants: biases (int32 in an int8 model), norms, shapes
    quantization: int = Field(ge=0)  # scales and zero points (TFLite: 12 bytes per tensor or channel)
    graph: int = Field(ge=0)  # the rest: operators, tensor descriptions, names, metadata
    names: int = Field(ge=0)


class SearchTarget(Part):
    agreement: Share
    max_accuracy_drop: float = Field(ge=0)
    integer_mac_share: Share


class SearchCandidate(Part):
    """One int8 candidate the search measured (export/search.py), on the held-out selection images."""

    name: str
    stage: str  # standard, range setting, 16-bit activations, float fallback
    agreement: Share
    accuracy_delta: Optional[float] = None  # a fraction (-0.003 is 0.3 points lower)
    mean_abs_diff: float = Field(ge=0)
    integer_mac_share: Share
    bytes: int = Field(ge=0)
    size_vs_fp32: float = Field(ge=0)
    p50_ms: float = Field(ge=0)  # batch 1, one thread, timed side by side with the fp32 artifact
    p50_vs_fp32: float = Field(ge=0)
    float_layers: List[str] = []
    meets_target: bool
    worth_having: bool  # not slower than fp32, at least 2x smaller
    camera_agreement: Optional[Share] = None  # on the selection's camera-like renderings (edgeseq.camera_like)


class SensitivityLayer(Part):
    layer: str
    op: str
    mac_share: Share
    agreement_only_it_float: Share
    mean_abs_diff_only_it_float: float = Field(ge=0)
    agreement_gain: float
    error_gain: float


class Sensitivity(Part):
    all_int8: Dict[str, float]
    layers: List[SensitivityLayer]
    left_float: List[str]


class Search(Part):
    """What the accuracy-aware int8 search tried, and why the artifact is the one it chose."""

    images: int = Field(ge=0)  # clean held-out training images: the target's
    camera_like_images: int = Field(0, ge=0)  # camera-like copies of some of them, held to CAMERA_TARGET
    source: str
    target: SearchTarget
    fp32_p50_ms: float = Field(ge=0)
    candidates: List[SearchCandidate] = Field(min_length=1)
    chosen: str
    why: str
    sensitivity: Optional[Sensitivity] = None
    skipped: List[str] = []  # remedies that could not be built, and why
    files: List[str] = []  # the sensitivity report in the bundle

    @model_validator(mode="after")
    def _chosen_was_tried(self):
        if self.chosen not in {c.name for c in self.candidates}:
            raise ValueError(f"chosen candidate {self.chosen!r} is not among the candidates")
        return self

    def winner(self) -> SearchCandidate:
        return next(c for c in self.candidates if c.name == self.chosen)


class Artifact(Part):
    """One converted (or failed) artifact of a bundle."""

    id: str
    format: Format
    quant: Quant
    file: str
    status: Literal["ok", "failed"]
    convert_seconds: float = Field(ge=0)
    log: Optional[str] = None
    error: Optional[str] = None
    recipe: Optional[JsonObject] = None  # what the converter did (export/tflite.py, export/onnx.py)
    bytes: Optional[int] = Field(default=None, ge=0)
    sha256: Optional[str] = None
    inputs: Optional[List[Tensor]] = None
    outputs: Optional[List[Tensor]] = None
    runtime_check: Optional[str] = None
    coverage: Optional[Coverage] = None
    notes: List[str] = []
    drift: Optional[JsonObject] = None  # per-step hidden-state drift summary (recurrent int8)
    search: Optional[Search] = None  # the int8/dynamic search's candidates and choice
    storage: Optional[Storage] = None  # where the file's bytes go (None: not measured)
    flags: List[str] = []  # e.g. an integer artifact slower than fp32 or not 2x smaller: shipped, not recommended

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: Optional[str]) -> Optional[str]:
        return sha256_field(value)

    @field_validator("file")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        bundle_relative(value)
        if "/" in value:
            raise ValueError(f"{value!r} is not a file name in the bundle folder")
        return value

    @field_validator("log")
    @classmethod
    def _relative_log(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else bundle_relative(value)

    @model_validator(mode="after")
    def _consistent(self):
        if self.id != f"{self.format.value}-{self.quant.value}":
            raise ValueError(f"id {self.id!r} does not match format {self.format.value} and quant {self.quant.value}")
        if self.status == "ok" and (self.bytes is None or self.sha256 is None):
            raise ValueError(f"artifact {self.id} is ok but records no size or SHA-256")
        if self.status == "failed" and not self.error:
            raise ValueError(f"artifact {self.id} failed but records no error")
        suffix = ".tflite" if self.format is Format.tflite else ".onnx"
        if not self.file.endswith(suffix):
            raise ValueError(f"artifact {self.id}: {self.file!r} does not end in {suffix}")
        return self

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def coverage_json(self) -> Optional[JsonObject]:
        return None if self.coverage is None else self.coverage.model_dump(exclude_none=True)


class Source(Part):
    model: str  # where the .keras file was when it was exported
    file: str
    sha256: str
    bytes: Optional[int] = Field(default=None, ge=0)
    name: str
    card: bool
    parameters: int = Field(ge=0)
    dtype_policy: str
    exported_as: str
    test_metrics: Optional[Dict[str, float]] = None

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: str) -> str:
        return sha256_field(value)


class Calibration(Part):
    images: int = Field(ge=1)
    source: str
    selection_images: int = Field(ge=0)
    selection_camera_like: int = Field(0, ge=0)  # camera-like copies added to the selection (edgeseq.camera_like)


class ReferenceInfo(Part):
    file: Literal["reference.npz"]
    examples: int = Field(ge=1)
    test_examples: int = Field(ge=0)
    test_sha256: str
    seconds: float = Field(ge=0)

    @field_validator("test_sha256")
    @classmethod
    def _sha256(cls, value: str) -> str:
        return sha256_field(value)


class Manifest(Document):
    """``manifest.json``: the contract between the machine that exports and the device that runs."""

    SCHEMA: ClassVar[str] = "edgeseq.bundle/1"
    WHAT: ClassVar[str] = "bundle manifest"

    created: str
    source: Source
    input: TensorShape
    output: OutputSpec
    preprocessing: Preprocessing
    calibration: Calibration
    reference: ReferenceInfo
    versions: Dict[str, Optional[str]]
    artifacts: List[Artifact] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self):
        for field in ("id", "file"):
            values = [getattr(a, field) for a in self.artifacts]
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:
                raise ValueError(f"artifact {field} listed twice: {', '.join(twice)}")
        return self

    @property
    def kind(self) -> str:
        return self.output.kind

    def ok_artifacts(self) -> List[Artifact]:
        """The artifacts that were produced (failed conversions stay listed with their reason)."""
        return [a for a in self.artifacts if a.ok]


# ----------------------------------------------------------------------------------- reports

class VerifyRow(Part):
    id: str
    format: Format
    quant: Quant
    file: str
    bytes: Optional[int] = None
    size_vs_fp32: Optional[float] = None
    coverage: Optional[Coverage] = None
    notes: List[str] = []
    recipe: Optional[JsonObject] = None
    thresholds: Dict[str, float]
    status: Literal["ok", "failed", "error"]
    passed: bool
    reasons: List[str]
    parity: Optional[Dict[str, float]] = None  # edgeseq/parity.py: agreement, accuracy, deltas, errors
    runtime: Optional[JsonObject] = None
    run_seconds: Optional[float] = None
    flags: List[str] = []  # passes or not, an integer artifact slower than fp32 or not 2x smaller is flagged


class VerifyReport(Document):
    """``verify.json``: every artifact of a bundle against the Keras original."""

    SCHEMA: ClassVar[str] = "edgeseq.verify/1"
    WHAT: ClassVar[str] = "verify report"

    created: str
    edgeseq: str
    bundle: str
    model: str
    kind: Literal["classify", "spell"]
    evaluated_on: str
    examples: int = Field(ge=1)
    host: JsonObject
    passed: bool
    artifacts: List[VerifyRow]


class Histogram(Part):
    edges: List[float]  # µs, one more than counts
    counts: List[int]

    @model_validator(mode="after")
    def _sizes(self):
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError("a histogram needs one more edge than counts")
        return self


class Latency(Part):
    batch: int = Field(ge=1)
    error: Optional[str] = None  # why this batch size was not measured
    runs: Optional[int] = None
    mean_us: Optional[float] = None
    std_us: Optional[float] = None
    min_us: Optional[float] = None
    p50_us: Optional[float] = None
    p90_us: Optional[float] = None
    p99_us: Optional[float] = None
    max_us: Optional[float] = None
    cv: Optional[float] = None
    throughput_per_s: Optional[float] = None
    spread: Optional[float] = None  # 1.4826 MAD / median: a robust coefficient of variation
    tail_ratio: Optional[float] = None  # p99 / p50
    unstable: Optional[bool] = None  # spread above the run's max_spread
    samples_us: Optional[List[float]] = None  # every sample with --raw, else an evenly spread selection
    samples_total: Optional[int] = None
    histogram_us: Optional[Histogram] = None  # log-spaced bins over all samples


class BenchRow(Part):
    id: str
    file: str
    format: str  # tflite, onnx or keras
    quant: Optional[str] = None
    bytes: int = Field(ge=0)
    bundle: Optional[str] = None
    error: Optional[str] = None  # why the artifact could not be run at all
    runtime: Optional[JsonObject] = None
    latency: List[Latency] = []
    cold_start: Optional[JsonObject] = None  # edgeseq/coldstart.py, or {"error": ...}
    accuracy: Optional[JsonObject] = None  # evaluated_on, examples, agreement, accuracy, or {"error": ...}
    vs_fp32: Optional[JsonObject] = None  # int8/dynamic: p50 against the bundle's fp32, timed side by side
    flags: List[str] = []  # an int8/dynamic artifact slower than its bundle's fp32 one in this run, or not 2x smaller

    def p50(self, batch: int = 1) -> Optional[float]:
        return next((s.p50_us for s in self.latency if s.batch == batch and s.p50_us is not None), None)

    def accuracy_value(self) -> Optional[float]:
        value = (self.accuracy or {}).get("accuracy")
        return float(value) if isinstance(value, (int, float)) else None

    def problems(self) -> List[str]:
        """What was asked for and not measured, one line each."""
        found = [self.error] if self.error else []
        found += [f"batch {s.batch}: {s.error}" for s in self.latency if s.error]
        for part in ("cold_start", "accuracy"):
            error = (getattr(self, part) or {}).get("error")
            if error:
                found.append(f"{part.replace('_', ' ')}: {error}")
        return found


class BenchReport(Document):
    """``bench.json``: latency, cold start, memory and accuracy of each artifact on one device."""

    SCHEMA: ClassVar[str] = "edgeseq.bench/1"
    WHAT: ClassVar[str] = "bench report"

    edgeseq: str
    created: str
    config: JsonObject
    device: JsonObject  # edgeseq/fingerprint.py: cpu, cpu_count, machine, os, python, ...
    warnings: List[str] = []
    interrupted: bool = False
    partial: bool = False  # True when interrupted: written beside the last complete report, not over it
    artifacts: List[BenchRow]

    @field_validator("device")
    @classmethod
    def _cpu(cls, value: JsonObject) -> JsonObject:
        if not isinstance(value.get("cpu"), str):
            raise ValueError("device.cpu must name the CPU")
        return value


class PipelineReport(Document):
    """``pipeline.json``: the machine-readable twin of a pipeline run's ``report.md``."""

    SCHEMA: ClassVar[str] = "edgeseq.pipeline/1"
    WHAT: ClassVar[str] = "pipeline report"

    created: str
    edgeseq: str
    model: str
    quick: bool
    verdict: str
    passed: bool
    seconds: Dict[str, float]
    metrics: Dict[str, float]
    artifacts: List[JsonObject]  # id, bytes, agreement, accuracy_delta, int8_mac_share, p50_us, passed, reason
    files: List[str]


DOCUMENTS: Dict[str, Type[Document]] = {m.SCHEMA: m for m in (Card, Manifest, VerifyReport, BenchReport, PipelineReport)}


# ----------------------------------------------------------------------------------- one reader, one writer

def _where(location: tuple) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text.replace("schema_", "schema") or "(top level)"


def describe_error(exc: ValidationError) -> str:
    """The first problem of a validation error as 'field X: message' (and how many more there are)."""
    errors = exc.errors()
    first = errors[0]
    message = str(first.get("msg", "invalid")).replace("Value error, ", "")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"field {_where(tuple(first.get('loc', ())))}: {message}{more}"


def parse_document(model: Type[D], data: Any, source: Union[str, Path]) -> D:
    """``data`` (parsed JSON) as a ``model`` document; any problem is one :class:`DocumentError` line."""
    if not isinstance(data, dict):
        raise DocumentError(f"{source} is not an edgeseq {model.WHAT} (a JSON object was expected, found {type(data).__name__})")
    if data.get("schema") != model.SCHEMA:
        raise DocumentError(f"{source} is not an edgeseq {model.WHAT} (schema {model.SCHEMA!r} expected, "
                            f"found {str(data.get('schema'))[:40]!r})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DocumentError(f"{source}: malformed {model.WHAT}: {describe_error(exc)}") from None
    except RecursionError:
        raise DocumentError(f"{source}: malformed {model.WHAT}: nested too deeply") from None


def read_document(path: Union[str, Path], model: Type[D]) -> D:
    """The ``model`` document at ``path``, validated; a missing, unreadable or malformed file is one line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DocumentError(f"{model.WHAT} {path} does not exist") from None
    except IsADirectoryError:
        raise DocumentError(f"{model.WHAT} {path} is a directory, not a file") from None
    except UnicodeDecodeError:
        raise DocumentError(f"{path} is not an edgeseq {model.WHAT} (not UTF-8 text)") from None
    except OSError as exc:
        raise DocumentError(f"cannot read {model.WHAT} {path} ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        what = "empty" if not text.strip() else f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise DocumentError(f"{model.WHAT} {path} is {what}") from None
    except RecursionError:
        raise DocumentError(f"{model.WHAT} {path} is nested too deeply to be one") from None
    return parse_document(model, data, path)


def to_json(document: Document) -> JsonObject:
    return document.model_dump(mode="json", by_alias=True, exclude_none=True)


def validated(model: Type[D], data: JsonObject) -> D:
    """A document edgeseq itself built, checked; a failure here is a bug in edgeseq, so it says so."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RuntimeError(f"edgeseq built an invalid {model.WHAT}: {describe_error(exc)}") from exc


def write_document(path: Union[str, Path], document: Document) -> Path:
    """Write ``document`` as JSON, atomically (a temporary file renamed over ``path``)."""
    try:
        return atomic.write_json(path, to_json(document))
    except OSError as exc:
        raise OutputError(f"cannot write {document.WHAT} {path} ({exc.strerror or exc})") from None


def json_schemas() -> Dict[str, JsonObject]:
    """JSON Schema of every document, by file name (``edgeseq.bundle-1.schema.json`` ...)."""
    schemas = {}
    for name, model in DOCUMENTS.items():
        schema = model.model_json_schema(by_alias=True, mode="validation")
        schema["$id"] = f"https://edgeseq.dev/schemas/{name.replace('/', '-')}.schema.json"
        schema["properties"]["schema"] = {"const": model.SCHEMA, "title": "Schema"}
        schemas[f"{name.replace('/', '-')}.schema.json"] = schema
    return schemas


SCHEMA_DIR = Path(__file__).parent / "schemas"


def main(argv: List[str]) -> int:
    out = Path(argv[0]) if argv else SCHEMA_DIR
    for name, schema in json_schemas().items():
        atomic.write_text(out / name, json.dumps(schema, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(DOCUMENTS)} schemas to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
