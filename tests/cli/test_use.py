"""`trayllm use` on a real in-process daemon (the real Engine and model, the daemon's own app): a switch serves the
new model from the next request on and is saved; a switch that cannot work is refused, or undone, with the old
model serving throughout and the config file untouched."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_runner import run
from daemons import MODEL_CACHE
from inprocess_daemon import InProcessDaemon, serve_engine
from waiting import wait_for

from trayllm.client import DaemonClient
from trayllm.config import config_file
from trayllm.errors import InvalidRequest

pytestmark = pytest.mark.slow


@pytest.fixture
def daemon(converted_model_dir: Path) -> Iterator[InProcessDaemon]:
    """A daemon serving the embedded GGUF (loaded from its converted copy in the shared cache)."""
    from trayllm.engine.engine import Engine

    with serve_engine(Engine, cache_dir=str(MODEL_CACHE), warmup=False, quantization="none") as served:
        assert served.engine.wait_ready(300), served.engine.error
        yield served


def served_version(daemon: InProcessDaemon) -> str:
    """Send one chat request; the model version its request record names."""
    with daemon.client(timeout=120) as client:
        reply = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        )
    assert reply.status_code == 200, reply.text
    wanted = reply.headers["x-request-id"]

    def record() -> dict | None:
        lines = daemon.records.read_text().splitlines() if daemon.records.exists() else []
        return next((doc for doc in map(json.loads, lines) if doc["event"]["id"] == wanted), None)

    found = wait_for(record)
    assert isinstance(found, dict)
    return str(found["llm"]["model"]["version"])


def test_use_switches_the_serving_model_and_saves_it(daemon: InProcessDaemon, converted_model_dir: Path):
    before = served_version(daemon)
    result = run("--socket", str(daemon.socket), "use", str(converted_model_dir))
    assert result.exit_code == 0, result.stderr
    info = daemon.engine.info
    assert info.source == str(converted_model_dir) and info.version != before
    assert result.stdout.startswith(f"now serving {info.name} (version {info.version})")
    assert "switching from smollm2-135m-instruct to" in result.stderr  # the progress, while it ran
    assert served_version(daemon) == info.version  # the very next request's record names the new version
    assert f'model = "{converted_model_dir}"' in config_file().read_text().splitlines()

    listed = json.loads(run("--socket", str(daemon.socket), "models", "--json").stdout)
    serving = [entry["id"] for entry in listed["models"] if entry["serving"]]
    assert serving == [str(converted_model_dir)] and listed["serving"]["version"] == info.version

    back = run("--socket", str(daemon.socket), "use", "smollm2-135m-instruct")  # the embedded one, by its id
    assert back.exit_code == 0, back.stderr
    assert daemon.engine.info.version == before and 'model = ""' in config_file().read_text().splitlines()


def test_a_switch_that_cannot_work_leaves_the_old_model_serving(
    daemon: InProcessDaemon, converted_model_dir: Path, tmp_path: Path
):
    before = served_version(daemon)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    shutil.copy(converted_model_dir / "tokenizer.json", broken)
    (broken / "model.safetensors").symlink_to(converted_model_dir / "model.safetensors")

    refused = run("--socket", str(daemon.socket), "use", str(tmp_path / "absent"))  # checked here first
    assert refused.exit_code == 1 and "is no model here" in refused.stderr
    with DaemonClient.from_settings(daemon.settings) as client, pytest.raises(InvalidRequest) as caught:
        client.reload(str(broken))  # the daemon's own check, before the old model stops
    assert "not valid JSON" in caught.value.message and "the current model keeps serving" in caught.value.message
    assert daemon.engine.state == "ready" and served_version(daemon) == before

    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))  # passes the check
    failed = run("--socket", str(daemon.socket), "use", str(broken))  # ... but not the load: undone
    assert failed.exit_code == 1
    assert f"the switch to {broken} failed" in failed.stderr and "the previous model serves again" in failed.stderr
    assert served_version(daemon) == before
    assert not config_file().exists()  # nothing saved by a switch that did not happen
