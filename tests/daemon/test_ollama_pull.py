"""POST /api/pull, and /api/tags and /api/show over what it pulled (daemon/ollama_pull.py, daemon/ollama_info.py).

The daemon is its real app on a FakeEngine in this process (tests/inprocess_daemon.py); the hub is the stand-in
on loopback (tests/hub_standin.py), HF_ENDPOINT pointing at it and HF_HUB_CACHE at the test's own directory, so
nothing touches the network. Clients are the ``ollama`` library and, where the wire is the point, httpx.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import ollama
import pytest
from fake_engine import FAKE_INFO
from hub_standin import COMMIT, HubStandin, running
from inprocess_daemon import InProcessDaemon
from waiting import wait_for

from trayllm import engine
from trayllm.ollama_rules import PULL_OFF

MODEL = FAKE_INFO.name
WEIGHTS_FLOATS = 3 << 20  # 12 MiB of float32: over huggingface_hub's 10 MB chunk, so a download has two


def safetensors(floats: int) -> bytes:
    """A safetensors file of one float32 tensor, random: the catalog reads its header, a pull its bytes."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [floats], "data_offsets": [0, 4 * floats]}}).encode()
    return struct.pack("<Q", len(header)) + header + os.urandom(4 * floats)


def gguf(architecture: str, elements: int) -> bytes:
    """The header of a GGUF file (version 3): its architecture and one tensor of ``elements``."""

    def text(value: str) -> bytes:
        return struct.pack("<Q", len(value)) + value.encode()

    metadata = text("general.architecture") + struct.pack("<I", 8) + text(architecture)
    tensor = text("w") + struct.pack("<IQIQ", 1, elements, 0, 0)
    return b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + metadata + tensor


