"""`trayllm pull`: download a model's files from the Hugging Face hub into huggingface_hub's cache.

This is the one place trayllm touches the network for a model; the daemon only ever reads the cache
(trayllm.hub). Everything goes through huggingface_hub: the repo's file listing (``model_info``), one
``hf_hub_download`` per file (its cache layout, its token: ``HF_TOKEN`` or ``hf auth login``, its retries, which
resume a dropped connection with a Range request), so what trayllm pulls is what transformers or ``hf download``
would find, and the other way round.

A pull is planned before a byte moves: only the files the engine loads (``hub.needed_files``), less those already
cached, and their total checked against the cache's free disk. Files come one after another, the weights last:
huggingface_hub moves each into the cache whole, so an interrupted pull keeps every file it finished and a rerun
fetches only the rest (a file cut off midway starts over; huggingface_hub 2.x keeps no partial file between runs).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from trayllm.errors import HubError
from trayllm.hub import HubId, needed_files


@dataclass(frozen=True)
class PullFile:
    name: str
    size: int
    cached: bool  # already in the cache at this commit: not downloaded again


@dataclass(frozen=True)
class PullPlan:
    hub_id: HubId
    commit: str
    files: list[PullFile]

    @property
    def missing(self) -> list[PullFile]:
        return [f for f in self.files if not f.cached]

    @property
    def missing_bytes(self) -> int:
        return sum(f.size for f in self.missing)


class PullProgress(Protocol):
    """What a pull reports as it goes (the CLI draws it; an API could stream it)."""

    def begin(self, plan: PullPlan) -> None: ...

    def file_started(self, file: PullFile) -> None: ...

    def advance(self, nbytes: int) -> None: ...  # bytes written to the cache (negative: a download started over)

    def file_done(self, file: PullFile) -> None: ...


def size_text(nbytes: float) -> str:
    """``538.1 MB``: decimal units, as download sizes and disk tools state them."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(nbytes) < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


def plan_pull(hub_id: HubId, endpoint: str, cache_dir: Path) -> PullPlan:
    """The files to fetch, with their sizes, from the repo's listing at ``hub_id``'s revision."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    with hub_errors(hub_id, endpoint):
        info = HfApi(endpoint=endpoint).model_info(hub_id.repo_id, revision=hub_id.revision, files_metadata=True)
    if info.sha is None:
        raise HubError(f"the hub at {endpoint} named no commit for {hub_id}; check HF_ENDPOINT")
    sizes = {sibling.rfilename: sibling.size or 0 for sibling in info.siblings or []}
    names = needed_files(sizes, hub_id)
    # weights last: a snapshot cut short then lacks weights or a shard its index names, which resolution refuses
    names.sort(key=lambda name: (name.endswith((".safetensors", ".bin", ".gguf")), name))

    def cached(name: str) -> bool:
        found = try_to_load_from_cache(hub_id.repo_id, name, cache_dir=cache_dir, revision=info.sha)
        return isinstance(found, str)

    return PullPlan(hub_id, info.sha, [PullFile(name, sizes[name], cached(name)) for name in names])


def check_disk(plan: PullPlan, cache_dir: Path) -> None:
    """Refuse a pull the cache's disk has no room for, before any byte is written."""
    existing = next(p for p in (cache_dir, *cache_dir.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if plan.missing_bytes > free:
        raise HubError(
            f"{plan.hub_id} needs {size_text(plan.missing_bytes)} in {cache_dir}, which has {size_text(free)} free; "
            "free some space, or set HF_HUB_CACHE to a disk with room"
        )


def download(plan: PullPlan, endpoint: str, cache_dir: Path, progress: PullProgress) -> None:
    """Fetch the plan's missing files into the cache, one after another, reporting each byte to ``progress``."""
    from huggingface_hub import hf_hub_download

    progress.begin(plan)
    bar: Any = file_bar_class(progress)  # huggingface_hub takes any class with tqdm's interface
    for file in plan.missing:
        progress.file_started(file)
        with hub_errors(plan.hub_id, endpoint):
            hf_hub_download(
                plan.hub_id.repo_id,
                file.name,
                revision=plan.hub_id.revision,
                cache_dir=cache_dir,
                endpoint=endpoint,
                tqdm_class=bar,
            )
        progress.file_done(file)


def file_bar_class(progress: PullProgress) -> type[FileBar]:
    """A FileBar class counting into ``progress``: huggingface_hub wants a class (``tqdm_class``), and asks the
    class, not an instance, whether it takes ``update_transfer``."""
    return type("PullFileBar", (FileBar,), {"progress": progress})


class FileBar:
    """The progress bar huggingface_hub drives for one file (its ``tqdm_class``), counting into the pull's total.

    A Xet download also reports network bytes (``update_transfer``) to the same bar; only the bytes written
    count (``update``). The rest of tqdm's interface is here because huggingface_hub calls it; none of it draws.
    """

    progress: ClassVar[PullProgress]

    def __init__(self, total: int | None = None, **_: object) -> None:
        self.n = 0
        self.total = total

    def update(self, n: float = 1) -> None:
        self.n += int(n)
        self.progress.advance(int(n))

    def update_transfer(self, n: float = 1) -> None:
        """Network bytes of a Xet download: not counted (``update`` counts what reaches the disk)."""

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """tqdm's speed label: the pull's own progress shows the speed."""

    def set_transfer_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        """The speed label of a Xet download's network bytes: not shown either."""

    def refresh(self) -> None:
        """Nothing to redraw."""

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> FileBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def hub_errors(hub_id: HubId, endpoint: str) -> Iterator[None]:
    """huggingface_hub's exceptions as one HubError line each, naming the fix."""
    from huggingface_hub import errors
    from huggingface_hub.utils import httpx as hub_http  # the HTTP library huggingface_hub runs on, as it exports it

    unreachable = (
        f"cannot reach the model hub at {endpoint}; check the network connection "
        "(and HF_ENDPOINT, if it points at a mirror)"
    )
    try:
        yield
    except errors.OfflineModeIsEnabled:
        raise HubError("HF_HUB_OFFLINE is set, which forbids downloads: unset it to pull") from None
    except errors.GatedRepoError:
        raise HubError(
            f"{hub_id.repo_id} is gated: accept its terms on the hub, then log in (hf auth login, or set HF_TOKEN)"
        ) from None
    except errors.RepositoryNotFoundError:
        raise HubError(
            f"no model {hub_id.repo_id} on {endpoint}; if it is private, log in (hf auth login, or set HF_TOKEN)"
        ) from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{hub_id.repo_id} has no revision {hub_id.revision}") from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "an error"
        raise HubError(f"the model hub at {endpoint} answered {status} for {hub_id}; try again later") from None
    except errors.LocalEntryNotFoundError as exc:  # a file's HEAD request failed and the cache lacks it
        if isinstance(exc.__cause__, errors.FileMetadataError):
            raise HubError(f"{endpoint} does not answer like a Hugging Face hub; check HF_ENDPOINT") from None
        raise HubError(unreachable) from None
    except hub_http.TransportError as exc:
        raise HubError(f"{unreachable} ({type(exc).__name__})") from None
