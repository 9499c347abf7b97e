"""Ollama's endpoints about models and the server: GET /, /api/version, /api/tags, /api/ps, POST /api/show,
and a 400 saying what to do instead for those that manage a model store trayllm does not keep (pull, push,
create, copy, delete) or compute what it does not (embeddings).

The models listed are the ones the daemon serves now, described from their files' headers
(trayllm.model_files: size, format, architecture, parameters; read once per model, off the event loop) and
from the engine (precision, context length). None of these requests is a generation, so none leaves a record.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from trayllm import __version__, model_files
from trayllm.config import Settings
from trayllm.daemon.edge import json_object
from trayllm.daemon.engines import EngineSet
from trayllm.daemon.generation import validated
from trayllm.engine.types import ModelInfo
from trayllm.errors import InvalidRequest, ModelNotFound
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
        format="safetensors" if files.format == "hf" else files.format,
        family=model_files.architecture(path) or "",
        parameters=files.parameters,
        modified=modified,
    )


def parameter_size(parameters: int | None) -> str:
    """A parameter count as Ollama writes one: "135M", "7.6B"; "" when unknown."""
    if parameters is None:
        return ""
    if parameters >= 10**9:
        return f"{parameters / 1e9:.1f}B"
    return f"{parameters / 1e6:.0f}M" if parameters >= 10**6 else str(parameters)


def details(info: ModelInfo, files: Described) -> ModelDetails:
    """Ollama's details; ``quantization_level`` is the precision the model is served at (a GGUF file is
    de-quantized when loaded): its quantization when it has one, else its dtype."""
    level = info.quantization.upper() if info.quantization != "none" else _PRECISIONS.get(info.dtype, info.dtype)
    return ModelDetails(
        format=files.format,
        family=files.family,
        families=[files.family] if files.family else None,
        parameter_size=parameter_size(files.parameters),
        quantization_level=level,
        context_length=info.context_length,
    )


def digest(info: ModelInfo) -> str:
    """Stands for Ollama's manifest digest: a hash of the served name and version, so it changes with them."""
    return hashlib.sha256(f"{info.name}\n{info.version}".encode()).hexdigest()


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
            *(Route(refused.path, self._refuser(refused), methods=list(refused.methods)) for refused in REFUSED_ROUTES),
        ]

    async def root(self, _: Request) -> Response:
        return PlainTextResponse("Ollama is running")  # what Ollama's clients probe for

    async def version(self, _: Request) -> Response:
        return JSONResponse(VersionResponse(trayllm_version=__version__).model_dump())

    async def tags(self, _: Request) -> Response:
        listed = [await self._listed(info) for info in self.engines.served()]
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
        """Details, the architecture's facts Ollama's clients read (``<arch>.context_length``), and the daemon's
        defaults as Ollama's parameters; a model not served here is a 404."""
        body = validated(ShowRequest, json_object(await request.body(), max_depth=self.settings.max_json_depth))
        served = self.engines.served()
        wanted = untagged(body.wanted, [info.name for info in served])
        info = next((info for info in served if info.name == wanted), None)
        if info is None:
            names = ", ".join(repr(tagged(info.name)) for info in served) or "no model yet"
            raise ModelNotFound(f"model {body.wanted!r} not found: this daemon serves {names}", param="model")
        files = await asyncio.to_thread(describe, info.source, info.version)
        model_info: dict[str, object] = {"general.parameter_count": files.parameters}
        if files.family:
            model_info |= {"general.architecture": files.family, f"{files.family}.context_length": info.context_length}
        settings = self.settings
        parameters = {
            "num_ctx": info.context_length,
            "num_predict": settings.default_max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "repeat_penalty": settings.repetition_penalty,
        }
        reply = ShowResponse(
            parameters="\n".join(f"{name:<30} {value}" for name, value in parameters.items()),
            details=details(info, files),
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
            details=details(info, files),
        )

    @staticmethod
    def _refuser(refused: RefusedRoute) -> Callable[[Request], Awaitable[Response]]:
        async def refuse(request: Request) -> Response:
            raise InvalidRequest(f"{request.method} {request.url.path}: {refused.message}")

        return refuse
