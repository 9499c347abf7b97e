"""Hugging Face hub ids: what ``model = "org/name"`` means, which of a repo's files the engine needs, and where
a pulled model is found again without a network.

An id is ``org/name``, optionally ``@revision`` (a branch, tag or commit) and, for a repo of GGUF files,
``:file.gguf``. It resolves through huggingface_hub's own cache (``HF_HOME``/``HF_HUB_CACHE``, the layout
``hf_hub_download`` writes), so a model pulled by trayllm, by transformers or by ``hf download`` is found the same
way, and never over the network: ``trayllm pull`` (trayllm.pull) is the only code that downloads.

No torch here: the CLI imports this module, and huggingface_hub only when an id is resolved.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from trayllm.errors import HubError, HubNotFound, ModelLoadError

# What transformers reads beside the weights: the model's and generation's config, and every tokenizer format
# (a repo has one or two of them). Anything else in a repo (README, images, ONNX, other formats) is not fetched.
CONFIG_FILES = frozenset(
    {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenizer.model",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "chat_template.jinja",
        "chat_template.json",
    }
)
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"

_ID = re.compile(
    r"(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)"  # org/name, as the hub spells repo ids
    r"(?:@(?P<revision>[^:@\s]+))?"  # a branch, tag or commit (a branch may hold slashes: refs/pr/1)
    r"(?::(?P<file>[^:@\s]+\.gguf))?"
)


@dataclass(frozen=True)
class HubId:
    """A parsed hub id: the repo, the revision (``main`` when none is given) and the chosen GGUF file, if any."""

    repo_id: str
    revision: str = "main"
    gguf_file: str | None = None

    def __str__(self) -> str:
        revision = "" if self.revision == "main" else f"@{self.revision}"
        return f"{self.repo_id}{revision}" + (f":{self.gguf_file}" if self.gguf_file else "")


@dataclass(frozen=True)
class CachedModel:
    """A model found in the hub cache: what engine.models.ModelSource is made of (that module needs torch)."""

    name: str
    path: Path  # a snapshot directory ("hf") or a .gguf file in one ("gguf")
    kind: str


def parse_hub_id(text: str) -> HubId | None:
    """The hub id ``text`` spells, or None when it is not shaped like one (then it can only be a path)."""
    match = _ID.fullmatch(text.strip())
    if match is None or "--" in match["repo"] or ".." in match["repo"]:
        return None
    return HubId(match["repo"], match["revision"] or "main", match["file"])


def needed_files(names: Iterable[str], hub_id: HubId) -> list[str]:
    """The files of a repo (its listing, ``names``) that the engine loads; the rest is never downloaded.

    The chosen GGUF alone when the id names one; otherwise the configs and tokenizer files beside the weights in
    one format: safetensors (with their index) where the repo has them, else PyTorch .bin files, else its one GGUF.
    A repo of several GGUFs and no other weights needs one chosen: the error lists them. Configs and safetensors or
    .bin weights count at the repo's top level only (sub-folders hold other formats: onnx/, original/), and
    Mistral's consolidated.safetensors, a second copy of the weights in another layout, is left out.
    """
    listed = sorted(names)
    if hub_id.gguf_file is not None:
        if hub_id.gguf_file not in listed:
            raise HubNotFound(f"{hub_id.repo_id} has no file {hub_id.gguf_file}; {_gguf_choice(listed, hub_id)}")
        return [hub_id.gguf_file]
    top = [name for name in listed if "/" not in name]
    safetensors = [n for n in top if n.endswith(".safetensors") and not n.startswith("consolidated")]
    weights = safetensors or [n for n in top if n.endswith(".bin") and n.startswith("pytorch_model")]
    if weights:
        index = SAFETENSORS_INDEX if safetensors else BIN_INDEX
        configs = [n for n in top if n in CONFIG_FILES or n == index]
        if "config.json" not in configs:
            raise HubError(f"{hub_id.repo_id} has weights but no config.json: trayllm cannot load it")
        return configs + weights
    ggufs = [n for n in listed if n.endswith(".gguf")]
    if len(ggufs) == 1:
        return ggufs
    if ggufs:
        raise HubError(f"{hub_id.repo_id} holds several GGUF files; {_gguf_choice(listed, hub_id)}")
    raise HubError(f"{hub_id.repo_id} has no weights trayllm loads (safetensors, PyTorch .bin or GGUF)")


def _gguf_choice(listed: list[str], hub_id: HubId) -> str:
    ggufs = [n for n in listed if n.endswith(".gguf")]
    if not ggufs:
        return "it has no GGUF files"
    base = HubId(hub_id.repo_id, hub_id.revision)
    return f"choose one as {base}:FILE, one of: {', '.join(ggufs)}"


def hub_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads, by its conventions (HF_HUB_CACHE, else HF_HOME/hub), read at each call:
    huggingface_hub's own constants are read once, at its import."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def resolve_cached(hub_id: HubId, cache_dir: Path | None = None) -> CachedModel:
    """The model ``hub_id`` names, from the hub cache (``cache_dir``, else ``hub_cache_dir()``), with no
    network access; a model not there, or only partly there, is a ModelLoadError that names `trayllm pull`."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    cache = cache_dir or hub_cache_dir()
    pull = f"download it with: trayllm pull {hub_id}"
    try:
        snapshot = Path(
            snapshot_download(hub_id.repo_id, revision=hub_id.revision, cache_dir=cache, local_files_only=True)
        )
    except (LocalEntryNotFoundError, HFValidationError):
        raise ModelLoadError(
            f"model {hub_id} is neither a local path nor in the Hugging Face cache ({cache}); {pull}"
        ) from None
    missing = _missing_files(snapshot, hub_id)
    if missing:
        raise ModelLoadError(f"model {hub_id} is only partly in {cache} (no {missing}); {pull}")
    if hub_id.gguf_file is not None:
        return CachedModel(hub_id.repo_id, snapshot / hub_id.gguf_file, "gguf")
    if (snapshot / "config.json").is_file():
        return CachedModel(hub_id.repo_id, snapshot, "hf")
    ggufs = sorted(p.name for p in snapshot.glob("*.gguf") if p.is_file())
    if len(ggufs) != 1:
        raise ModelLoadError(f"model {hub_id}: {_gguf_choice(ggufs, hub_id)}")
    return CachedModel(hub_id.repo_id, snapshot / ggufs[0], "gguf")


def _missing_files(snapshot: Path, hub_id: HubId) -> str | None:
    """The first file an interrupted pull left out of ``snapshot``, or None when the model is whole. A snapshot
    holds only what finished downloading (each file is moved in whole), so what can be missing is a whole file:
    the chosen GGUF, the weights, or a shard its index lists."""
    if hub_id.gguf_file is not None:
        return None if (snapshot / hub_id.gguf_file).is_file() else hub_id.gguf_file
    if not (snapshot / "config.json").is_file():
        return None if any(snapshot.glob("*.gguf")) else "config.json"
    for index in (SAFETENSORS_INDEX, BIN_INDEX):
        if (snapshot / index).is_file():
            try:
                shards = sorted(set(json.loads((snapshot / index).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError):
                return index  # unreadable: pulling again replaces it
            return next((shard for shard in shards if not (snapshot / shard).is_file()), None)
    weights = [p for p in snapshot.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file()]
    return None if weights else "weights"
