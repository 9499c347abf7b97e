"""The model catalog without a daemon: the embedded model, a configured path and a Hugging Face cache laid out as
huggingface_hub lays it out (blobs/, refs/, snapshots/ with links), with sizes, precision and the doctor's fit."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from trayllm import api_status
from trayllm.config import load_settings
from trayllm.doctor.gpus import Gpu, Machine
from trayllm.errors import ModelLoadError
from trayllm.model_catalog import EMBEDDED_NAME, build_catalog, model_setting_for

GIB = 2**30
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    """A safetensors file whose header declares ``shapes`` (the data itself is left out: only headers are read)."""
    header = json.dumps(
        {name: {"dtype": "BF16", "shape": shape, "data_offsets": [0, 0]} for name, shape in shapes.items()}
    )
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode())


def gguf(path: Path, shapes: list[list[int]]) -> None:
    """A GGUF v3 file with one string and one array of metadata, then tensor infos for ``shapes``."""

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    body = string("general.name") + struct.pack("<I", 8) + string("tiny")
    body += string("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<3f", 0, 1, 2)
    for number, shape in enumerate(shapes):
        body += string(f"t{number}") + struct.pack(f"<I{len(shape)}Q", len(shape), *shape) + struct.pack("<IQ", 0, 0)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, len(shapes), 2) + body)


def hf_dir(path: Path, parameters_shape: list[int], dtype: str = "bfloat16") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "dtype": dtype}))
    safetensors(path / "model.safetensors", {"w": parameters_shape})
    return path


def cached_repo(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """``repo_id`` in the hub cache's layout: each file a blob, linked from snapshots/<commit>/, refs/main -> commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for name, source in files.items():
        blob = repo / "blobs" / f"blob{len(list((repo / 'blobs').iterdir()))}"
        blob.write_bytes(source.read_bytes())
        (snapshot / name).symlink_to(Path("../../blobs") / blob.name)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    staging = tmp_path / "staging"
    big = hf_dir(staging / "big", [2000, 1_000_000])  # 2e9 parameters: 4.9 GiB at bf16 with the margin
    cached_repo(
        cache, "acme/big-chat", {"config.json": big / "config.json", "model.safetensors": big / "model.safetensors"}
    )
    gguf(staging / "tiny.Q8_0.gguf", [[1000, 1000], [1000]])
    cached_repo(
        cache, "acme/tiny-GGUF", {"tiny.Q8_0.gguf": staging / "tiny.Q8_0.gguf", "README.md": big / "config.json"}
    )
    return cache


def one_gpu(free: int, total: int) -> Machine:
    return Machine(gpus=[Gpu(0, "Test GPU", "GPU-0", "00000000:01:00.0", total, free, (8, 6), False)])


