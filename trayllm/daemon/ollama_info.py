"""Ollama's endpoints about models and the server: GET /, /api/version, /api/tags, /api/ps, POST /api/show,
and a 400 saying what to do instead for those that manage a model store trayllm does not keep (push, create,
copy, delete) or compute what it does not (embeddings). POST /api/pull is trayllm.daemon.ollama_pull's.

/api/tags lists every model on this machine, as `trayllm models` does (trayllm.model_catalog: the embedded one,
the configured one, the Hugging Face cache), the served ones first; /api/show describes any of them, and /api/ps
only the served ones. A served model is described from its files' headers (trayllm.model_files: size, format,
architecture, parameters; read once per model) and from the engine (the precision it is served at, its
context length); another one from its files alone, its precision as stored. Files are read off the event loop.
None of these requests is a generation, so none leaves a record.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from trayllm import __version__, model_files
from trayllm.api_status import ModelStatus
from trayllm.config import Settings
from trayllm.daemon.edge import json_object
from trayllm.daemon.engines import EngineSet
from trayllm.daemon.generation import validated
from trayllm.doctor.gpus import Machine
from trayllm.engine.types import ModelInfo
from trayllm.errors import InvalidRequest, ModelNotFound
from trayllm.model_catalog import Catalog, CatalogEntry, build_catalog
from trayllm.ollama_api import (
    ListedModel,
    ListResponse,
    ModelDetails,
    ProcessResponse,
    RunningModel,
    ShowRequest,
    ShowResponse,
    VersionResponse,
    tagged,
    timestamp,
    untagged,
)
from trayllm.ollama_rules import REFUSED_ROUTES, RefusedRoute

FOREVER_S = 2**63 / 1e9  # Ollama's expires_at for a model kept loaded for good (keep_alive -1): now plus this
_PRECISIONS = {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}  # as Ollama names a file's quantization_level


@dataclass(frozen=True)
class Described:
    """What the served model's files say; zeros and blanks where there are none to read (a remote engine)."""

    size: int = 0
    format: str = ""
    family: str = ""
    parameters: int | None = None
    modified: float | None = None


@functools.lru_cache(maxsize=16)
def describe(source: str, version: str) -> Described:
    """The files at ``source`` (a path; a remote engine's is a URL, which describes to nothing), read once per
    ``version`` of the model served from there (a reload of changed files reads them again)."""
    path = Path(source)
    try:
        files = model_files.describe(path)
        modified = path.stat().st_mtime
    except (model_files.UnreadableModel, OSError):
        return Described()
    return Described(
        size=files.size_bytes,
        format=_format(files.format),
        family=model_files.architecture(path) or "",
        parameters=files.parameters,
        modified=modified,
    )


def described_entry(entry: CatalogEntry) -> Described:
    """A catalogued model's files (the catalog has read their headers; the architecture is one more read)."""
    assert entry.path is not None
    path = Path(entry.path)
    try:
        modified: float | None = path.stat().st_mtime
    except OSError:
        modified = None
    return Described(
        size=entry.size_bytes or 0,
        format=_format(entry.format) if entry.format else "",
        family=model_files.architecture(path) or "",
        parameters=entry.parameters,
        modified=modified,
    )


def _format(kind: model_files.ModelFormat) -> str:
    return "safetensors" if kind == "hf" else kind


def parameter_size(parameters: int | None) -> str:
    """A parameter count as Ollama writes one: "135M", "7.6B"; "" when unknown."""
    if parameters is None:
        return ""
    if parameters >= 10**9:
        return f"{parameters / 1e9:.1f}B"
    return f"{parameters / 1e6:.0f}M" if parameters >= 10**6 else str(parameters)


def details(files: Described, level: str, context_length: int | None = None) -> ModelDetails:
    """Ollama's details of a model; ``level`` is its ``quantization_level``."""
    return ModelDetails(
        format=files.format,
        family=files.family,
        families=[files.family] if files.family else None,
        parameter_size=parameter_size(files.parameters),
        quantization_level=level,
        context_length=context_length,
    )


def served_level(info: ModelInfo) -> str:
    """A served model's quantization_level: the precision it is served at (a GGUF file is de-quantized when
    loaded), its quantization when it has one, else its dtype."""
    return info.quantization.upper() if info.quantization != "none" else _PRECISIONS.get(info.dtype, info.dtype)


def stored_level(entry: CatalogEntry) -> str:
    """A catalogued model's quantization_level: its files' precision (a GGUF file's quantization, a directory's
    dtype or quantization method)."""
    return _PRECISIONS.get(entry.precision, entry.precision.upper()) if entry.precision else ""


def digest(info: ModelInfo) -> str:
    """Stands for Ollama's manifest digest: a hash of the served name and version, so it changes with them."""
    return hashlib.sha256(f"{info.name}\n{info.version}".encode()).hexdigest()


def entry_digest(entry: CatalogEntry) -> str:
    """The same for a model not served: a hash of its id and where its files are (a new snapshot moves them)."""
    return hashlib.sha256(f"{entry.id}\n{os.path.realpath(entry.path or '')}".encode()).hexdigest()


