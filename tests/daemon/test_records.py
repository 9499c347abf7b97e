"""Every request accounted for: one record per request over a real daemon, matching what clients saw.

Acceptance for issue 3: a mix of fates (ok, streamed, cancelled mid-stream, rate-limited,
queue-full, invalid) leaves exactly one record each, ids equal to the client's x-request-id,
records valid against the one schema, and /metrics agreeing with the records.
"""

from __future__ import annotations

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_for

from trayllm.telemetry.reader import iter_records
from trayllm.telemetry.schema import validate_record

pytestmark = pytest.mark.slow


def chat(prompt: str, max_tokens: int, **extra: object) -> dict:
    return {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0, **extra}


def test_one_record_per_request_whatever_its_fate(start_daemon) -> None:
    # One request at a time, one waiting place, five requests per user for the whole test.
    daemon = start_daemon(max_batch=1, queue_size=1, rate_limit_per_minute=0.6, rate_limit_burst=5)
    records_path = daemon.records
    seen: dict[str, tuple[str, str | None]] = {}  # request id -> (expected outcome, expected error.type)
    with daemon.client() as client:
        ok = client.post("/v1/chat/completions", json=chat("What is the capital of France?", 12))
        assert ok.status_code == 200
        seen[ok.headers["x-request-id"]] = ("success", None)

        with client.stream("POST", "/v1/chat/completions", json=chat("Say hello.", 6, stream=True)) as streamed:
            body = "".join(streamed.iter_lines())
        assert "[DONE]" in body
        seen[streamed.headers["x-request-id"]] = ("success", None)

        long_story = chat("Write a very long story about a lighthouse.", 1500, stream=True, temperature=0.8)
        with client.stream("POST", "/v1/chat/completions", json=long_story) as abandoned:
            for count, _ in enumerate(abandoned.iter_lines()):
                if count > 6:
                    break
        seen[abandoned.headers["x-request-id"]] = ("unknown", "cancelled")
        wait_for(lambda: daemon.status()["queue"]["in_flight"] == 0, timeout=30)

        invalid = client.post("/v1/chat/completions", content=b'{"messages": [')
        assert invalid.status_code == 400
        seen[invalid.headers["x-request-id"]] = ("failure", "invalid_request")

    background: list[threading.Thread] = []
    ids: list[str] = []

    def post_and_keep_id(body: dict) -> None:
        with daemon.client() as own:
            response = own.post("/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            ids.append(response.headers["x-request-id"])

    for prompt, tokens in (("Write a long story about a dragon.", 60), ("Name a colour.", 3)):
        thread = threading.Thread(target=post_and_keep_id, args=(chat(prompt, tokens),))
        thread.start()
        background.append(thread)
        wait_for(
            lambda: sum(daemon.status()["queue"][k] for k in ("in_flight", "depth")) >= len(background), timeout=30
        )
    with daemon.client() as client:
        full = client.post("/v1/chat/completions", json=chat("Hi", 2))
        assert full.status_code == 503
        seen[full.headers["x-request-id"]] = ("failure", "queue_full")
        for thread in background:
            thread.join(120)
        limited = client.post("/v1/chat/completions", json=chat("Hi", 2))
        assert limited.status_code == 429
        seen[limited.headers["x-request-id"]] = ("failure", "rate_limited")
    seen.update({request_id: ("success", None) for request_id in ids})
    assert len(seen) == 8

    def all_records() -> list[dict] | None:
        found = list(iter_records(records_path))
        return found if len(found) >= len(seen) else None

    records = wait_for(all_records)
    by_id: dict[str, list[dict]] = {}
    for record in records:
        by_id.setdefault(record["event"]["id"], []).append(record)
    assert set(by_id) == set(seen), "records and client-side request ids differ"
    assert all(len(found) == 1 for found in by_id.values()), "a request left more than one record"
    for request_id, (outcome, error_type) in seen.items():
        record = by_id[request_id][0]
        assert record["event"]["outcome"] == outcome, record
        assert record.get("error", {}).get("type") == error_type, record
        assert record["user"]["name"], record
        assert validate_record(record) == [], record
        assert "Say hello" not in str(record) and "lighthouse" not in str(record), "prompt text was recorded"
    cancelled = by_id[abandoned.headers["x-request-id"]][0]
    assert cancelled["gen_ai"]["usage"]["output_tokens"] < 100, "the abandoned stream kept generating"
    assert "vram" not in cancelled["llm"], "VRAM fields must be absent on CPU, never invented"

    # /metrics agrees with the records it was fed.
    with daemon.client() as client:
        text = client.get("/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    by_outcome: dict[str, float] = {}
    for sample in families["trayllm_requests"].samples:
        if sample.name == "trayllm_requests_total":
            by_outcome[sample.labels["outcome"]] = by_outcome.get(sample.labels["outcome"], 0) + sample.value
    expected: dict[str, float] = {}
    for outcome, _ in seen.values():
        expected[outcome] = expected.get(outcome, 0) + 1
    assert by_outcome == expected
    generated = sum(r["gen_ai"].get("usage", {}).get("output_tokens", 0) for r in records)
    token_samples = [s for s in families["trayllm_generation_tokens"].samples if s.name.endswith("_total")]
    assert token_samples[0].value == generated
    e2e = [s for s in families["trayllm_e2e_request_latency_seconds"].samples if s.name.endswith("_count")]
    assert e2e[0].value == len(seen)


def test_prompt_and_reply_are_recorded_only_when_the_user_opts_in(start_daemon) -> None:
    daemon = start_daemon(log_content=1)
    records_path = daemon.records
    with daemon.client() as client:
        reply = client.post("/v1/chat/completions", json=chat("What is the capital of France?", 12)).json()
    record = wait_for(lambda: next(iter_records(records_path), None))
    assert record["gen_ai"]["input"]["messages"] == [{"role": "user", "content": "What is the capital of France?"}]
    assert record["gen_ai"]["output"]["text"] == reply["choices"][0]["message"]["content"]
    assert validate_record(record) == []
