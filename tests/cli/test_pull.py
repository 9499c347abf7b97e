"""`trayllm pull` against a stand-in of the hub's file API on loopback (tests/hub_standin.py), never the network.

Most tests run the real command in a child process with HF_ENDPOINT and HF_HOME in its environment, as a user
would (huggingface_hub reads both once, at import); the disk-space check runs in this process, to fake a full disk.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_runner import run
from hub_standin import COMMIT, HubStandin, running

TOKENIZER = b'{"version": "1.0", "model": {"type": "BPE"}}'
# random: what the bytes are does not matter to a pull, that they arrive whole does; over huggingface_hub's 10 MiB
# download chunk, the unit a dropped download resumes from
WEIGHTS = os.urandom(12 << 20)
ENGINE_FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def tiny_repo() -> dict[str, bytes | Path]:
    """A repo as people publish them: the engine's files beside other formats, a GGUF, docs and sub-folders."""
    return {
        "config.json": b'{"model_type": "llama"}',
        "generation_config.json": b'{"eos_token_id": 2}',
        "tokenizer.json": TOKENIZER,
        "tokenizer_config.json": b'{"chat_template": "{{ messages }}"}',
        "model.safetensors": WEIGHTS,
        "pytorch_model.bin": b"pickled weights, the same again",
        "model.onnx": b"onnx graph",
        "onnx/model_quantized.onnx": b"another onnx graph",
        "tiny-Q4_K_M.gguf": b"GGUF quantized copy",
        "README.md": b"# tiny",
        ".gitattributes": b"*.safetensors filter=lfs",
    }


@pytest.fixture
def hub() -> Iterator[HubStandin]:
    standin = HubStandin(
        repos={
            "org/tiny": tiny_repo(),
            "org/ggufs": {"m.Q4_K_M.gguf": b"GGUF four bits", "m.Q8_0.gguf": b"GGUF eight bits", "README.md": b""},
        }
    )
    with running(standin):
        yield standin


def snapshot(hf_home: Path, repo: str) -> Path:
    return hf_home / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / COMMIT


def pull_env(hf_home: Path, endpoint: str) -> dict[str, str]:
    """This process's environment with the hub pointed at ``endpoint``, its cache at ``hf_home`` and no token."""
    dropped = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    return {**env, "HF_HOME": str(hf_home), "HF_ENDPOINT": endpoint}


def start_pull(hf_home: Path, endpoint: str, model_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trayllm", "pull", model_id],
        env=pull_env(hf_home, endpoint),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def pull(hf_home: Path, endpoint: str, model_id: str) -> subprocess.CompletedProcess[str]:
    process = start_pull(hf_home, endpoint, model_id)
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pull_fetches_only_the_files_the_engine_loads_and_shows_progress(hub: HubStandin, tmp_path: Path):
    result = pull(tmp_path / "hf", hub.url, "org/tiny")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in snapshot(tmp_path / "hf", "org/tiny").iterdir()) == ENGINE_FILES
    fetched = sorted(r.path.rsplit("/", 1)[1] for r in hub.requests if r.method == "GET" and "/resolve/" in r.path)
    assert fetched == ENGINE_FILES  # no .bin, ONNX, GGUF, README or sub-folder
    lines = result.stderr.splitlines()
    assert lines[0] == f"pulling org/tiny at {COMMIT[:12]}: 5 files, 12.6 MB"
    assert "  model.safetensors (12.6 MB)" in lines
    assert [line.split("%")[0].strip() for line in lines if "%" in line][-1] == "100"  # a line per tenth, to 100%
    assert result.stdout == 'org/tiny is ready: set model = "org/tiny" in the config file, or TRAYLLM_MODEL=org/tiny\n'
    assert sha256(snapshot(tmp_path / "hf", "org/tiny") / "model.safetensors") == hashlib.sha256(WEIGHTS).hexdigest()


