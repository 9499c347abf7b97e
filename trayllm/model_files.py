"""What a model's files say about it, read without torch: format, size on disk, precision and parameter count.

`trayllm models` describes every model on the machine from this, so it reads only headers: the JSON header of a
safetensors file (its tensors' shapes), the header of a GGUF file (its tensor infos), a directory's config.json.
A pickled ``.bin`` file has no header to read; its size over 2 bytes stands in for its parameter count, the
engine's own rule (``engine.models.parameter_count``), which overcounts an fp32 file: the safe side for a fit.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

ModelFormat = Literal["hf", "gguf"]

# the quantization llama.cpp writes into a GGUF file's name (Q4_K_M, Q8_0, IQ2_XS, F16, BF16 ...)
_GGUF_QUANT = re.compile(r"(?i)(?:^|[.\-_])((?:I?Q\d(?:_[A-Z0-9]+)*)|BF16|F16|F32)(?=\.gguf$|[.\-])")
_SHORT_DTYPE = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
# GGUF metadata value types (the spec's gguf_metadata_value_type): fixed sizes; 8 is a string, 9 an array
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


class UnreadableModel(ValueError):
    """The files are not a model trayllm can describe (a broken header, no weights, a bad config.json)."""


@dataclass(frozen=True)
class ModelFiles:
    """A model as its files describe it; ``parameters`` is None where no header says."""

    format: ModelFormat
    size_bytes: int
    precision: str | None
    parameters: int | None


def describe(path: Path) -> ModelFiles:
    """Describe a ``.gguf`` file or a Hugging Face directory; UnreadableModel says what is wrong with it."""
    if path.is_file() and path.suffix == ".gguf":
        return ModelFiles("gguf", path.stat().st_size, gguf_quant(path.name), gguf_parameters(path))
    if path.is_dir() and (path / "config.json").is_file():
        weights = weight_files(path)
        if not weights:
            raise UnreadableModel(f"{path} has a config.json but no .safetensors or .bin weights")
        return ModelFiles(
            "hf", sum(file.stat().st_size for file in weights), hf_precision(path), hf_parameters(weights)
        )
    if not path.exists():
        raise UnreadableModel(f"{path} does not exist")
    raise UnreadableModel(f"{path} is neither a .gguf file nor a directory with config.json")


def weight_files(directory: Path) -> list[Path]:
    """The weight files of a Hugging Face directory (a snapshot's entries are links into the blobs: followed)."""
    return sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())


def hf_precision(directory: Path) -> str | None:
    """The stored dtype config.json names (``dtype``, or ``torch_dtype`` before transformers 5) as fp32/bf16/fp16,
    or its quantization method (a GPTQ or AWQ checkpoint). UnreadableModel when config.json is no JSON object."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise UnreadableModel(f"{directory / 'config.json'} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise UnreadableModel(f"{directory / 'config.json'} is not a JSON object")
    quantization = config.get("quantization_config")
    if isinstance(quantization, dict) and isinstance(quantization.get("quant_method"), str):
        return str(quantization["quant_method"])
    dtype = config.get("dtype") or config.get("torch_dtype")
    return _SHORT_DTYPE.get(dtype, dtype) if isinstance(dtype, str) else None


def hf_parameters(files: list[Path]) -> int:
    """Parameters in these weight files: from each safetensors header; a ``.bin`` file's size over 2."""
    return sum(
        safetensors_parameters(file) if file.suffix == ".safetensors" else file.stat().st_size // 2 for file in files
    )


def safetensors_parameters(file: Path) -> int:
    """Sum of the tensors' element counts, from the file's header (8 bytes of length, then JSON)."""
    with file.open("rb") as handle:
        try:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length)) if length < 100 * 2**20 else None
        except (struct.error, ValueError):
            header = None
    if not isinstance(header, dict):
        raise UnreadableModel(f"{file} is not a safetensors file (its header does not read)")
    return sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")


def gguf_quant(name: str) -> str | None:
    """The quantization in a GGUF file's name (``SmolLM2-135M-Instruct.Q4_1.gguf``: Q4_1), upper-cased."""
    found = _GGUF_QUANT.search(name)
    return found.group(1).upper() if found else None


def gguf_parameters(file: Path) -> int:
    """Sum of the element counts of a GGUF file's tensors, from its header (metadata, then tensor infos)."""
    with file.open("rb") as handle:
        try:
            magic, version, tensors, entries = struct.unpack("<4sIQQ", handle.read(24))
            if magic != b"GGUF" or version < 2:
                raise UnreadableModel(f"{file} is not a GGUF file of version 2 or later")
            for _ in range(entries):
                _read_string(handle)  # the key
                _skip_value(handle, _unpack(handle, "<I"))
            total = 0
            for _ in range(tensors):
                _read_string(handle)
                dims = _unpack(handle, "<I")
                total += math.prod(struct.unpack(f"<{dims}Q", handle.read(8 * dims)))
                handle.read(12)  # the tensor's type (u32) and offset (u64)
            return total
        except (struct.error, OverflowError, MemoryError):
            raise UnreadableModel(f"{file}: its GGUF header is cut short or corrupt") from None


def architecture(path: Path) -> str | None:
    """The architecture ("llama", "qwen2"): a directory's config.json ``model_type``, or a GGUF file's
    ``general.architecture`` when it is the header's first entry, as llama.cpp writes it; None where neither says
    (only the file's first bytes are read)."""
    try:
        if path.is_dir():
            config = json.loads((path / "config.json").read_text())
            kind = config.get("model_type") if isinstance(config, dict) else None
            return kind if isinstance(kind, str) else None
        with path.open("rb") as handle:
            magic, version, _tensors, entries = struct.unpack("<4sIQQ", handle.read(24))
            if magic != b"GGUF" or version < 2 or entries == 0 or _read_string(handle) != b"general.architecture":
                return None
            return _read_string(handle).decode() if _unpack(handle, "<I") == _GGUF_STRING else None
    except (OSError, ValueError, struct.error, OverflowError):
        return None


def _unpack(handle: BinaryIO, fmt: str) -> int:
    (value,) = struct.unpack(fmt, handle.read(struct.calcsize(fmt)))
    return int(value)


def _read_string(handle: BinaryIO) -> bytes:
    length = _unpack(handle, "<Q")
    if length > 2**24:
        raise OverflowError(length)
    return handle.read(length)


def _skip_value(handle: BinaryIO, kind: int) -> None:
    if kind == _GGUF_STRING:
        _read_string(handle)
    elif kind == _GGUF_ARRAY:
        item, count = _unpack(handle, "<I"), _unpack(handle, "<Q")
        if item in _GGUF_SIZES:
            handle.seek(_GGUF_SIZES[item] * count, 1)
        else:
            for _ in range(count):
                _skip_value(handle, item)
    elif kind in _GGUF_SIZES:
        handle.seek(_GGUF_SIZES[kind], 1)
    else:
        raise OverflowError(kind)
