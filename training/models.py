"""Loading any ``.keras`` model (zoo or user's) with one-line errors, and what its input/output mean."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgeseq import card as cards
from edgeseq.errors import EdgeseqError, ModelError
from edgeseq.lazy import keras as _keras
from edgeseq.schema import Card, OutputSpec

MODEL_NAME = "model.keras"


def resolve_model_path(path: str | Path) -> Path:
    """A ``.keras`` file, or a run directory holding ``model.keras``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"model {path} does not exist")
    if path.is_dir():
        inside = path / MODEL_NAME
        if not inside.is_file():
            raise ModelError(f"{path} is a directory without {MODEL_NAME}; pass a .keras file or a run directory")
        return inside
    return path


def load_model(path: str | Path):
    """Load a Keras model for inference; a missing, truncated or foreign file is a :class:`ModelError`."""
    path = resolve_model_path(path)
    if path.suffix not in (".keras", ".h5"):
        raise ModelError(f"{path} is not a Keras model file (expected .keras or .h5)")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a valid .keras file (not a zip archive: truncated or corrupt?)")
    keras = _keras()
    try:
        return keras.saving.load_model(path, compile=False)
    except EdgeseqError:
        raise
    except Exception as exc:  # Keras raises many kinds (ValueError, KeyError, OSError, BadZipFile, ...)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load {path}: {type(exc).__name__}: {message[:300]}") from exc


def _float32_config(config):
    """A model config with every mixed-precision dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(config.get("config", {}).get("name", "")).startswith("mixed_"):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: _float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    return config


def as_float32(model):
    """The model computing in float32: a mixed-precision model (weights already float32) is rebuilt under a
    float32 policy with the same weights; a float32 model is returned as is. Returns (model, policy it had)."""
    policies = {layer.dtype_policy.name for layer in model.layers}
    mixed = sorted(p for p in policies if p.startswith("mixed_"))
    if not mixed:
        return model, "float32"
    rebuilt = type(model).from_config(_float32_config(model.get_config()))
    rebuilt.set_weights(model.get_weights())
    return rebuilt, mixed[0]


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model takes and gives, from its card when there is one, else from its shapes."""

    path: Path
    input_shape: tuple  # without batch, e.g. (28, 28)
    output: OutputSpec  # the card's, else inferred from the output shape
    card: Card | None

    @property
    def kind(self) -> str:
        return self.output.kind


def card_for(path: str | Path) -> Card | None:
    """The validated ``card.json`` beside a model, if there is one (read before the model is loaded)."""
    card_path = cards.find_card(resolve_model_path(path))
    return cards.read_card(card_path) if card_path else None


def describe(model, path: str | Path) -> ModelInfo:
    path = resolve_model_path(path)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"{path} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; edgeseq needs one of each")
    input_shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in input_shape):
        raise ModelError(f"{path} has a variable input shape {input_shape}; edgeseq needs a fixed one")
    card = card_for(path)
    shape = tuple(int(d) if d is not None else None for d in model.outputs[0].shape[1:])
    output = card.output if card else cards.output_spec_for_shape(shape)
    if list(shape) != output.shape:
        raise ModelError(f"{path} gives outputs of shape {list(shape)} per example, its card says {output.shape}")
    return ModelInfo(path, input_shape, output, card)
