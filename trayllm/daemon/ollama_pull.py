"""POST /api/pull: Ollama's download request, done by `trayllm pull`'s own machinery (trayllm.pull) in a worker
thread, its progress streamed as Ollama's NDJSON objects.

A name is read first (trayllm.ollama_names): one that is no Hugging Face model is a 400, and a pull while another
runs is a 409 (one at a time: two would share the disk check and the bandwidth). Then, in the worker thread:

- ``pulling manifest``: the repo's listing is read, the file a tag asks for chosen, the files planned and the
  disk checked (trayllm.pull: only what the engine loads, less what the cache already has);
- ``pulling NAME`` per file, with ``digest`` (``sha256:HEX`` where the hub lists one), ``total`` and
  ``completed`` bytes: at the file's start and end, and at most every PROGRESS_INTERVAL_S between
  (a file already cached comes once, whole);
- ``verifying sha256 digest``: each file fetched is hashed against its digest (pull.verify);
- ``writing manifest``: the model is resolved from the cache as the engine will resolve it (every file it loads
  in one snapshot, which huggingface_hub wrote with each file);
- ``success``.

A failure once started ends the stream with ``{"error": ...}``; a reply that does not stream is that error, 404
where the hub has no such model, revision or file, else 500, as Ollama answers a failed pull. The daemon does
not switch to the model pulled (Ollama's pull loads nothing either): `trayllm use` does.

A client that hangs up stops the download: the progress callback raises PullCancelled inside huggingface_hub's
download loop at its next chunk (10 MB), and huggingface_hub deletes its temporary file; the files finished stay
in the cache, so the next pull fetches only the rest. Over Xet (the hub's own transport for large files, where
hf_xet is installed) the callback runs in hf_xet's thread and may not stop it: the pull then stops at the end
of that file. The thread is a daemon thread: a daemon stopping mid-pull leaves a temporary file behind.

The daemon runs with huggingface_hub's offline switch on (trayllm.engine), so that loading a model never waits
on a hub. A pull turns it off while it talks to the hub (process-wide: one pull at a time, and the engine only
loads local files), unless the user's own environment set HF_HUB_OFFLINE; then the pull fails saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from trayllm import engine
from trayllm.config import Settings
from trayllm.daemon.edge import json_object
from trayllm.daemon.generation import validated, wait_disconnect
from trayllm.daemon.ollama import NDJSON
from trayllm.daemon.ollama_info import refuser
from trayllm.errors import Conflict, HubError, HubNotFound, ModelNotFound, RequestError, TrayllmError
from trayllm.hub import hub_cache_dir, resolve_cached
from trayllm.ollama_api import ProgressResponse, PullRequest
from trayllm.ollama_names import PullTarget, pull_target
from trayllm.ollama_rules import PULL_OFF
from trayllm.pull import PullFile, PullPlan, check_disk, download, hub_endpoint, list_repo, plan_pull, verify

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.25  # a file's progress objects come at most this often (Ollama's clients redraw on each)


class PullCancelled(Exception):
    """The client hung up: raised from the progress callback, inside the download, to stop it."""


def file_progress(file: PullFile, completed: int) -> ProgressResponse:
    """A file's progress object. Its ``digest`` is Ollama's ``sha256:HEX`` where the repo's listing gives one (LFS
    files: the weights) and absent otherwise: clients key their bars on it and cut its hex out by position, so
    it is that or nothing; a small file without one shows as its status line."""
    digest = f"sha256:{file.sha256}" if file.sha256 else None
    return ProgressResponse(status=f"pulling {file.name}", digest=digest, total=file.size, completed=completed)


class _Reporter:
    """The pull's PullProgress: Ollama's progress objects for each file, and the check that stops a pull whose
    client has gone, at each file and each chunk."""

    def __init__(self, emit: Callable[[ProgressResponse], None], cancelled: threading.Event) -> None:
        self._emit = emit
        self._cancelled = cancelled
        self._file: PullFile | None = None
        self._done = 0
        self._sent = 0.0

    def begin(self, plan: PullPlan) -> None:
        for file in plan.files:
            if file.cached:
                self._emit(file_progress(file, file.size))

    def file_started(self, file: PullFile) -> None:
        self.check()
        self._file, self._done = file, 0
        self._send()

    def advance(self, nbytes: int) -> None:
        self.check()
        self._done += nbytes
        if time.monotonic() - self._sent >= PROGRESS_INTERVAL_S:
            self._send()

    def file_done(self, file: PullFile) -> None:
        self._done = file.size
        self._send()

    def check(self) -> None:
        if self._cancelled.is_set():
            raise PullCancelled

    def _send(self) -> None:
        assert self._file is not None
        self._sent = time.monotonic()
        self._emit(file_progress(self._file, max(0, min(self._done, self._file.size))))


@contextlib.contextmanager
def hub_reachable() -> Iterator[None]:
    """huggingface_hub's offline switch off for the block, unless the user's environment turned it on."""
    from huggingface_hub import constants

    if engine.HUB_OFFLINE_BY_USER:
        yield  # the download fails with pull.hub_errors' line naming HF_HUB_OFFLINE
        return
    saved, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


class _Pull:
    """One pull, run by ``run`` in a worker thread. Its lines reach the event loop through ``lines`` (when the
    reply streams; None ends them), and how it ended through ``ended`` (None: success, or the client left)."""

    def __init__(self, target: PullTarget, stream: bool, loop: asyncio.AbstractEventLoop) -> None:
        self.target = target
        self.loop = loop
        self.lines: asyncio.Queue[str | None] | None = asyncio.Queue() if stream else None
        self.ended: asyncio.Future[TrayllmError | None] = loop.create_future()
        self.cancelled = threading.Event()

    def run(self, busy: threading.Lock) -> None:
        error: TrayllmError | None = None
        try:
            self._pull()
        except PullCancelled:
            log.info("pull of %s stopped: its client went away; the files finished are kept", self.target.hub_id)
        except TrayllmError as exc:
            error = exc
        except OSError as exc:  # writing into the cache (a full disk, permissions)
            error = HubError(f"writing into the Hugging Face cache ({hub_cache_dir()}) failed: {exc}")
        except Exception as exc:  # anything else huggingface_hub raises: the client still gets its line
            log.exception("pull of %s failed", self.target.hub_id)
            error = HubError(f"the pull failed: {type(exc).__name__}: {exc}")
        finally:
            busy.release()
        if error is not None:
            log.warning("pull of %s failed: %s", self.target.hub_id, error.message)
        self._on_loop(self._finish, error)

    def _pull(self) -> None:
        reporter = _Reporter(self._emit, self.cancelled)
        self._emit(ProgressResponse(status="pulling manifest"))
        endpoint, cache_dir = hub_endpoint(), hub_cache_dir()
        with hub_reachable():
            listing = list_repo(self.target.hub_id, endpoint)
            hub_id = self.target.choose(listing.sizes)
            plan = plan_pull(hub_id, endpoint, cache_dir, listing)
            check_disk(plan, cache_dir)
            download(plan, endpoint, cache_dir, reporter)
        self._emit(ProgressResponse(status="verifying sha256 digest"))
        verify(plan, cache_dir, before=lambda _: reporter.check())
        self._emit(ProgressResponse(status="writing manifest"))
        resolve_cached(hub_id, cache_dir)
        log.info("pulled %s into %s", hub_id, cache_dir)
        self._emit(ProgressResponse(status="success"))

    async def stream(self) -> AsyncIterator[str]:
        assert self.lines is not None
        try:
            while (line := await self.lines.get()) is not None:
                yield line
        finally:
            self.cancelled.set()  # nothing once the pull has ended; stops it when the client went away

    async def whole(self, request: Request) -> Response:
        """The reply that does not stream: success or the error, once the pull ends (stopped if the client
        hangs up first)."""
        gone = asyncio.ensure_future(wait_disconnect(request))
        either: set[asyncio.Future[Any]] = {self.ended, gone}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not self.ended.done():
            self.cancelled.set()
            return Response(status_code=204)  # no one is there to read it
        error = self.ended.result()
        if error is None:
            return JSONResponse(ProgressResponse(status="success").model_dump(exclude_none=True))
        raise ModelNotFound(error.message) if isinstance(error, HubNotFound) else RequestError(error.message)

    def _emit(self, progress: ProgressResponse) -> None:
        """From the worker thread: one line for the reply, if it streams."""
        if self.lines is not None:
            self._on_loop(self.lines.put_nowait, progress.model_dump_json(exclude_none=True) + "\n")

    def _finish(self, error: TrayllmError | None) -> None:
        """On the event loop, after every line the thread emitted: the error's line, the end of the lines."""
        if self.lines is not None:
            if error is not None:
                self.lines.put_nowait(json.dumps({"error": error.message}) + "\n")
            self.lines.put_nowait(None)
        self.ended.set_result(error)

    def _on_loop(self, call: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the daemon is stopping
            self.loop.call_soon_threadsafe(call, *args)


class OllamaPull:
    """POST /api/pull, or its refusal naming ``api_pull`` where that setting turns it off."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._busy = threading.Lock()  # held by the pull running, from its start to its thread's end
        self._running = ""  # the hub id it pulls, for the 409's message

    def routes(self) -> list[Route]:
        if not self.settings.api_pull:
            return [Route(PULL_OFF.path, refuser(PULL_OFF), methods=list(PULL_OFF.methods))]
        return [Route("/api/pull", self.pull, methods=["POST"])]

    async def pull(self, request: Request) -> Response:
        body = validated(PullRequest, json_object(await request.body(), max_depth=self.settings.max_json_depth))
        target = pull_target(body.wanted)
        if not self._busy.acquire(blocking=False):
            raise Conflict(f"the daemon pulls one model at a time and is pulling {self._running}: try again after it")
        self._running = str(target.hub_id)
        job = _Pull(target, body.streams, asyncio.get_running_loop())
        try:
            threading.Thread(target=job.run, args=(self._busy,), name="trayllm-pull", daemon=True).start()
        except BaseException:
            self._busy.release()
            raise
        if body.streams:
            return StreamingResponse(job.stream(), media_type=NDJSON)
        return await job.whole(request)
