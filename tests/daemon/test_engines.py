"""Several engines in one daemon: a local one and a remote one (a second daemon on loopback TCP), built from
``[[engines]]`` specs by ``open_engines``. Requests route by ``model``, records and replies name the engine that
served, /v1/models and /v1/status list both, and the remote going down alerts while the local one serves on.

The local engine is the fake one (tests/fake_engine.py) in place of the model: what is tested is the routing
around it, which is the same for any engine on the ServingEngine interface."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_engine import FAKE_INFO, FakeEngine
from inprocess_daemon import InProcessDaemon, free_port, serve_engine
from waiting import wait_for

from trayllm import api_status
from trayllm.cli.render import format_status
from trayllm.config_engines import EngineSpec
from trayllm.daemon import engines as engines_module
from trayllm.daemon.engines import open_engines
from trayllm.errors import ConfigError

LOCAL_MODEL = FAKE_INFO.name
REMOTE_MODEL = "big-model"


def ask(client: httpx.Client, model: str | None, content: str = "hello there") -> httpx.Response:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": content}], "max_tokens": 8}
    if model is not None:
        body["model"] = model
    return client.post("/v1/chat/completions", json=body)


@pytest.fixture
def hybrid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InProcessDaemon, contextlib.ExitStack]]:
    """(the daemon serving "desk" (local, default) and "server" (remote), the stack whose close stops the upstream)."""
    monkeypatch.setattr(engines_module, "local_engine", FakeEngine)
    listen = f"127.0.0.1:{free_port()}"
    with contextlib.ExitStack() as upstream_stack:
        upstream = upstream_stack.enter_context(
            serve_engine(
                lambda s: FakeEngine(s, info=dataclasses.replace(FAKE_INFO, name=REMOTE_MODEL, version=REMOTE_MODEL)),
                tcp=True,
                listen=listen,
                state_dir=str(tmp_path / "upstream"),
                token_file=str(tmp_path / "upstream-token"),
            )
        )
        specs = [
            EngineSpec("desk"),
            EngineSpec("server", url=f"http://{listen}/v1", api_key_file=str(upstream.settings.token_path)),
        ]
        with serve_engine(lambda s: open_engines(s, specs), state_dir=str(tmp_path / "hybrid")) as daemon:
            wait_for(lambda: all(e["model"] for e in daemon.status()["engines"]))
            yield daemon, upstream_stack


def test_requests_route_by_model_and_each_record_and_reply_names_its_engine(
    hybrid: tuple[InProcessDaemon, contextlib.ExitStack],
) -> None:
    daemon, _ = hybrid
    remote_url = daemon.status()["engines"][1]["url"]
    with daemon.client() as client:
        local, remote, default = ask(client, LOCAL_MODEL), ask(client, REMOTE_MODEL), ask(client, None)
        unknown = ask(client, "no-such-model")
        models = client.get("/v1/models").json()["data"]
    assert [r.json()["model"] for r in (local, remote, default)] == [LOCAL_MODEL, REMOTE_MODEL, LOCAL_MODEL]
    assert [r.json()["timings"]["engine"] for r in (local, remote, default)] == ["desk", "server", "desk"]
    assert remote.json()["choices"][0]["message"]["content"] == "hello there"  # the upstream's fake echoes
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert [(m["id"], m["engine"]) for m in models] == [(LOCAL_MODEL, "desk"), (REMOTE_MODEL, "server")]
    served = [r for r in daemon.wait_records(4) if r["event"]["outcome"] == "success"]
    assert [(r["llm"]["engine"]["name"], r["llm"]["engine"].get("url")) for r in served] == [
        ("desk", None),
        ("server", remote_url),
        ("desk", None),
    ]


def test_status_lists_every_engine_and_pause_reaches_them_all(
    hybrid: tuple[InProcessDaemon, contextlib.ExitStack],
) -> None:
    daemon, _ = hybrid
    status = daemon.status()
    rows = status["engines"]
    assert [(e["name"], e["default"], e["state"], e["model"]) for e in rows] == [
        ("desk", True, "ready", LOCAL_MODEL),
        ("server", False, "ready", REMOTE_MODEL),
    ]
    shown = format_status(api_status.DaemonStatus.model_validate(status)).splitlines()
    assert [line.split(None, 1)[1] for line in shown if line.startswith("engines")] == [
        f"desk (default): {LOCAL_MODEL} · ready",
        f"server: {REMOTE_MODEL} · ready · at {rows[1]['url']}",
    ]
    with daemon.client() as client:
        client.post("/v1/pause", json={"reason": "lunch"})
        paused = [e["paused"] for e in daemon.status()["engines"]]
        refused = ask(client, REMOTE_MODEL)
        client.post("/v1/resume")
    assert paused == ["lunch", "lunch"] and refused.status_code == 503
    assert [e["paused"] for e in daemon.status()["engines"]] == [None, None]


def test_the_remote_going_down_alerts_while_the_local_engine_keeps_serving(
    hybrid: tuple[InProcessDaemon, contextlib.ExitStack],
) -> None:
    daemon, upstream_stack = hybrid
    upstream_stack.close()  # the server behind "server" stops
    with daemon.client() as client:
        down = ask(client, REMOTE_MODEL)
        alerts: Any = wait_for(lambda: client.get("/v1/status").json()["alerts"])
        local = ask(client, LOCAL_MODEL)
    assert down.status_code == 503 and down.json()["error"]["code"] == "engine_unreachable"
    assert [(a["key"], a["severity"]) for a in alerts] == [("engine.unreachable.server", "critical")]
    assert local.status_code == 200 and local.json()["timings"]["engine"] == "desk"
    assert [e["reachable"] for e in daemon.status()["engines"]] == [None, False]


def test_engine_url_and_engines_tables_together_are_refused(tmp_path: Path) -> None:
    from trayllm.config import Settings

    with pytest.raises(ConfigError, match="unset engine_url"):
        open_engines(Settings(engine_url="http://127.0.0.1:1/v1"), [EngineSpec("server", url="http://x/v1")])


def test_a_table_that_cannot_open_leaves_no_engine_of_the_others_running(tmp_path: Path) -> None:
    """A remote engine made before a local one whose model is missing is stopped (its event loop closed), not
    left for the garbage collector to find unclosed."""
    from trayllm.config import Settings
    from trayllm.errors import ModelLoadError

    specs = [EngineSpec("server", url="http://127.0.0.1:9/v1"), EngineSpec("desk", model=str(tmp_path / "none"))]
    made: list[Any] = []
    real = engines_module.RemoteEngine

    def remote(*args: Any, **kwargs: Any) -> Any:
        made.append(real(*args, **kwargs))
        return made[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engines_module, "RemoteEngine", remote)
        with pytest.raises(ModelLoadError, match="does not exist"):
            open_engines(Settings(), specs)
    assert len(made) == 1 and made[0]._loop.is_closed()
