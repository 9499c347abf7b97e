"""Hub ids: parsing, which files of a repo the engine needs, and resolution from the Hugging Face cache offline.

The caches here are written by hand in huggingface_hub's layout (refs/, snapshots/<commit>/); tests/cli/test_pull.py
checks the same resolution on a cache that a real pull wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trayllm.errors import HubError, ModelLoadError
from trayllm.hub import CachedModel, HubId, needed_files, parse_hub_id, resolve_cached

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Qwen/Qwen2.5-7B-Instruct", HubId("Qwen/Qwen2.5-7B-Instruct")),
        ("org/name@v1.0", HubId("org/name", "v1.0")),
        ("org/name@refs/pr/1", HubId("org/name", "refs/pr/1")),
        ("TheBloke/M-GGUF:m.Q4_K_M.gguf", HubId("TheBloke/M-GGUF", "main", "m.Q4_K_M.gguf")),
        ("org/name@" + COMMIT + ":m.gguf", HubId("org/name", COMMIT, "m.gguf")),
    ],
)
def test_hub_ids_parse(text: str, expected: HubId):
    assert parse_hub_id(text) == expected
    assert str(expected) == text.replace("@main", "")


@pytest.mark.parametrize(
    "text",
    ["/models/org/name", "./org/name", "~/org/name", "name", "a/b/c", "org/na--me", "-org/name", "org/name:x.bin"],
)
def test_paths_and_malformed_ids_are_not_hub_ids(text: str):
    assert parse_hub_id(text) is None


REPO = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "consolidated.safetensors",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "onnx/model.onnx",
    "original/consolidated.00.pth",
    "m.Q4_K_M.gguf",
    "README.md",
    ".gitattributes",
]


def test_a_safetensors_repo_needs_configs_tokenizer_and_safetensors_only():
    assert needed_files(REPO, HubId("org/name")) == [
        "config.json",
        "generation_config.json",
        "model.safetensors.index.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]


def test_a_repo_without_safetensors_needs_its_pytorch_bins():
    names = ["config.json", "tokenizer.json", "pytorch_model.bin", "flax_model.msgpack", "tf_model.h5"]
    assert needed_files(names, HubId("org/old")) == ["config.json", "tokenizer.json", "pytorch_model.bin"]


def test_a_chosen_gguf_comes_alone():
    assert needed_files(REPO, HubId("org/name", gguf_file="m.Q4_K_M.gguf")) == ["m.Q4_K_M.gguf"]


def test_a_lone_gguf_is_chosen_and_several_must_be():
    assert needed_files(["a.Q8_0.gguf", "README.md"], HubId("org/g")) == ["a.Q8_0.gguf"]
    with pytest.raises(HubError) as several:
        needed_files(["a.Q8_0.gguf", "a.Q4_K_M.gguf"], HubId("org/g", "v2"))
    assert several.value.message == (
        "org/g holds several GGUF files; choose one as org/g@v2:FILE, one of: a.Q4_K_M.gguf, a.Q8_0.gguf"
    )
    with pytest.raises(HubError, match="org/g has no file b.gguf; choose one as org/g:FILE, one of: a.Q8_0.gguf"):
        needed_files(["a.Q8_0.gguf"], HubId("org/g", gguf_file="b.gguf"))


def test_a_repo_with_nothing_to_load_is_refused():
    with pytest.raises(HubError, match="no weights trayllm loads"):
        needed_files(["README.md", "model.onnx"], HubId("org/onnx"))
    with pytest.raises(HubError, match="no config.json"):
        needed_files(["model.safetensors"], HubId("org/bare"))


def cache_with(tmp_path: Path, repo: str, files: dict[str, str], ref: str = "main") -> Path:
    """A hub cache holding ``files`` of ``repo`` at COMMIT, ``ref`` pointing at it; returns the snapshot dir."""
    folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / COMMIT
    for name, text in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text(text)
    (folder / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
    (folder / "refs" / ref).write_text(COMMIT)
    return snapshot


def test_a_pulled_directory_resolves_offline(tmp_path: Path):
    snapshot = cache_with(tmp_path, "org/name", {"config.json": "{}", "model.safetensors": "w"})
    assert resolve_cached(HubId("org/name"), tmp_path / "hub") == CachedModel("org/name", snapshot, "hf")


def test_a_revision_resolves_through_its_ref_and_a_commit_directly(tmp_path: Path):
    snapshot = cache_with(tmp_path, "org/name", {"config.json": "{}", "model.safetensors": "w"}, ref="v1")
    assert resolve_cached(HubId("org/name", "v1"), tmp_path / "hub").path == snapshot
    assert resolve_cached(HubId("org/name", COMMIT), tmp_path / "hub").path == snapshot
    with pytest.raises(ModelLoadError, match="trayllm pull org/name$"):
        resolve_cached(HubId("org/name"), tmp_path / "hub")  # no ref main


def test_a_gguf_resolves_to_its_file_chosen_or_alone(tmp_path: Path):
    snapshot = cache_with(tmp_path, "org/g", {"a.Q8_0.gguf": "GGUF"})
    assert resolve_cached(HubId("org/g"), tmp_path / "hub") == CachedModel("org/g", snapshot / "a.Q8_0.gguf", "gguf")
    chosen = HubId("org/g", gguf_file="a.Q8_0.gguf")
    assert resolve_cached(chosen, tmp_path / "hub").path == snapshot / "a.Q8_0.gguf"
    with pytest.raises(
        ModelLoadError, match=r"only partly .* \(no b.gguf\); download it with: trayllm pull org/g:b.gguf"
    ):
        resolve_cached(HubId("org/g", gguf_file="b.gguf"), tmp_path / "hub")


def test_a_model_not_in_the_cache_is_one_line_naming_trayllm_pull(tmp_path: Path):
    with pytest.raises(ModelLoadError) as missing:
        resolve_cached(HubId("org/absent", "v2"), tmp_path / "hub")
    assert missing.value.message == (
        f"model org/absent@v2 is neither a local path nor in the Hugging Face cache ({tmp_path / 'hub'}); "
        "download it with: trayllm pull org/absent@v2"
    )


def test_an_interrupted_pull_is_not_taken_for_a_model(tmp_path: Path):
    index = json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    )
    files = {"config.json": "{}", "model.safetensors.index.json": index, "model-00001-of-00002.safetensors": "w"}
    cache_with(tmp_path, "org/sharded", files)
    with pytest.raises(
        ModelLoadError, match=r"\(no model-00002-of-00002.safetensors\); download it with: trayllm pull"
    ):
        resolve_cached(HubId("org/sharded"), tmp_path / "hub")
    cache_with(tmp_path, "org/configs-only", {"config.json": "{}", "tokenizer.json": "{}"})
    with pytest.raises(ModelLoadError, match=r"\(no weights\)"):
        resolve_cached(HubId("org/configs-only"), tmp_path / "hub")


def test_the_engine_takes_a_local_path_over_an_id_and_resolves_an_id_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from trayllm.config import load_settings
    from trayllm.engine.models import resolve_source

    snapshot = cache_with(tmp_path, "org/name", {"config.json": "{}", "model.safetensors": "w"})
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    source = resolve_source(load_settings({"model": "org/name"}, environ={}))
    assert (source.kind, source.name, source.path) == ("hf", "org/name", snapshot)
    local = tmp_path / "org" / "name"
    local.mkdir(parents=True)
    (local / "config.json").write_text("{}")
    source = resolve_source(load_settings({"model": "org/name"}, environ={}))
    assert (source.kind, source.path) == ("hf", Path("org/name"))
