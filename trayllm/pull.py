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
Once fetched, each file is checked against its digest (``verify``), which huggingface_hub does not do.

`trayllm pull` (trayllm.cli.pull) and the daemon's POST /api/pull (trayllm.daemon.ollama_pull) both run these
functions; each reports progress through its own ``PullProgress``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from trayllm.errors import HubError, HubNotFound
from trayllm.hub import HubId, needed_files

_SHA256 = re.compile(r"[0-9a-f]{64}")  # an LFS file's content digest, and the name of its blob in the cache
_GIT_BLOB = re.compile(r"[0-9a-f]{40}")  # a file kept in git (not LFS): its git blob id


@dataclass(frozen=True)
class PullFile:
    name: str
    size: int
    cached: bool  # already in the cache at this commit: not downloaded again
    sha256: str | None = None  # the content's digest, where the repo's listing gives one (LFS files: the weights)


@dataclass(frozen=True)
class RepoListing:
    """A repo's files at one commit, as the hub lists them: each one's size, and its sha256 where it has one."""

    commit: str
    sizes: dict[str, int]
    sha256: dict[str, str]


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


def hub_endpoint() -> str:
    """The hub to pull from: ``HF_ENDPOINT`` as the environment has it now (a mirror, or a test's stand-in), else
    huggingface_hub's default; huggingface_hub itself reads the variable once, at its import."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def list_repo(hub_id: HubId, endpoint: str) -> RepoListing:
    """The repo's files at ``hub_id``'s revision (one request to the hub's API)."""
    from huggingface_hub import HfApi

    with hub_errors(hub_id, endpoint):
        info = HfApi(endpoint=endpoint).model_info(hub_id.repo_id, revision=hub_id.revision, files_metadata=True)
    if info.sha is None:
        raise HubError(f"the hub at {endpoint} named no commit for {hub_id}; check HF_ENDPOINT")
    siblings = info.siblings or []
    return RepoListing(
        info.sha,
        {sibling.rfilename: sibling.size or 0 for sibling in siblings},
        {sibling.rfilename: sibling.lfs.sha256 for sibling in siblings if sibling.lfs is not None},
    )


def plan_pull(hub_id: HubId, endpoint: str, cache_dir: Path, listing: RepoListing | None = None) -> PullPlan:
    """The files to fetch, with their sizes, from the repo's listing at ``hub_id``'s revision (``listing``, when
    the caller has already read it to choose the file)."""
    from huggingface_hub import try_to_load_from_cache

    listing = listing or list_repo(hub_id, endpoint)
    names = needed_files(listing.sizes, hub_id)
    # weights last: a snapshot cut short then lacks weights or a shard its index names, which resolution refuses
    names.sort(key=lambda name: (name.endswith((".safetensors", ".bin", ".gguf")), name))

    def cached(name: str) -> bool:
        found = try_to_load_from_cache(hub_id.repo_id, name, cache_dir=cache_dir, revision=listing.commit)
        return isinstance(found, str)

    files = [PullFile(name, listing.sizes[name], cached(name), listing.sha256.get(name)) for name in names]
    return PullPlan(hub_id, listing.commit, files)


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


def verify(plan: PullPlan, cache_dir: Path, before: Callable[[PullFile], None] | None = None) -> None:
    """Check each file just fetched against its digest, as Ollama checks each layer it pulls: huggingface_hub
    stores a file under the digest the hub announced (its sha256, or a small file's git blob id) without hashing
    what arrived. A file that does not match is taken out of the cache, so that pulling again fetches it anew.
    ``before`` is called with each file before it is read (a caller's chance to stop between files)."""
    from huggingface_hub import try_to_load_from_cache

    for file in plan.missing:
        if before is not None:
            before(file)
        found = try_to_load_from_cache(plan.hub_id.repo_id, file.name, cache_dir=cache_dir, revision=plan.commit)
        if not isinstance(found, str):
            raise HubError(f"{file.name} of {plan.hub_id} is not in {cache_dir} after its download; pull it again")
        blob = Path(os.path.realpath(found))  # a snapshot's entry links to its blob, named after the digest
        expected = file.sha256 or blob.name
        actual = _digest(blob, expected)
        if actual is not None and actual != expected:
            Path(found).unlink(missing_ok=True)
            blob.unlink(missing_ok=True)
            raise HubError(
                f"{file.name} of {plan.hub_id} arrived corrupt (its digest is {actual[:12]}, not {expected[:12]}) "
                "and was removed: pull it again"
            )


def _digest(blob: Path, like: str) -> str | None:
    """``blob``'s digest of the kind ``like`` is, by huggingface_hub's own functions (those its checksum command
    uses): a sha256, or a git blob id (a file kept in git, a few MB at most); None when ``like`` is neither."""
    from huggingface_hub.utils.sha import git_hash, sha_fileobj

    if _SHA256.fullmatch(like):
        with blob.open("rb") as fh:
            return sha_fileobj(fh).hex()
    return git_hash(blob.read_bytes()) if _GIT_BLOB.fullmatch(like) else None


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
        raise HubNotFound(
            f"no model {hub_id.repo_id} on {endpoint}; if it is private, log in (hf auth login, or set HF_TOKEN)"
        ) from None
    except errors.RevisionNotFoundError:
        raise HubNotFound(f"{hub_id.repo_id} has no revision {hub_id.revision}") from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "an error"
        raise HubError(f"the model hub at {endpoint} answered {status} for {hub_id}; try again later") from None
    except errors.LocalEntryNotFoundError as exc:  # a file's HEAD request failed and the cache lacks it
        if isinstance(exc.__cause__, errors.FileMetadataError):
            raise HubError(f"{endpoint} does not answer like a Hugging Face hub; check HF_ENDPOINT") from None
        raise HubError(unreachable) from None
    except hub_http.TransportError as exc:
        raise HubError(f"{unreachable} ({type(exc).__name__})") from None
