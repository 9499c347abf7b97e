"""`trayllm models` and `trayllm use` at the command line, against the fake daemon or none (the switch itself, on
a real daemon: test_use.py; the listing in detail: tests/test_model_catalog.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import on, run
from fake_daemon import FakeDaemon, fake_daemon_fixture  # noqa: F401

from trayllm.config import config_file
from trayllm.model_catalog import EMBEDDED_NAME


@pytest.fixture(autouse=True)
def no_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def test_models_lists_what_is_here_and_what_the_daemon_serves(fake_daemon: FakeDaemon):
    text = on(fake_daemon, "models")
    assert text.exit_code == 0, text.stderr
    header, embedded = text.stdout.splitlines()[:2]
    assert header.split() == ["ID", "FORMAT", "PRECISION", "SIZE", "PARAMS", "FITS", "FROM"]
    assert embedded.split()[:4] == ["c", EMBEDDED_NAME, "gguf", "Q4_1"]
    assert text.stdout.rstrip().endswith("serving: fake-model (version abc123); * marks it, c the configured model")

    listed = json.loads(on(fake_daemon, "models", "--json").stdout)
    assert listed["serving"] == {"name": "fake-model", "version": "abc123"}
    assert [(m["id"], m["source"], m["configured"], m["serving"]) for m in listed["models"]] == [
        (EMBEDDED_NAME, "embedded", True, False)  # the fake serves /models/fake.gguf, which is not here
    ]


def test_models_without_a_daemon_still_lists(tmp_path: Path):
    listed = json.loads(run("--socket", str(tmp_path / "none.sock"), "models", "--json").stdout)
    assert listed["serving"] is None and [m["id"] for m in listed["models"]] == [EMBEDDED_NAME]


def test_use_without_a_daemon_saves_the_choice_and_refuses_what_is_no_model(tmp_path: Path):
    socket = str(tmp_path / "none.sock")
    saved = run("--socket", socket, "use", EMBEDDED_NAME)
    assert saved.exit_code == 0 and saved.stdout.startswith("saved model = '' in ")
    assert 'model = ""' in config_file().read_text().splitlines()
    refused = run("--socket", socket, "use", str(tmp_path / "absent"))
    assert refused.exit_code == 1 and "is no model here" in refused.stderr
    assert 'model = ""' in config_file().read_text().splitlines()  # unchanged