WEIGHTS = safetensors(WEIGHTS_FLOATS)
TINY: dict[str, bytes] = {
    "config.json": b'{"model_type": "llama", "torch_dtype": "float32"}',
    "tokenizer.json": b'{"version": "1.0"}',
    "model.safetensors": WEIGHTS,
    "README.md": b"# tiny",
}
TINY_FILES = ["config.json", "model.safetensors", "tokenizer.json"]  # what the engine loads: no README


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandin]:
    """The stand-in hub, and this process's environment pointed at it, with its cache in the test's directory."""
    standin = HubStandin(
        repos={
            "org/tiny": dict(TINY),
            "org/ggufs": {
                "m.Q4_K_M.gguf": gguf("qwen2", 4000),
                "m.Q8_0.gguf": gguf("qwen2", 4000),
                "README.md": b"",
            },
        }
    )
    with running(standin):
        monkeypatch.setenv("HF_ENDPOINT", standin.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        monkeypatch.delenv("HF_TOKEN", raising=False)
        monkeypatch.delenv("OLLAMA_HOST", raising=False)
        monkeypatch.setattr(engine, "HUB_OFFLINE_BY_USER", False)  # whatever the developer's shell says
        yield standin


def snapshot(tmp_path: Path, repo: str) -> Path:
    return tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / COMMIT


def client_of(daemon: InProcessDaemon) -> ollama.Client:
    return ollama.Client(host="http://trayllm", timeout=60, transport=httpx.HTTPTransport(uds=str(daemon.socket)))


def lines_of(daemon: InProcessDaemon, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """The status and the NDJSON objects of a POST /api/pull."""
    with daemon.client(timeout=60) as raw:
        response = raw.post("/api/pull", json=body)
    return response.status_code, [json.loads(line) for line in response.text.splitlines()]


def pull_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "trayllm-pull"]


def test_the_library_streams_ollamas_progress_then_tags_and_show_list_the_model(
    fake_engine_daemon: InProcessDaemon, hub: HubStandin, tmp_path: Path
) -> None:
    client = client_of(fake_engine_daemon)
    parts = list(client.pull("org/tiny", stream=True))

    statuses = [part.status for part in parts]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    by_file: dict[str, list[Any]] = {}
    for part in parts[1:-3]:
        by_file.setdefault(part.status or "", []).append(part)
    assert sorted(by_file) == [f"pulling {name}" for name in TINY_FILES]
    for name in TINY_FILES:
        seen = by_file[f"pulling {name}"]
        size = len(TINY[name])
        assert {part.total for part in seen} == {size}
        completed = [part.completed for part in seen]
        assert completed[0] == 0 and completed[-1] == size and completed == sorted(completed)
    weights = by_file["pulling model.safetensors"]
    assert {part.digest for part in weights} == {f"sha256:{hashlib.sha256(WEIGHTS).hexdigest()}"}
    assert len(weights) <= 4  # its start, at most one per chunk of 10 MB, its end: a bounded stream
    assert {part.digest for part in by_file["pulling config.json"]} == {None}  # no sha256 listed: none

    assert sorted(p.name for p in snapshot(tmp_path, "org/tiny").iterdir()) == TINY_FILES
    assert (snapshot(tmp_path, "org/tiny") / "model.safetensors").read_bytes() == WEIGHTS

    listed = client.list().models
    assert [model.model for model in listed][0] == f"{MODEL}:latest"  # the served one first
    [tiny] = [model for model in listed if model.model == "org/tiny:latest"]
    assert tiny.size == len(WEIGHTS) and tiny.details is not None
    assert (tiny.details.format, tiny.details.family, tiny.details.parameter_size) == ("safetensors", "llama", "3M")
    assert tiny.details.quantization_level == "F32"
    shown = client.show("org/tiny")
    assert shown.modelinfo == {"general.architecture": "llama", "general.parameter_count": WEIGHTS_FLOATS}
    assert [model.model for model in client.ps().models] == [f"{MODEL}:latest"]  # pulled is not loaded

    with pytest.raises(ollama.ResponseError) as not_served:  # the daemon does not switch models for a request
        client.chat(model="org/tiny", messages=[{"role": "user", "content": "hi"}])
    assert not_served.value.status_code == 404 and "`trayllm use NAME`" in not_served.value.error


def test_without_streaming_one_success_and_a_quantization_tag_picks_the_gguf(
    fake_engine_daemon: InProcessDaemon, hub: HubStandin, tmp_path: Path
) -> None:
    client = client_of(fake_engine_daemon)
    assert client.pull("hf.co/org/ggufs:q8_0", stream=False).status == "success"
    assert [p.name for p in snapshot(tmp_path, "org/ggufs").iterdir()] == ["m.Q8_0.gguf"]
    status, lines = lines_of(fake_engine_daemon, {"name": "huggingface.co/org/ggufs", "stream": False})
    assert (status, lines) == (200, [{"status": "success"}])  # no tag: Q4_K_M, as Ollama picks
    assert sorted(p.name for p in snapshot(tmp_path, "org/ggufs").iterdir()) == ["m.Q4_K_M.gguf", "m.Q8_0.gguf"]

    names = [model.model for model in client.list().models]
    assert {"org/ggufs:m.Q4_K_M.gguf", "org/ggufs:m.Q8_0.gguf"} <= set(names)
    shown = client.show("org/ggufs:m.Q8_0.gguf")
    assert shown.details is not None and (shown.details.format, shown.details.quantization_level) == ("gguf", "Q8_0")
    assert shown.modelinfo == {"general.architecture": "qwen2", "general.parameter_count": 4000}
    with pytest.raises(ollama.ResponseError) as unknown:
        client.show("org/nothing")
    assert unknown.value.status_code == 404


def test_a_file_already_cached_is_reported_whole_and_not_fetched_again(
    fake_engine_daemon: InProcessDaemon, hub: HubStandin
) -> None:
    lines_of(fake_engine_daemon, {"model": "org/tiny"})
    _, again = lines_of(fake_engine_daemon, {"model": "org/tiny"})
    files = [line for line in again if line["status"].startswith("pulling ") and line["status"] != "pulling manifest"]
    assert sorted(line["status"] for line in files) == [f"pulling {name}" for name in TINY_FILES]
    assert all(line["completed"] == line["total"] for line in files)
    assert again[-1] == {"status": "success"} and len(hub.gets("model.safetensors")) == 1


def test_what_the_hub_lacks_is_an_error_line_or_a_404(fake_engine_daemon: InProcessDaemon, hub: HubStandin) -> None:
    client = client_of(fake_engine_daemon)
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.pull("org/nothing", stream=True))
    assert streamed.value.error.startswith(f"no model org/nothing on {hub.url}")
    status, lines = lines_of(fake_engine_daemon, {"model": "org/nothing"})
    assert status == 200 and lines[0] == {"status": "pulling manifest"} and set(lines[-1]) == {"error"}
    with pytest.raises(ollama.ResponseError) as whole:
        client.pull("hf.co/org/ggufs:IQ2_XS")
    assert whole.value.status_code == 404
    assert whole.value.error == "org/ggufs has no GGUF file of quantization IQ2_XS; it has Q4_K_M, Q8_0"
    assert "trayllm use" not in whole.value.error  # the hint is for a request naming a model not served


