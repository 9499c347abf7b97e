"""The model names POST /api/pull takes, as Hugging Face hub ids: trayllm's own (``org/name``, ``org/name@rev``,
``org/name:FILE.gguf``, as `trayllm pull` takes them) and Ollama's Hugging Face form, ``hf.co/org/name:QUANT``
(or ``huggingface.co/...``), whose tag picks a GGUF repo's file by its quantization as Ollama's ``ollama pull
hf.co/...`` does: the file whose name ends in the tag, in any case (``:q8_0`` is ``m.Q8_0.gguf``); no tag, or
``latest``, is Q4_K_M where the repo has it.

An Ollama library name (``llama3.2``, ``qwen2.5:7b``) names no Hugging Face repo: trayllm has no registry of its
own to look it up in, so it is refused with the form to use instead. No network here: the tag is matched against
the repo's listing, which the caller reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from trayllm.errors import HubNotFound, InvalidRequest
from trayllm.hub import HubId, parse_hub_id
from trayllm.model_files import gguf_quant

HF_HOSTS = ("hf.co/", "huggingface.co/")  # how Ollama's names point at the Hugging Face hub
DEFAULT_QUANT = "Q4_K_M"  # what Ollama pulls from a GGUF repo when the name has no tag
_LATEST = "latest"
_WEIGHTS = (".safetensors", ".bin")
_SEPARATORS = "-._"  # what goes before the quantization in a GGUF file's name
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$")  # one part of a GGUF split in several files
_TAG = re.compile(r"[\w.+-]*")  # a tag as Ollama's names spell one (empty: none)


@dataclass(frozen=True)
class PullTarget:
    """What a name asks for: the repo (with its revision, and its file when the name gives one) and the tag
    that chooses a GGUF file once the repo's listing is known (None: the default)."""

    hub_id: HubId
    tag: str | None = None

    def choose(self, listed: Iterable[str]) -> HubId:
        """The hub id to pull, given the repo's file names: as it is where the name chose a file or the repo holds
        weights trayllm loads whole (safetensors, .bin), else with the GGUF file the tag asks for; HubNotFound
        when the repo has no such file. A GGUF split in parts (``-00001-of-00003``) is never chosen: trayllm
        loads one file."""
        names = sorted(listed)
        if self.hub_id.gguf_file is not None:
            return self.hub_id
        ggufs = [name for name in names if name.endswith(".gguf") and not _SPLIT.search(name)]
        if self.tag is None:
            if any("/" not in name and name.endswith(_WEIGHTS) for name in names) or len(ggufs) < 2:
                return self.hub_id  # hub.needed_files takes it from here: the weights, or the one GGUF
            default = [name for name in ggufs if gguf_quant(name) == DEFAULT_QUANT]
            if len(default) == 1:
                return replace(self.hub_id, gguf_file=default[0])
            raise HubNotFound(
                f"{self.hub_id.repo_id} has several GGUF files and not one of quantization {DEFAULT_QUANT}, "
                f"Ollama's default: add the one to pull as a tag, hf.co/{self.hub_id.repo_id}:QUANT, "
                f"one of {_quants(ggufs)}"
            )
        if not ggufs:
            raise HubNotFound(
                f"{self.hub_id.repo_id} has no GGUF file, so none of quantization {self.tag}; "
                f"pull {self.hub_id} without a tag for the weights it has"
            )
        wanted = self.tag.lower()
        matches = [name for name in ggufs if _ends_with_tag(name.removesuffix(".gguf").lower(), wanted)]
        if len(matches) == 1:
            return replace(self.hub_id, gguf_file=matches[0])
        if matches:
            raise HubNotFound(
                f"{self.hub_id.repo_id} has several GGUF files of quantization {self.tag}; name one as "
                f"{self.hub_id}:FILE, one of: {', '.join(matches)}"
            )
        raise HubNotFound(f"{self.hub_id.repo_id} has no GGUF file of quantization {self.tag}; it has {_quants(ggufs)}")


def pull_target(name: str) -> PullTarget:
    """What ``name`` asks POST /api/pull for; InvalidRequest (naming the forms to use) when it is no hub id."""
    text = name.strip()
    host = next((h for h in HF_HOSTS if text.lower().startswith(h)), None)
    rest = text[len(host) :] if host else text
    if rest.endswith(".gguf"):  # org/name:FILE.gguf, trayllm's own
        repo, tag, hub_id = rest.partition(":")[0], "", parse_hub_id(rest)
    else:
        repo, _, tag = rest.partition(":")
        hub_id = parse_hub_id(repo) if _TAG.fullmatch(tag) else None
    if hub_id is None:
        if "/" not in repo:
            raise InvalidRequest(
                f"{name!r} is an Ollama library name, which names no Hugging Face model; trayllm pulls from the "
                "Hugging Face hub: name a model there as org/name (org/name:FILE.gguf, or hf.co/org/name:QUANT, "
                "for one file of a GGUF repo)",
                param="model",
            )
        raise InvalidRequest(
            f"{name!r} is no Hugging Face model name: org/name, org/name@revision, org/name:FILE.gguf, or "
            "hf.co/org/name:QUANT",
            param="model",
        )
    return PullTarget(hub_id, None if tag.lower() in ("", _LATEST) else tag)


def _ends_with_tag(stem: str, tag: str) -> bool:
    """``stem`` (a GGUF file's name, lower-cased, without .gguf) ends in ``tag`` as a whole part of the name."""
    return stem == tag or (stem.endswith(tag) and stem[-len(tag) - 1] in _SEPARATORS)


def _quants(ggufs: list[str]) -> str:
    """The tags that would pick each of these files: its quantization, else its name."""
    return ", ".join(sorted({gguf_quant(name) or name for name in ggufs}))