class OllamaInfo:
    def __init__(self, engines: EngineSet, settings: Settings, started: float) -> None:
        self.engines = engines
        self.settings = settings
        self.started = started  # the daemon's start (Unix seconds): modified_at where no file says

    def routes(self) -> list[Route]:
        return [
            Route("/", self.root, methods=["GET"]),  # HEAD too, as for every GET route
            Route("/api/version", self.version, methods=["GET"]),
            Route("/api/tags", self.tags, methods=["GET"]),
            Route("/api/ps", self.ps, methods=["GET"]),
            Route("/api/show", self.show, methods=["POST"]),
            *(Route(refused.path, refuser(refused), methods=list(refused.methods)) for refused in REFUSED_ROUTES),
        ]

    async def root(self, _: Request) -> Response:
        return PlainTextResponse("Ollama is running")  # what Ollama's clients probe for

    async def version(self, _: Request) -> Response:
        return JSONResponse(VersionResponse(trayllm_version=__version__).model_dump())

    async def tags(self, _: Request) -> Response:
        """The served models, then every other one on this machine."""
        listed = [await self._listed(info) for info in self.engines.served()]
        listed += [self._entry_listed(entry, files) for entry, files in await self._not_served()]
        return JSONResponse(ListResponse(models=listed).model_dump())

    async def ps(self, _: Request) -> Response:
        """The served models, loaded for good; ``size_vram`` is their files' size on a GPU, 0 on the CPU."""
        expires = timestamp(time.time() + FOREVER_S)
        running = []
        for info in self.engines.served():
            listed = await self._listed(info)
            on_gpu = info.device.startswith("cuda")
            running.append(
                RunningModel(
                    **listed.model_dump(),
                    expires_at=expires,
                    size_vram=listed.size if on_gpu else 0,
                    context_length=info.context_length,
                )
            )
        return JSONResponse(ProcessResponse(models=running).model_dump())

    async def show(self, request: Request) -> Response:
        """Details, the architecture's facts Ollama's clients read (``<arch>.context_length``, for a served model),
        and the daemon's defaults as Ollama's parameters; a model neither served nor on this machine is a 404."""
        body = validated(ShowRequest, json_object(await request.body(), max_depth=self.settings.max_json_depth))
        served = self.engines.served()
        wanted = untagged(body.wanted, [info.name for info in served])
        info = next((info for info in served if info.name == wanted), None)
        if info is not None:
            files = await asyncio.to_thread(describe, info.source, info.version)
            return self._shown(files, details(files, served_level(info), info.context_length), info.context_length)
        others = await self._not_served()
        wanted = untagged(body.wanted, [entry.id for entry, _ in others])
        found = next(((entry, files) for entry, files in others if entry.id == wanted), None)
        if found is None:
            names = ", ".join(repr(tagged(info.name)) for info in served) or "no model yet"
            raise ModelNotFound(
                f"model {body.wanted!r} not found: this daemon serves {names}, and GET /api/tags lists every model "
                "on this machine",
                param="model",
            )
        entry, files = found
        return self._shown(files, details(files, stored_level(entry)), None)

    def _shown(self, files: Described, described: ModelDetails, context_length: int | None) -> Response:
        model_info: dict[str, object] = {"general.parameter_count": files.parameters}
        if files.family:
            model_info |= {"general.architecture": files.family, f"{files.family}.context_length": context_length}
        settings = self.settings
        parameters = {
            "num_ctx": context_length,
            "num_predict": settings.default_max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "repeat_penalty": settings.repetition_penalty,
        }
        reply = ShowResponse(
            parameters="\n".join(f"{name:<30} {value}" for name, value in parameters.items() if value is not None),
            details=described,
            model_info={key: value for key, value in model_info.items() if value is not None},
            capabilities=["completion"],
            modified_at=timestamp(files.modified or self.started),
        )
        return JSONResponse(reply.model_dump())

    async def _listed(self, info: ModelInfo) -> ListedModel:
        files = await asyncio.to_thread(describe, info.source, info.version)
        name = tagged(info.name)
        return ListedModel(
            name=name,
            model=name,
            modified_at=timestamp(files.modified or self.started),
            size=files.size,
            digest=digest(info),
            details=details(files, served_level(info), info.context_length),
        )

    def _entry_listed(self, entry: CatalogEntry, files: Described) -> ListedModel:
        name = tagged(entry.id)
        return ListedModel(
            name=name,
            model=name,
            modified_at=timestamp(files.modified or self.started),
            size=files.size,
            digest=entry_digest(entry),
            details=details(files, stored_level(entry)),
        )

    async def _not_served(self) -> list[tuple[CatalogEntry, Described]]:
        """The models on this machine other than the served ones (the same file, or the same name), each with its
        files described; one that cannot be loaded (its files missing or unreadable) is left out."""
        served = {tagged(info.name) for info in self.engines.served()}

        def read() -> list[tuple[CatalogEntry, Described]]:
            return [
                (entry, described_entry(entry))
                for entry in self._catalog().models
                if entry.path is not None and entry.problem is None
                if not entry.serving and tagged(entry.id) not in served
            ]

        return await asyncio.to_thread(read)

    def _catalog(self) -> Catalog:
        """What `trayllm models` lists, the default engine's model marked as served. No GPU is probed: whether a
        model fits is not in Ollama's answers."""
        info = self.engines.info
        serving = None if info is None else ModelStatus.model_validate(info, from_attributes=True)
        return build_catalog(self.settings, Machine(), serving)


def refuser(refused: RefusedRoute) -> Callable[[Request], Awaitable[Response]]:
    """A route answering 400 with what to do instead."""

    async def refuse(request: Request) -> Response:
        raise InvalidRequest(f"{request.method} {request.url.path}: {refused.message}")

    return refuse