def test_a_connection_dropped_halfway_resumes_with_a_range_request(hub: HubStandin, tmp_path: Path):
    cut = 11 << 20
    hub.cut_once["model.safetensors"] = cut
    result = pull(tmp_path / "hf", hub.url, "org/tiny")
    assert result.returncode == 0, result.stderr
    first, second = hub.gets("model.safetensors")
    assert "Range" not in first.headers
    resumed_at = int(second.headers["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= cut  # went on from the last whole chunk it had, did not start over
    assert sha256(snapshot(tmp_path / "hf", "org/tiny") / "model.safetensors") == hashlib.sha256(WEIGHTS).hexdigest()


def test_ctrl_c_exits_130_with_one_line_and_a_rerun_fetches_only_the_rest(hub: HubStandin, tmp_path: Path):
    hub.stall["model.safetensors"] = 1 << 20
    process = start_pull(tmp_path / "hf", hub.url, "org/tiny")
    try:
        assert hub.stalled.wait(timeout=60), "the pull never reached the weights"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130
    assert stderr.splitlines()[-1] == (
        "trayllm: interrupted; finished files are kept: run `trayllm pull org/tiny` again to fetch the rest"
    )
    assert "Traceback" not in stderr
    hub.release.set()
    rerun = pull(tmp_path / "hf", hub.url, "org/tiny")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.splitlines()[0] == f"pulling org/tiny at {COMMIT[:12]}: 1 files, 12.6 MB (4 already here)"
    assert len(hub.gets("config.json")) == 1 and len(hub.gets("model.safetensors")) == 2


def test_several_ggufs_need_a_choice_and_the_chosen_one_comes_alone(hub: HubStandin, tmp_path: Path):
    unchosen = pull(tmp_path / "hf", hub.url, "org/ggufs")
    assert unchosen.returncode == 1
    assert unchosen.stderr == (
        "trayllm: error: org/ggufs holds several GGUF files; choose one as org/ggufs:FILE, one of: "
        "m.Q4_K_M.gguf, m.Q8_0.gguf\n"
    )
    chosen = pull(tmp_path / "hf", hub.url, "org/ggufs:m.Q8_0.gguf")
    assert chosen.returncode == 0, chosen.stderr
    assert [p.name for p in snapshot(tmp_path / "hf", "org/ggufs").iterdir()] == ["m.Q8_0.gguf"]


def test_an_unreachable_hub_is_one_line_naming_the_network_and_hf_endpoint(tmp_path: Path):
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = pull(tmp_path / "hf", endpoint, "org/tiny")
    assert result.returncode == 1
    assert result.stderr == (
        f"trayllm: error: cannot reach the model hub at {endpoint}; check the network connection "
        "(and HF_ENDPOINT, if it points at a mirror) (ConnectError)\n"
    )


def test_an_unknown_repo_says_so_and_how_to_log_in(hub: HubStandin, tmp_path: Path):
    result = pull(tmp_path / "hf", hub.url, "org/nothing")
    assert result.returncode == 1
    assert result.stderr == (
        f"trayllm: error: no model org/nothing on {hub.url}; "
        "if it is private, log in (hf auth login, or set HF_TOKEN)\n"
    )


def test_what_is_no_hub_id_is_a_usage_error():
    result = run("pull", "/models/qwen")
    assert result.exit_code == 2
    assert "Invalid value for ID: not a hub id: org/name, org/name@revision or org/name:FILE.gguf" in result.stderr


def test_the_disk_check_refuses_before_any_file_is_fetched(
    hub: HubStandin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the engine's import turns it on in this process
    monkeypatch.setattr("trayllm.pull.shutil.disk_usage", lambda path: SimpleNamespace(free=1000))
    result = run("pull", "org/tiny")
    assert result.exit_code == 1
    assert result.stderr == (
        f"trayllm: error: org/tiny needs 12.6 MB in {tmp_path / 'hub'}, which has 1.0 kB free; free some space, "
        "or set HF_HUB_CACHE to a disk with room\n"
    )
    assert not [r for r in hub.requests if "/resolve/" in r.path]


@pytest.mark.slow
def test_a_pulled_model_survives_a_drop_then_loads_with_the_hub_gone(
    converted_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The issue's acceptance: the embedded model's converted files, pulled through a dropped connection, load
    offline by id."""

    from trayllm.config import load_settings
    from trayllm.engine.models import load_model, resolve_source

    standin = HubStandin(repos={"org/smol": {p.name: p for p in converted_model_dir.iterdir()}})
    standin.cut_once["model.safetensors"] = 100 << 20
    with running(standin):
        result = pull(tmp_path / "hf", standin.url, "org/smol")
    assert result.returncode == 0, result.stderr
    assert standin.gets("model.safetensors")[1].headers["Range"] != "bytes=0-"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # what HF_HOME made it
    settings = load_settings({"model": "org/smol", "device": "cpu", "cache_dir": str(tmp_path / "cache")}, environ={})
    source = resolve_source(settings)
    assert (source.kind, source.name, source.path) == ("hf", "org/smol", snapshot(tmp_path / "hf", "org/smol"))
    loaded = load_model(settings)
    assert (loaded.info.name, loaded.info.source) == ("org/smol", str(source.path))
    assert loaded.tokenizer.chat_template
