"""Read safetensors files with plain reads: whole into one aligned buffer, or each tensor straight into its place.

``safetensors.torch.load_file`` maps the file and leaves its pages to fault in one at a time as tensors are
first touched: on this machine 1.05 s for the 270 MB of SmolLM2 in bf16 (copied), against 0.15 s for reads
into memory. The start is the time to beat (issue 16: ready in 3 s). ``read_into`` reads each tensor into the
tensor that will hold it (a slice of a fused matrix, say), so nothing is copied twice and nothing is kept twice;
``read_safetensors`` reads a file whole for tensors used as they are (the int8 cache). The int8 kernel needs
aligned data (it crashed the process on the file's own offsets): that buffer's data section starts on a 64-byte
boundary, and a tensor that still lands off one is copied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from io import FileIO
from pathlib import Path
from typing import Any

import torch

ALIGNMENT = 64

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the file at ``path``; ValueError for a file that is not safetensors, or is cut short."""
    with path.open("rb", buffering=0) as file:
        entries = _header(file, path)
        size = max((entry["data_offsets"][1] for entry in entries.values()), default=0)
        buffer = torch.empty(size + ALIGNMENT, dtype=torch.uint8)
        start = -buffer.data_ptr() % ALIGNMENT
        data = buffer[start : start + size]
        _read_exactly(file, data, path)
    tensors: dict[str, torch.Tensor] = {}
    for name, entry in entries.items():
        begin, end = entry["data_offsets"]
        raw = data[begin:end]
        dtype = _dtype(entry, name, path)
        if begin % dtype.itemsize:
            raw = raw.clone()  # a view as a wider type must start on a multiple of its size
        tensor = raw.view(dtype).reshape(entry["shape"])
        tensors[name] = tensor if tensor.data_ptr() % ALIGNMENT == 0 else tensor.clone()
    return tensors


def read_into(path: Path, targets: Mapping[str, torch.Tensor]) -> set[str]:
    """Read each tensor of the file at ``path`` into ``targets[name]`` (contiguous, of the tensor's shape;
    converted when its dtype differs) and return the names read. A tensor without a target, or of another
    shape, is a ValueError: weights that do not fit the model are never half loaded."""
    with path.open("rb", buffering=0) as file:
        entries = _header(file, path)
        data_start = file.tell()
        for name, entry in sorted(entries.items(), key=lambda item: item[1]["data_offsets"][0]):
            target = targets.get(name)
            if target is None:
                raise ValueError(f"{path}: tensor {name} has no place in this model")
            if list(target.shape) != list(entry["shape"]):
                raise ValueError(f"{path}: tensor {name} is {entry['shape']}, the model's is {list(target.shape)}")
            begin, end = entry["data_offsets"]
            file.seek(data_start + begin)
            dtype = _dtype(entry, name, path)
            if dtype == target.dtype and target.is_contiguous():
                _read_exactly(file, target.detach().view(-1).view(torch.uint8), path)
            else:
                raw = torch.empty(end - begin, dtype=torch.uint8)
                _read_exactly(file, raw, path)
                with torch.no_grad():
                    target.copy_(raw.view(dtype).reshape(target.shape))
    return set(entries)


def _header(file: FileIO, path: Path) -> dict[str, Any]:
    """The header's tensor entries (its metadata left out)."""
    prefix = file.read(8)
    if len(prefix) != 8:
        raise ValueError(f"{path} is too short for a safetensors file")
    length = int.from_bytes(prefix, "little")
    header = file.read(length)
    if len(header) != length:
        raise ValueError(f"{path}: the safetensors header is cut short")
    entries = json.loads(header)
    entries.pop("__metadata__", None)
    return entries


def _dtype(entry: dict[str, Any], name: str, path: Path) -> torch.dtype:
    dtype = _DTYPES.get(entry["dtype"])
    if dtype is None:
        raise ValueError(f"{path}: tensor {name} has dtype {entry['dtype']}, which trayllm does not read")
    return dtype


def _read_exactly(file: FileIO, into: torch.Tensor, path: Path) -> None:
    """Fill the uint8 tensor ``into`` from the file's position; ValueError when the file ends first."""
    view = memoryview(into.numpy()).cast("B")  # type: ignore[arg-type]  # numpy arrays are buffers
    done = 0
    while done < len(view):
        read = file.readinto(view[done:])
        if not read:
            raise ValueError(f"{path}: the tensors are cut short")
        done += read
