"""Shared fixtures: isolated XDG dirs for every test, the converted embedded model, and real daemons.

The converted safetensors copy of the embedded model is cached under the repo's .cache/
(git-ignored), so only the first run on a clone pays the GGUF de-quantization.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from daemons import MODEL_CACHE, RunningDaemon, spawn_daemon


@pytest.fixture(autouse=True)
def isolated_xdg(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own XDG dirs and no TRAYLLM_* from the developer's shell."""
    root = tmp_path_factory.mktemp("xdg")
    for name in list(os.environ):
        if name.startswith("TRAYLLM_") and name != "TRAYLLM_TEST_CACHE":
            monkeypatch.delenv(name)
    for var in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        path = root / var.lower()
        path.mkdir(mode=0o700)
        monkeypatch.setenv(var, str(path))
    return root


@pytest.fixture(scope="session")
def converted_model_dir() -> Path:
    """The embedded model de-quantized to safetensors (tokenizer included), converting once."""
    from trayllm.config import load_settings
    from trayllm.engine.models import content_digest, converted_dir, resolve_source

    settings = load_settings({"cache_dir": str(MODEL_CACHE)}, environ={})
    source = resolve_source(settings)
    digest = content_digest(source.weight_files, MODEL_CACHE)
    return converted_dir(source, digest, MODEL_CACHE, progress=lambda _: None)


@pytest.fixture
def start_daemon(tmp_path: Path, converted_model_dir: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """Factory for daemons with chosen settings; all are stopped at the end of the test."""
    started: list[RunningDaemon] = []

    def start(**settings: object) -> RunningDaemon:
        daemon = spawn_daemon(tmp_path / f"daemon{len(started)}", **settings)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, converted_model_dir: Path) -> Iterator[RunningDaemon]:
    """One default daemon shared by a test module."""
    running = spawn_daemon(tmp_path_factory.mktemp("daemon"))
    yield running
    running.stop()