def test_an_unreachable_hub_ends_the_stream_with_an_error(
    fake_engine_daemon: InProcessDaemon, hub: HubStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    status, lines = lines_of(fake_engine_daemon, {"model": "org/tiny"})
    assert status == 200 and lines[0] == {"status": "pulling manifest"}
    assert lines[-1] == {
        "error": f"cannot reach the model hub at {endpoint}; check the network connection "
        "(and HF_ENDPOINT, if it points at a mirror) (ConnectError)"
    }
    status, lines = lines_of(fake_engine_daemon, {"model": "org/tiny", "stream": False})
    assert status == 500 and lines[0]["error"].startswith("cannot reach the model hub")


def test_a_full_disk_or_the_users_offline_switch_stops_a_pull_before_any_file(
    fake_engine_daemon: InProcessDaemon, hub: HubStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trayllm.pull.shutil.disk_usage", lambda path: SimpleNamespace(free=1000))
    _, full = lines_of(fake_engine_daemon, {"model": "org/tiny"})
    assert "needs 12.6 MB" in full[-1]["error"] and "which has 1.0 kB free" in full[-1]["error"]
    monkeypatch.undo()
    monkeypatch.setattr(engine, "HUB_OFFLINE_BY_USER", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    _, offline = lines_of(fake_engine_daemon, {"model": "org/tiny"})
    assert offline[-1] == {"error": "HF_HUB_OFFLINE is set, which forbids downloads: unset it to pull"}
    assert not [r for r in hub.requests if "/resolve/" in r.path]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("llama3.2", "is an Ollama library name, which names no Hugging Face model"),
        ("qwen2.5:7b", "is an Ollama library name"),
        ("registry.ollama.ai/library/llama3:latest", "is no Hugging Face model name"),
    ],
)
def test_a_name_with_no_hub_id_is_a_400_saying_which_to_use(
    fake_engine_daemon: InProcessDaemon, hub: HubStandin, name: str, says: str
) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        list(client_of(fake_engine_daemon).pull(name, stream=True))
    assert caught.value.status_code == 400 and says in caught.value.error and "org/name" in caught.value.error
    assert not hub.requests


def test_api_pull_false_refuses_the_route_naming_the_setting(
    start_fake_engine_daemon: Callable[..., InProcessDaemon], hub: HubStandin
) -> None:
    daemon = start_fake_engine_daemon(api_pull=False)
    status, [line] = lines_of(daemon, {"model": "org/tiny"})
    assert status == 400 and line == {"error": f"POST /api/pull: {PULL_OFF.message}"} and "api_pull" in line["error"]
    assert not hub.requests


def test_one_pull_at_a_time_and_a_client_that_leaves_stops_its_download(
    fake_engine_daemon: InProcessDaemon, hub: HubStandin, tmp_path: Path
) -> None:
    hub.stall["model.safetensors"] = 1 << 20  # the weights come last: the others are in the cache by then
    with (
        fake_engine_daemon.client(timeout=60) as first,
        first.stream("POST", "/api/pull", json={"model": "org/tiny"}) as response,
    ):
        for line in response.iter_lines():
            if json.loads(line)["status"] == "pulling model.safetensors":
                break
        assert hub.stalled.wait(timeout=30)
        status, [refused] = lines_of(fake_engine_daemon, {"model": "hf.co/org/ggufs:Q8_0"})
        assert status == 409 and refused["error"].startswith("the daemon pulls one model at a time")
        with fake_engine_daemon.client() as other:  # the download runs beside the event loop, not on it
            reply = other.post("/api/generate", json={"model": MODEL, "prompt": "still here", "stream": False})
        assert reply.json()["response"] == "still here"
    hub.release.set()  # the stand-in drops that download: huggingface_hub resumes it, and the pull stops there
    wait_for(lambda: not pull_threads(), timeout=30)

    stopped = snapshot(tmp_path, "org/tiny")
    assert sorted(p.name for p in stopped.iterdir()) == ["config.json", "tokenizer.json"]  # the finished files
    assert not list((tmp_path / "hub").rglob("*.incomplete"))  # nothing half-written left behind
    status, lines = lines_of(fake_engine_daemon, {"model": "org/tiny", "stream": False})
    assert (status, lines) == (200, [{"status": "success"}])
    assert len(hub.gets("config.json")) == 1 and "Range" not in hub.gets("model.safetensors")[-1].headers
    assert (stopped / "model.safetensors").read_bytes() == WEIGHTS