def test_lists_embedded_configured_and_cached_models_with_sizes_precision_and_fit(hub_cache: Path, tmp_path: Path):
    configured = hf_dir(tmp_path / "mine", [1000, 1000], dtype="float16")
    settings = load_settings({"model": str(configured)})
    serving = api_status.ModelStatus(
        name="mine",
        version="v1",
        source=str(configured),
        device="cuda:0",
        dtype="bf16",
        quantization="none",
        context_length=2048,
    )
    catalog = build_catalog(settings, one_gpu(free=4 * GIB, total=4 * GIB), serving)
    by_id = {entry.id: entry for entry in catalog.models}
    assert list(by_id) == [EMBEDDED_NAME, str(configured), "acme/big-chat", "acme/tiny-GGUF:tiny.Q8_0.gguf"]

    embedded = by_id[EMBEDDED_NAME]
    assert (embedded.format, embedded.precision, embedded.parameters, embedded.model) == ("gguf", "Q4_1", 134515008, "")
    assert embedded.size_bytes == Path(embedded.path).stat().st_size and embedded.fits == "fits"

    mine = by_id[str(configured)]
    assert (mine.source, mine.format, mine.precision, mine.parameters) == ("configured", "hf", "fp16", 1_000_000)
    assert mine.configured and mine.serving and mine.fits == "fits"
    assert not any(entry.serving for entry in catalog.models if entry is not mine)

    big = by_id["acme/big-chat"]
    assert (big.source, big.format, big.precision, big.parameters) == ("hf-cache", "hf", "bf16", 2_000_000_000)
    assert (
        big.size_bytes
        == (hub_cache / "models--acme--big-chat" / "snapshots" / COMMIT / "model.safetensors").stat().st_size
    )
    assert big.fits == "no" and big.need_bytes is not None and big.need_bytes > 4 * GIB  # the 4 GiB GPU is too small

    tiny = by_id["acme/tiny-GGUF:tiny.Q8_0.gguf"]
    assert (tiny.format, tiny.precision, tiny.parameters, tiny.fits) == ("gguf", "Q8_0", 1_001_000, "fits")

    as_json = catalog.to_json()
    assert as_json["gpu"] == {"index": 0, "name": "Test GPU", "free_bytes": 4 * GIB, "total_bytes": 4 * GIB}
    assert as_json["serving"] == {"name": "mine", "version": "v1"}
    assert set(as_json["models"][0]) == {
        "id", "model", "source", "path", "format", "size_bytes", "precision", "parameters", "need_bytes", "fits",
        "configured", "serving", "problem",
    }  # fmt: skip


def test_without_a_gpu_nothing_is_judged_and_the_note_says_so(hub_cache: Path):
    catalog = build_catalog(load_settings({}), Machine(nvml_error="NVML Shared Library Not Found"))
    assert catalog.gpu is None and catalog.gpu_note.startswith("no GPU (NVML Shared Library Not Found)")
    assert all(entry.fits is None for entry in catalog.models)
    assert catalog.models[0].configured and catalog.models[0].need_bytes is not None


def test_quantization_setting_changes_what_fits(hub_cache: Path):
    machine = one_gpu(free=4 * GIB, total=4 * GIB)
    assert build_catalog(load_settings({}), machine).find("acme/big-chat").fits == "no"  # type: ignore[union-attr]
    four_bit = build_catalog(load_settings({"quantization": "4bit"}), machine).find("acme/big-chat")
    assert four_bit is not None and four_bit.fits == "fits"


def test_broken_models_are_listed_with_their_problem(hub_cache: Path, tmp_path: Path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    safetensors(broken / "model.safetensors", {"w": [2, 2]})
    entry = build_catalog(load_settings({"model": str(broken)}), Machine()).find(str(broken))
    assert entry is not None and entry.configured and "not valid JSON" in str(entry.problem)
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        model_setting_for(str(broken), build_catalog(load_settings({}), Machine()))


def test_a_configured_hub_id_that_is_not_cached_names_pull(hub_cache: Path):
    catalog = build_catalog(load_settings({"model": "acme/elsewhere"}), Machine())
    entry = catalog.find("acme/elsewhere")
    assert entry is not None and "trayllm pull acme/elsewhere" in str(entry.problem)
    assert catalog.find("acme/big-chat").configured is False  # type: ignore[union-attr]


def test_model_setting_for_maps_ids_paths_and_hub_ids(hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    catalog = build_catalog(load_settings({}), Machine())
    assert model_setting_for(EMBEDDED_NAME, catalog) == ""
    assert model_setting_for("acme/tiny-GGUF:tiny.Q8_0.gguf", catalog) == "acme/tiny-GGUF:tiny.Q8_0.gguf"
    assert model_setting_for("acme/big-chat@v2", catalog) == "acme/big-chat@v2"  # a revision of a cached repo
    hf_dir(tmp_path / "here", [4, 4])
    monkeypatch.chdir(tmp_path)
    assert model_setting_for("here", catalog) == str(tmp_path / "here")  # absolute: the daemon's cwd is not ours
    with pytest.raises(ModelLoadError, match="trayllm pull acme/absent"):
        model_setting_for("acme/absent", catalog)
    with pytest.raises(ModelLoadError, match="no model here"):
        model_setting_for("no-such-thing", catalog)
