"""Against a real Elasticsearch, when one is given: TRAYLLM_ES_URL (and TRAYLLM_ES_API_KEY, or
TRAYLLM_ES_USERNAME/TRAYLLM_ES_PASSWORD, and TRAYLLM_ES_CA_FILE). Skipped otherwise: no such cluster runs on
the CI machines, and the docs say so. The stand-in tests cover the same paths on every run."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from trayllm.config import load_settings
from trayllm.elastic.connection import ElasticTarget, check_version
from trayllm.elastic.shipper import Shipper
from trayllm.elastic.templates import install
from trayllm.telemetry.writer import RecordWriter

# read before the autouse fixture clears TRAYLLM_* from the environment
REAL = {k: v for k, v in os.environ.items() if k.startswith("TRAYLLM_ES_")}
pytestmark = pytest.mark.skipif("TRAYLLM_ES_URL" not in REAL, reason="no real Elasticsearch: set TRAYLLM_ES_URL")


def test_setup_ship_and_reship_against_the_real_cluster(tmp_path: Path) -> None:
    from slo_records import record

    settings = load_settings({"state_dir": str(tmp_path)}, environ=REAL)
    target = ElasticTarget.from_settings(settings)
    es = target.client()
    major = int(check_version(es, target.url).split(".")[0])
    assert major in (8, 9)
    install(es, target.url)
    run = uuid.uuid4().hex[:8]
    with RecordWriter(settings.records_path, 0, 1) as writer:
        for i in range(50):
            doc = record(i, ttft_s=0.1)
            doc["event"]["id"] = f"trayllm-test-{run}-{i}"
            writer.write(doc)
    shipper = Shipper(settings, es)
    shipper.open()
    stats = shipper.run(once=True)
    shipper.close()
    assert (stats.delivered, stats.dead_lettered) == (50, 0)
    es.indices.refresh(index="logs-trayllm.requests-default")
    found = es.count(index="logs-trayllm.requests-default", query={"prefix": {"event.id": f"trayllm-test-{run}-"}})
    assert found["count"] == 50
    (settings.shipping_path / "checkpoint.json").unlink()  # forget the position: everything goes again
    again = Shipper(settings, es)
    again.open()
    stats = again.run(once=True)
    again.close()
    assert (stats.delivered, stats.duplicates) == (0, 50)
