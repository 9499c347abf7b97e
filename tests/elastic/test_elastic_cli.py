"""`trayllm elastic setup`, `trayllm ship --once` and `trayllm slo --from-elastic` against the stand-in, the
one-line errors for the ways Elasticsearch can be unusable, and the daemon's own shipping thread."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from es_standin import ElasticStandIn
from slo_records import T0, record
from waiting import wait_for

from trayllm.cli import cli
from trayllm.elastic.templates import PRIORITY
from trayllm.telemetry.schema import ALERTS, REQUESTS
from trayllm.telemetry.writer import RecordWriter


def run(*args: str, env: dict[str, str] | None = None, input: str | None = None):
    return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)


def with_credentials(url: str, userinfo: str = "elastic:hunter2") -> str:
    return url.replace("://", f"://{userinfo}@", 1)


@pytest.fixture
def standin() -> ElasticStandIn:
    server = ElasticStandIn()
    yield server
    server.close()


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv("TRAYLLM_STATE_DIR", str(directory))
    return directory


def test_setup_installs_templates_derived_from_the_schemas(standin: ElasticStandIn) -> None:
    result = run("elastic", "setup", "--es-url", standin.url)
    assert result.exit_code == 0, result.output
    assert f"Elasticsearch 8.19.3 at {standin.url}" in result.stdout
    assert set(standin.templates) == {"trayllm-requests", "trayllm-alerts"} and set(standin.policies) == {"trayllm"}
    requests = standin.templates["trayllm-requests"]
    assert requests["index_patterns"] == ["logs-trayllm.requests-*"] and requests["priority"] == PRIORITY > 500
    assert requests["data_stream"] == {}
    assert requests["template"]["mappings"]["properties"] == REQUESTS.es_properties()
    assert standin.templates["trayllm-alerts"]["template"]["mappings"]["properties"] == ALERTS.es_properties()
    assert requests["template"]["settings"]["index.lifecycle.name"] == "trayllm"
    # the client speaks compatibility mode 8, which an 8.x and a 9.x server both take
    accept = standin.requests[-1][2]["accept"]
    assert "compatible-with=8" in accept
    assert run("elastic", "setup", "--es-url", standin.url).exit_code == 0  # idempotent


@pytest.mark.parametrize(
    ("version", "words"),
    [
        ("7.17.9", "runs Elasticsearch 7.17.9; trayllm needs 8.x or 9.x"),
        ("10.0.0", "runs Elasticsearch 10.0.0; trayllm needs 8.x or 9.x"),
    ],
)
def test_an_incompatible_cluster_is_one_line(version: str, words: str) -> None:
    standin = ElasticStandIn(version=version)
    try:
        result = run("elastic", "setup", "--es-url", standin.url)
    finally:
        standin.close()
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and words in result.stderr


def test_bad_credentials_and_no_cluster_are_one_line(tmp_path: Path) -> None:
    standin = ElasticStandIn(api_key="right")
    try:
        refused = run("elastic", "setup", "--es-url", standin.url, env={"TRAYLLM_ES_API_KEY": "wrong"})
        accepted = run("elastic", "setup", "--es-url", standin.url, env={"TRAYLLM_ES_API_KEY": "right"})
    finally:
        standin.close()
    assert refused.exit_code == 1 and "refused the credentials (401)" in refused.stderr
    assert accepted.exit_code == 0
    nobody = run("elastic", "setup", "--es-url", standin.url)  # closed now
    assert nobody.exit_code == 1 and "cannot reach" in nobody.stderr and nobody.stderr.count("\n") == 1
    missing = run("ship", "--once")
    assert missing.exit_code == 1 and "no Elasticsearch URL: pass --es-url or set es_url" in missing.stderr


def test_ship_once_then_the_slo_report_from_elasticsearch_equals_the_one_from_the_file(
    standin: ElasticStandIn, state: Path
) -> None:
    records = [
        record(
            i * 7,
            duration_s=0.5 + i % 3,
            ttft_s=0.05 * (i % 11),
            vram_pct=0.5 + 0.01 * (i % 40),
            error_type="oom" if i % 37 == 0 else "cancelled" if i % 5 == 0 else None,
        )
        for i in range(150)
    ]
    with RecordWriter(state / "requests.jsonl", 0, 1) as writer:
        for r in records:
            writer.write(r)
    assert run("elastic", "setup", "--es-url", standin.url).exit_code == 0
    shipped = run("ship", "--once", "--es-url", standin.url)
    assert shipped.exit_code == 0, shipped.output
    assert "150 new, 0 already there, 0 dead-lettered" in shipped.stdout
    again = run("ship", "--once", "--es-url", standin.url)
    assert "0 new" in again.stdout  # the checkpoint remembered

    at = datetime.fromtimestamp(T0.timestamp() + 1000, timezone.utc).isoformat()
    env = {"TRAYLLM_SLO_MIN_SAMPLES": "20", "TRAYLLM_SLO_VRAM_WINDOW_S": "600", "TRAYLLM_SLO_TTFT_WINDOW_S": "900"}
    offline = json.loads(run("slo", "--json", "--from", str(state / "requests.jsonl"), "--at", at, env=env).stdout)
    remote = json.loads(run("slo", "--json", "--from-elastic", "--es-url", standin.url, "--at", at, env=env).stdout)
    assert remote["objectives"] == offline["objectives"]
    by_name = {row["objective"]: row for row in remote["objectives"]}
    assert by_name["first_token_latency_p99"]["samples"] > 20  # every objective had real work to do
    assert by_name["peak_vram"]["value"] is not None and by_name["error_rate"]["value"] > 0
    searches = [path for method, path, _ in standin.requests if "_search" in path]
    assert len(searches) == 2  # one aggregation query, plus the exact rank of the one percentile objective


@pytest.mark.slow
def test_the_daemon_ships_its_own_records_and_reports_it(start_daemon, standin: ElasticStandIn) -> None:
    assert run("elastic", "setup", "--es-url", standin.url).exit_code == 0
    daemon = start_daemon(es_url=with_credentials(standin.url))  # the stand-in takes any user
    with daemon.client() as http:
        for _ in range(3):
            assert (
                http.post(
                    "/v1/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
                ).status_code
                == 200
            )
        wait_for(lambda: len(standin.ids("logs-trayllm.requests-default")) == 3, timeout=30)
        shipping = wait_for(
            lambda: (s := http.get("/v1/status").json()["shipping"]) and s["delivered"] == 3 and s, timeout=10
        )
    assert shipping["backlog_bytes"] == 0 and shipping["last_error"] is None
    assert daemon.stop() == 0
    log = daemon.log.read_text()
    assert with_credentials(standin.url, "elastic:***") in log and "hunter2" not in log
    stored = list(standin.sources("logs-trayllm.requests-default"))
    assert all("gen_ai" in doc and "input" not in doc["gen_ai"] for doc in stored)  # no prompt text shipped


def test_elastic_dashboards_imports_into_kibana_and_reports_failures() -> None:
    from kibana_standin import KibanaStandin

    with KibanaStandin(api_key="k3y") as kibana:
        result = run("elastic", "dashboards", "--kibana-url", kibana.url, "--api-key", input="k3y\n")
        assert result.exit_code == 0, result.output
        assert "imported 13 saved objects" in result.stdout and "/app/dashboards" in result.stdout
        assert {kind for _, kind, _ in kibana.store} >= {"index-pattern", "dashboard", "lens"}
        refused = run("elastic", "dashboards", "--kibana-url", kibana.url, env={"TRAYLLM_ES_API_KEY": "nope"})
        assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    missing = run("elastic", "dashboards")
    assert missing.exit_code == 1 and "no Kibana URL" in missing.stderr


@pytest.mark.parametrize("flag", ["--api-key", "--password"])
def test_a_secret_given_as_a_flags_value_is_refused_before_anything_is_sent(standin: ElasticStandIn, flag: str) -> None:
    variable = "TRAYLLM_ES_API_KEY" if flag == "--api-key" else "TRAYLLM_ES_PASSWORD"
    for given in ([flag, "hunter2"], [f"{flag}=hunter2"]):
        result = run("elastic", "setup", "--es-url", standin.url, "--user", "elastic", *given)
        assert result.exit_code == 1 and standin.requests == []
        assert result.stderr == (
            f"trayllm: error: {flag} takes no value: other users can read a command's "
            f"arguments (ps); give {flag} alone to be prompted, {flag}-file PATH, or "
            f"{variable}\n"
        )


def test_secrets_come_from_a_prompt_a_file_or_the_environment(tmp_path: Path) -> None:
    standin = ElasticStandIn(api_key="right")
    key_file = tmp_path / "es.key"
    key_file.write_text("right\n")
    try:
        prompted = run("elastic", "setup", "--es-url", standin.url, "--api-key", input="right\n")
        from_file = run("elastic", "setup", "--es-url", standin.url, "--api-key-file", str(key_file))
        from_env = run("elastic", "setup", "--es-url", standin.url, env={"TRAYLLM_ES_API_KEY": "right"})
        both = run("elastic", "setup", "--es-url", standin.url, "--api-key", "--api-key-file", str(key_file))
    finally:
        standin.close()
    assert (prompted.exit_code, from_file.exit_code, from_env.exit_code) == (0, 0, 0), prompted.stderr
    assert "Elasticsearch API key: \n" in prompted.stderr and "right" not in prompted.output  # not echoed
    assert both.exit_code == 1 and "choose one of --api-key and --api-key-file" in both.stderr


def test_a_password_in_the_url_is_never_shown(standin: ElasticStandIn, state: Path) -> None:
    url = with_credentials(standin.url)
    shown = with_credentials(standin.url, "elastic:***")
    setup = run("elastic", "setup", "--es-url", url)
    shipped = run("ship", "--once", "--es-url", url)
    standin.close()
    unreachable = run("elastic", "setup", "--es-url", url)
    not_http = run("elastic", "setup", "--es-url", "ftp://elastic:hunter2@es.example")
    assert setup.exit_code == 0 and f"Elasticsearch 8.19.3 at {shown}\n" in setup.stdout
    assert shipped.exit_code == 0 and f"shipped to {shown}: " in shipped.stdout
    assert unreachable.exit_code == 1 and f"cannot reach {shown} (" in unreachable.stderr
    assert not_http.exit_code == 1 and "'ftp://elastic:***@es.example'" in not_http.stderr
    assert not any("hunter2" in r.output for r in (setup, shipped, unreachable, not_http))


def test_elastic_dashboards_shows_the_kibana_url_without_its_password() -> None:
    from kibana_standin import KibanaStandin

    with KibanaStandin(username="elastic", password="hunter2") as kibana:
        result = run("elastic", "dashboards", "--kibana-url", with_credentials(kibana.url))
    assert result.exit_code == 0, result.output
    assert f"open {with_credentials(kibana.url, 'elastic:***')}/app/dashboards" in result.stdout
    assert "hunter2" not in result.output
