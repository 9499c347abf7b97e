"""The index templates and lifecycle policy ``trayllm elastic setup`` installs, derived from the record schemas.

Each stream gets a self-contained index template (no ``composed_of``: built-in component names differ
between 8.x releases) with priority 501, above the built-in ``logs`` template (100) and the 500 that
Elastic reserves, so our mappings win for ``logs-trayllm.*``. ``dynamic`` stays on because Filebeat
and Logstash add their own fields (``agent.*``, ``log.file.*``). One ILM policy rolls the backing
indices over and deletes them after ``RETENTION``.
"""

from __future__ import annotations

from typing import Any

from trayllm.telemetry.schema import ALERTS, REQUESTS, RecordSchema

POLICY = "trayllm"
PRIORITY = 501
RETENTION = "90d"
STREAMS: tuple[RecordSchema, ...] = (REQUESTS, ALERTS)


def lifecycle_policy() -> dict[str, Any]:
    """Hot until 10 GB per primary shard or 7 days, then deleted after ``RETENTION``."""
    return {
        "phases": {
            "hot": {"actions": {"rollover": {"max_primary_shard_size": "10gb", "max_age": "7d"}}},
            "delete": {"min_age": RETENTION, "actions": {"delete": {}}},
        }
    }


def template_name(schema: RecordSchema) -> str:
    return f"trayllm-{schema.data_stream['dataset'].split('.', 1)[1]}"


def index_template(schema: RecordSchema) -> dict[str, Any]:
    """The body of ``PUT _index_template/<name>`` for one record stream."""
    d = schema.data_stream
    return {
        "index_patterns": [f"{d['type']}-{d['dataset']}-*"],
        "data_stream": {},
        "priority": PRIORITY,
        "template": {
            "settings": {"index.lifecycle.name": POLICY, "number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"dynamic": True, "properties": schema.es_properties()},
        },
        "_meta": {"managed_by": "trayllm", "description": f"trayllm {schema.name} records (docs/RECORDS.md)"},
    }


def install(es: Any, where: str) -> list[str]:
    """Put the lifecycle policy and both index templates (idempotent: PUT replaces); what was installed."""
    from trayllm.elastic.connection import elastic_errors

    done = []
    with elastic_errors(where):
        es.ilm.put_lifecycle(name=POLICY, policy=lifecycle_policy())
        done.append(f"lifecycle policy {POLICY} (rollover at 10 GB or 7 days, delete after {RETENTION})")
        for schema in STREAMS:
            body = index_template(schema)
            es.indices.put_index_template(name=template_name(schema), **body)
            done.append(
                f"index template {template_name(schema)} for {schema.index_pattern} "
                f"({len(schema.fields)} fields, priority {PRIORITY})"
            )
    return done
