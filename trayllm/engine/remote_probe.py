"""What a remote engine asks its upstream besides completions: which model it serves, whether it answers at all,
and how full its KV cache is (vLLM's Prometheus ``/metrics``).

Kept apart from the request path (trayllm/engine/remote.py) so each can be read on its own: the probe runs every
``probe_interval_s`` on the engine's loop, so the daemon learns the upstream is down before a request fails, and
announces a change of reachability once (an event for /v1/events, and the alert callback the daemon wires).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from trayllm.engine.remote_wire import kv_cache_usage, metrics_url
from trayllm.engine.upstream import Upstream

log = logging.getLogger(__name__)

METRICS_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class UpstreamModel:
    """The model the upstream lists: its id and, where the server says, its context length (0 otherwise)."""

    id: str
    context_length: int = 0


class UpstreamProbe:
    """Reachability and model discovery for one upstream; ``emit`` publishes state changes (engine._emit)."""

    def __init__(self, upstream: Upstream, base_url: str, emit: Callable[..., None]) -> None:
        self.upstream = upstream
        self.base_url = base_url
        self._emit = emit
        self.on_reachability: Callable[[str, str, bool, str], None] | None = None  # name, url, up?, why
        self.reachable: bool | None = None  # None until the first probe or request says
        self._lock = threading.Lock()

    async def model(self, client: httpx.AsyncClient) -> UpstreamModel | str:
        """The wanted (or first) model the upstream lists, or why there is none (unreachable, not listed)."""
        try:
            response = await client.get(f"{self.base_url}/models")
        except httpx.HTTPError as exc:
            why = f"cannot reach {self.base_url}: {type(exc).__name__}: {exc}"
            self.set_reachable(False, why)
            return why
        if response.status_code >= 400:
            why = f"{self.base_url}/models answered HTTP {response.status_code}"
            self.set_reachable(False, why)
            return why
        self.set_reachable(True, f"{self.base_url} answers again")
        try:
            cards = [card for card in response.json().get("data", []) if isinstance(card, dict)]
        except ValueError:
            cards = []
        wanted = self.upstream.model
        card = next((c for c in cards if not wanted or c.get("id") == wanted), None)
        if card is None:
            return f"{self.base_url} lists no model" + (f" {wanted!r}" if wanted else "")
        length = card.get("max_model_len") or card.get("context_length") or 0
        return UpstreamModel(str(card["id"]), length if isinstance(length, int) else 0)

    async def kv_cache_usage(self, client: httpx.AsyncClient) -> float | None:
        """The upstream's KV-cache usage now (0..1); None where the server exports none (not vLLM, no /metrics)."""
        try:
            response = await client.get(metrics_url(self.base_url), timeout=METRICS_TIMEOUT_S)
        except httpx.HTTPError:
            return None
        return kv_cache_usage(response.text) if response.status_code == 200 else None

    def set_reachable(self, reachable: bool, reason: str) -> None:
        """Record what the last probe or request found; announce a change (not a first 'all is well')."""
        with self._lock:
            was, self.reachable = self.reachable, reachable
        if was == reachable or (was is None and reachable):
            return
        log.log(logging.INFO if reachable else logging.WARNING, reason, extra={"url": self.base_url})
        self._emit("engine.reachable" if reachable else "engine.unreachable", engine=self.upstream.name, reason=reason)
        if self.on_reachability is not None:
            try:
                self.on_reachability(self.upstream.name, self.base_url, reachable, reason)
            except Exception:
                log.exception("reachability callback failed")
