"""What the tray shows and says, as plain Python: daemon events and status in; icon state, menu, tooltip and
notifications out. No toolkit here, so every sequence that matters is unit-tested without a screen.

Inputs: ``connected(hello)`` when the event stream opens (its snapshot), ``event(type, data, id)`` for each
event, ``status(DaemonStatus)`` from polling, ``disconnected()`` when the daemon cannot be reached, and
``tick()`` now and then (it releases a storm's summary), and ``catalog(models)``: the models on this machine,
which the menu's Model submenu lists (choosing one is the action ``use:<model setting>``).

Icon state, first match wins:

- ``unreachable``: no daemon answers;
- ``engine_down``: the daemon answers, but the remote engine it serves through does not
  (an ``engine.unreachable.<name>`` alert is firing);
- ``failing``: the model failed to load;
- ``starting``: loading, warming up or reloading;
- ``paused``: the user paused serving;
- ``failing``: an OOM alert or an error-budget burn alert is firing;
- ``degraded``: another SLO alert is firing;
- ``healthy`` otherwise.

Notifications:

- OOM, an unreachable engine: critical;
- an SLO alert firing or resolved: normal;
- daemon down, back or restarted: normal.

Each notification carries a ``key``. A notifier replaces the standing notification with the same key
instead of stacking a copy, so a resolved alert replaces its own firing notice. Alerts the tray has
already seen (by event id, also after a reconnect or a daemon restart) are not announced again.

**Storms:** once ``storm_limit`` notifications have gone out within ``storm_window_s``, further ones
are held back and counted. When the window allows again, ``tick`` sends one summary ("7 more alerts,
3 of them OOM"), critical if any held-back one was.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from trayllm.api_status import DaemonStatus

if TYPE_CHECKING:
    from trayllm.model_catalog import CatalogEntry

IconState = Literal["starting", "healthy", "degraded", "failing", "paused", "unreachable", "engine_down"]
Urgency = Literal[0, 1, 2]  # freedesktop: low, normal, critical

LOADING_STATES = frozenset({"loading", "warming", "reloading"})
USE = "use:"  # + the `model` setting's value: the Model menu's actions
TITLES = {
    "slo.first_token_latency_p99": "first-token latency P99",
    "slo.peak_vram": "peak VRAM",
    "burn.error_rate.fast_burn": "error budget burning fast",
    "burn.error_rate.slow_burn": "error budget burning",
    "oom": "GPU out of memory",
}
ENGINE_UNREACHABLE = "engine.unreachable."  # + the engine's name (trayllm.slo.monitor.ENGINE_UNREACHABLE)


@dataclass(frozen=True)
class Notification:
    key: str  # a standing notification with the same key is replaced
    summary: str
    body: str
    urgency: Urgency


@dataclass(frozen=True)
class MenuItem:
    action: str  # what activating it does: open-chat, open-dashboards, pause, resume, reload, start, quit,
    # use:<model setting> (switch models, as `trayllm use`), ""
    label: str
    enabled: bool = True
    checked: bool | None = None  # a toggle's state; None for plain items
    submenu: tuple[MenuItem, ...] = ()  # a submenu's items (the Model menu)


SEPARATOR = MenuItem("", "-", enabled=False)


@dataclass(frozen=True)
class TrayView:
    state: IconState
    tooltip: str
    menu: tuple[MenuItem, ...]


def _title(key: str) -> str:
    if key.startswith(ENGINE_UNREACHABLE):
        return f"engine {key.removeprefix(ENGINE_UNREACHABLE)} unreachable"
    return TITLES.get(key, key.split(".", 1)[-1].replace("_", " "))


class TrayModel:
    def __init__(
        self,
        *,
        kibana_url: str = "",
        storm_limit: int = 5,
        storm_window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kibana_url = kibana_url
        self.storm_limit = storm_limit
        self.storm_window_s = storm_window_s
        self.clock = clock
        self.reachable = False
        self.ever_connected = False
        self.boot_id: str | None = None
        self.last_event_id: str | None = None
        self.daemon_state = "unknown"
        self.paused: str | None = None
        self.model: str | None = None
        self.error: str | None = None
        self.firing: dict[str, dict[str, Any]] = {}  # alert key -> its latest firing data
        self._seen_alert_ids: set[str] = set()
        self._status: DaemonStatus | None = None
        self._sent: deque[float] = deque()
        self._held: Counter[str] = Counter()  # alert key (or "daemon") -> held-back notifications
        self._held_critical = False
        self.models: tuple[CatalogEntry, ...] = ()  # what `trayllm models` lists, for the Model menu

    # -- inputs ----------------------------------------------------------------------------------

    def connected(self, hello: Mapping[str, Any]) -> list[Notification]:
        """The event stream opened; ``hello`` is the daemon's snapshot."""
        out: list[Notification] = []
        boot = hello.get("boot_id")
        if self.ever_connected and not self.reachable:
            restarted = self.boot_id is not None and boot != self.boot_id
            out.append(
                Notification(
                    "daemon",
                    "trayllm daemon restarted" if restarted else "trayllm daemon is back",
                    f"{hello.get('model') or 'no model'} · {hello.get('state')}",
                    1,
                )
            )
        elif self.ever_connected and boot != self.boot_id:  # a restart between two polls: we never saw it down
            out.append(Notification("daemon", "trayllm daemon restarted", f"{hello.get('model') or 'no model'}", 1))
        self.reachable, self.ever_connected, self.boot_id = True, True, boot
        self.daemon_state = str(hello.get("state", "unknown"))
        self.paused = hello.get("paused")
        self.model = hello.get("model") or self.model
        current = {a["key"]: a for a in hello.get("alerts", []) if isinstance(a, dict) and "key" in a}
        self.firing = {}
        for alert in current.values():
            out.extend(self._alert("firing", alert))
        return self._rate_limited(out)

    def disconnected(self) -> list[Notification]:
        """The daemon cannot be reached (the stream broke, or connecting failed)."""
        was = self.reachable
        self.reachable = False
        if was:
            return self._rate_limited(
                [
                    Notification(
                        "daemon", "trayllm daemon is down", "Requests cannot be served until it is started again.", 1
                    )
                ]
            )
        return []

    def event(self, kind: str, data: Mapping[str, Any], event_id: str | None = None) -> list[Notification]:
        """One /v1/events event (``hello`` goes to ``connected``)."""
        if event_id is not None:
            self.last_event_id = event_id
        out: list[Notification] = []
        if kind in ("alert.firing", "alert.resolved"):
            out = self._alert(kind.split(".")[1], {**data, "id": data.get("id", event_id)})
        elif kind == "serving.paused":
            self.paused = str(data.get("reason") or "paused")
        elif kind == "serving.resumed":
            self.paused = None
        elif kind == "model.reloading":
            self.daemon_state = "reloading"
        elif kind == "model.loaded":
            self.daemon_state, self.model, self.error = "ready", data.get("model") or self.model, None
        elif kind == "model.failed":
            self.daemon_state, self.error = "failed", str(data.get("error") or "")
            out = [Notification("daemon", "trayllm: the model failed to load", self.error, 2)]
        elif kind == "daemon.shutting_down":
            self.daemon_state = "draining"
        return self._rate_limited(out)

    def status(self, status: DaemonStatus) -> None:
        """A /v1/status poll: the tooltip's numbers, and the truth about state and pause."""
        self._status = status
        self.daemon_state, self.paused, self.error = status.state, status.paused, status.error
        if status.model is not None:
            self.model = status.model.name

    def catalog(self, models: Sequence[CatalogEntry]) -> None:
        """The models on this machine (trayllm.model_catalog), the serving one marked: the Model menu."""
        self.models = tuple(models)

    def tick(self) -> list[Notification]:
        """Release the summary of held-back notifications once the storm window allows it."""
        if not self._held or not self._room():
            return []
        total = sum(self._held.values())
        ooms = self._held.get("oom", 0)
        body = ", ".join(f"{_title(k)} ×{n}" for k, n in self._held.most_common())
        summary = f"trayllm: {total} more alert{'s' if total != 1 else ''}" + (f", {ooms} of them OOM" if ooms else "")
        note = Notification("storm", summary, body, 2 if self._held_critical else 1)
        self._held.clear()
        self._held_critical = False
        self._sent.append(self.clock())
        return [note]

    # -- outputs ---------------------------------------------------------------------------------

    @property
    def icon_state(self) -> IconState:
        if not self.reachable:
            return "unreachable"
        if any(k.startswith(ENGINE_UNREACHABLE) for k in self.firing):
            return "engine_down"
        if self.daemon_state == "failed":
            return "failing"
        if self.daemon_state in LOADING_STATES:
            return "starting"
        if self.paused:
            return "paused"
        if any(k == "oom" or k.startswith("burn.") for k in self.firing):
            return "failing"
        if self.firing:
            return "degraded"
        return "healthy"

    def status_lines(self) -> list[str]:
        if not self.reachable:
            return ["Daemon not running"]
        lines = [
            f"{self.model or 'no model'} · {self.daemon_state}" + (f" · paused: {self.paused}" if self.paused else "")
        ]
        s = self._status
        if s is not None and s.model is not None and s.model.engine_url:
            lines.append(f"engine {s.model.engine}: {s.model.version} at {s.model.engine_url}")
        elif s is not None and s.model is not None:
            lines.append(f"engine {s.model.engine}: {s.model.device} · {s.model.dtype} · {s.model.quantization}")
        if s is not None and len(s.engines) > 1:
            lines.extend(f"engine {engine.line()}" for engine in s.engines)
        if s is not None:
            parts = []
            if s.vram is not None and s.vram.total_bytes:
                parts.append(f"VRAM {100 * s.vram.used_bytes / s.vram.total_bytes:.0f}%")
            p99 = next((r.value for r in s.slo if r.objective == "first_token_latency_p99"), None)
            parts.append(f"P99 first token {p99:.2f} s" if p99 is not None else "P99 first token -")
            parts.append(f"queue {s.queue.depth}/{s.queue.capacity}")
            lines.append(" · ".join(parts))
        lines.extend(f"{'⚠' if a.get('severity') == 'critical' else '•'} {_title(k)}" for k, a in self.firing.items())
        return lines

    def view(self) -> TrayView:
        state = self.icon_state
        ready = self.reachable and self.daemon_state == "ready"
        menu = [MenuItem("open-chat", "Open chat", enabled=self.reachable)]
        menu += [MenuItem("", line, enabled=False) for line in self.status_lines()]
        menu += [SEPARATOR, MenuItem("open-dashboards", "Open dashboards", enabled=bool(self.kibana_url))]
        if self.reachable:
            menu.append(
                MenuItem(
                    "resume" if self.paused else "pause", "Pause serving", enabled=ready, checked=bool(self.paused)
                )
            )
            menu.append(MenuItem("reload", "Reload model", enabled=ready))
            if self.models:
                menu.append(self._model_menu(ready))
        else:
            menu.append(MenuItem("start", "Start daemon"))
        menu += [SEPARATOR, MenuItem("quit", "Quit")]
        tooltip = "\n".join([f"trayllm: {state}", *self.status_lines()])
        return TrayView(state, tooltip, tuple(menu))

    # -- internals -------------------------------------------------------------------------------

    def _model_menu(self, ready: bool) -> MenuItem:
        """One radio-like item per model (the serving one checked); choosing another switches to it."""
        items = tuple(
            MenuItem(
                USE + entry.model,
                entry.label,
                enabled=ready and entry.problem is None and not entry.serving,
                checked=entry.serving,
            )
            for entry in self.models
        )
        return MenuItem("", "Model", submenu=items)

    def _alert(self, state: str, data: Mapping[str, Any]) -> list[Notification]:
        key = str(data.get("key", "alert"))
        alert_id = data.get("id")
        if state == "firing":
            self.firing[key] = dict(data)
        else:
            self.firing.pop(key, None)
        if alert_id is not None:
            if alert_id in self._seen_alert_ids:
                return []
            self._seen_alert_ids.add(str(alert_id))
        message = str(data.get("message") or "")
        if state == "resolved":
            return [Notification(key, f"trayllm: {_title(key)} resolved", message, 1)]
        critical = data.get("severity") == "critical" or key == "oom"
        summary = f"trayllm: {_title(key)}" if critical else f"trayllm: SLO breached: {_title(key)}"
        return [Notification(key, summary, message, 2 if critical else 1)]

    def _room(self) -> bool:
        now = self.clock()
        while self._sent and now - self._sent[0] >= self.storm_window_s:
            self._sent.popleft()
        return len(self._sent) < self.storm_limit

    def _rate_limited(self, notes: list[Notification]) -> list[Notification]:
        out = []
        for note in notes:
            if self._room() and not self._held:
                self._sent.append(self.clock())
                out.append(note)
            else:
                self._held[note.key] += 1
                self._held_critical = self._held_critical or note.urgency == 2
        return out
