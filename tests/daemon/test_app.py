"""The daemon's own routes on a fake engine: health, readiness, the model list and /metrics, loaded or not."""

from __future__ import annotations

from inprocess_daemon import InProcessDaemon
from prometheus_client.parser import text_string_to_metric_families

from trayllm.daemon.app import PROMETHEUS_TEXT

CHAT = {"messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 3}


def test_while_the_model_loads_only_healthz_says_yes(fake_engine_daemon: InProcessDaemon) -> None:
    fake_engine_daemon.engine.state, fake_engine_daemon.engine.progress = "loading", "loading weights"
    with fake_engine_daemon.client() as client:
        health, ready = client.get("/healthz"), client.get("/readyz")
        models, chat = client.get("/v1/models"), client.post("/v1/chat/completions", json=CHAT)
        status = client.get("/v1/status").json()
    assert health.json() == {"status": "ok"}
    for refused in (ready, models, chat):
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_loading"
        assert refused.headers["retry-after"] == "2" and "loading weights" in refused.json()["error"]["message"]
    assert status["state"] == "loading" and status["load_progress"] == "loading weights"


def test_models_lists_the_engines_model(fake_engine_daemon: InProcessDaemon) -> None:
    with fake_engine_daemon.client() as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        listed = client.get("/v1/models").json()
    [card] = listed["data"]
    assert listed["object"] == "list"
    assert (card["id"], card["version"], card["context_length"]) == ("smollm2-135m-instruct", "fake", 8192)


def test_metrics_count_what_was_served_and_show_the_engines_state(fake_engine_daemon: InProcessDaemon) -> None:
    fake_engine_daemon.engine.vram = (3 << 30, 8 << 30)
    with fake_engine_daemon.client() as client:
        for _ in range(2):
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        metrics = client.get("/metrics")
    assert metrics.headers["content-type"] == PROMETHEUS_TEXT
    samples: dict[str, float] = {}  # summed over labels
    for family in text_string_to_metric_families(metrics.text):
        for sample in family.samples:
            samples[sample.name] = samples.get(sample.name, 0) + sample.value
    assert samples["trayllm_requests_total"] == 2 and samples["trayllm_generation_tokens_total"] == 6
    assert samples["trayllm_model_loaded"] == 1 and samples["trayllm_num_requests_running"] == 0
    assert (samples["trayllm_gpu_memory_used_bytes"], samples["trayllm_gpu_memory_total_bytes"]) == (3 << 30, 8 << 30)
