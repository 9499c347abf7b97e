"""The Logstash, Filebeat and docker-compose files under logstash/, checked without running them.

There is no Docker, Logstash or Filebeat on the machines these tests run on, so the checks are
structural: the YAML parses; the Logstash pipeline parses with ``logstash_config`` (a parser for
Logstash's config grammar) and that parser rejects broken configs; every field the configs name is a
record field from ``trayllm/telemetry/schema.py`` or one the shipping tools add themselves (listed
below); the compose file binds to 127.0.0.1 only, runs one 8.19 stack version and mounts files that
exist; the data stream names are the schema's; the setup script sends the role and users it claims to.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from logstash_config import (
    Bareword,
    Branch,
    LogstashConfigError,
    Plugin,
    field_path,
    parse,
    sprintf_fields,
)
from packaging.requirements import Requirement

from trayllm.telemetry.schema import ALERTS, REQUESTS

if sys.version_info >= (3, 11):
    import tomllib
else:  # the project's own dependency on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
LOGSTASH_DIR = ROOT / "logstash"
PIPELINE = LOGSTASH_DIR / "pipeline" / "trayllm.conf"
FILEBEAT = LOGSTASH_DIR / "filebeat.yml"
COMPOSE = LOGSTASH_DIR / "docker-compose.yml"
ENV_EXAMPLE = LOGSTASH_DIR / ".env.example"
SETUP_SCRIPT = LOGSTASH_DIR / "setup" / "setup.sh"
STREAMS = (REQUESTS, ALERTS)
INDEX_PATTERNS = {schema.index_pattern for schema in STREAMS}

# Fields that Filebeat or Logstash add to an event, not the daemon: the configs may name them (to remove
# them, or to look at a failure tag) although they are not record fields.
PIPELINE_ADDED: dict[str, str] = {
    "@version": "Logstash: every event",
    "tags": "Logstash: failure tags such as _jsonparsefailure and _timestampparsefailure",
    "_@timestamp": "Logstash: the record's @timestamp when it could not parse it",
    "event.original": "Logstash in ECS mode: the plain codec's input (beats input)",
    "agent": "Filebeat: agent.name, agent.type, agent.version, ...",
    "ecs": "Filebeat: ecs.version",
    "input": "Filebeat: input.type",
    "log.file": "Filebeat (log.file.path, .inode, .device_id) and the Logstash file input (log.file.path)",
    "log.offset": "Filebeat: the line's byte offset",
    "log.flags": "Filebeat: multiline and truncation flags",
}

IMAGES = {
    "elasticsearch": "docker.elastic.co/elasticsearch/elasticsearch",
    "kibana": "docker.elastic.co/kibana/kibana",
    "logstash": "docker.elastic.co/logstash/logstash",
    "filebeat": "docker.elastic.co/beats/filebeat",
}


# --- helpers


def schema_fields() -> set[str]:
    return {path for schema in STREAMS for path in schema.fields}


def is_known_field(path: str) -> bool:
    """A record field, an object holding record fields, a pipeline-added field or under one, or metadata."""
    if path == "@metadata" or path.startswith("@metadata."):
        return True
    fields = schema_fields()
    if path in fields or any(f.startswith(path + ".") for f in fields):
        return True
    return any(path == added or path.startswith(added + ".") for added in PIPELINE_ADDED)


def pipeline() -> Any:
    return parse(PIPELINE.read_text())


def filebeat() -> dict[str, Any]:
    return yaml.safe_load(FILEBEAT.read_text())


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict[str, str]:
    out: dict[str, str] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f".env.example line {number} is not KEY=VALUE"
        out[key] = value
    return out


def filebeat_direct_block() -> dict[str, Any]:
    """The commented direct-to-Elasticsearch block of filebeat.yml, uncommented and parsed."""
    text = FILEBEAT.read_text()
    begin = text.index("# --- begin: direct to Elasticsearch ---\n")
    end = text.index("# --- end ---", begin)
    lines = text[begin:end].splitlines()[1:]
    assert all(line.startswith("# ") for line in lines), "every line of the block is one commented config line"
    return yaml.safe_load("\n".join(line[2:] for line in lines))


def resolve_env(value: str, env: dict[str, str]) -> str:
    """Logstash/Beats ``${VAR:default}`` and compose ``${VAR:-default}`` / ``${VAR:?msg}``, from ``env``."""

    def one(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(3) or ""
        if m.group(2) and m.group(2).startswith(":?"):
            return env[name]
        return env.get(name, default)

    previous = None
    while previous != value:  # nested defaults: ${A:-${B}/x}
        previous = value
        value = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?::-|:\?|:)([^${}]*))?\}", one, value)
    return value


def walk_values(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from walk_values(v)
    elif isinstance(value, list):
        for item in value:
            yield from walk_values(item)
    else:
        yield value


def clauses_with(body: list[Any], plugin_name: str) -> Iterator[tuple[Any, Plugin]]:
    """(condition, plugin) for every plugin of that name directly inside a branch clause."""
    for item in body:
        if isinstance(item, Branch):
            for condition, clause_body in item.clauses:
                for inner in clause_body:
                    if isinstance(inner, Plugin) and inner.name == plugin_name:
                        yield condition, inner
                yield from clauses_with(clause_body, plugin_name)


def es_outputs() -> list[Plugin]:
    return [p for p in pipeline().plugins("output") if p.name == "elasticsearch"]


def stream_name(plugin: Plugin) -> str:
    return "-".join(plugin.get(f"data_stream_{part}") for part in ("type", "dataset", "namespace"))


# Options of Logstash filter plugins whose values are field references.
FIELD_OPTIONS = ("remove_field", "source", "target")


def logstash_field_refs() -> set[str]:
    config = pipeline()
    refs: set[str] = set()
    for condition in config.conditions():
        refs.update(selector.dotted for selector in condition.selectors)
    for plugin in config.plugins():
        for key, value in plugin.attributes:
            for leaf in walk_values(value):
                if isinstance(leaf, str) and not isinstance(leaf, Bareword):
                    refs.update(sprintf_fields(leaf))
            if key in FIELD_OPTIONS:
                refs.update(field_path(v) for v in (value if isinstance(value, list) else [value]))
            if plugin.name == "date" and key == "match":
                refs.add(field_path(value[0]))
            if plugin.name == "mutate" and key in ("rename", "copy", "replace", "update", "add_field"):
                refs.update(field_path(k) for k in value)
                if key in ("rename", "copy"):
                    refs.update(field_path(v) for v in value.values())
    return refs


def filebeat_processor_fields(processors: list[dict[str, Any]]) -> set[str]:
    refs: set[str] = set()
    for processor in processors:
        ((name, options),) = processor.items()
        if name in ("drop_fields", "include_fields"):
            refs.update(options["fields"])
        elif name in ("copy_fields", "rename"):
            for pair in options["fields"]:
                refs.update((pair["from"], pair["to"]))
        else:
            raise AssertionError(f"filebeat.yml: processor {name!r} is new here: teach this test its fields")
        refs.update(condition_fields(options.get("when", {})))
    return refs


def condition_fields(condition: dict[str, Any]) -> set[str]:
    """Field names in a Beats condition (equals/contains/regexp/range/has_fields/and/or/not)."""
    refs: set[str] = set()
    for key, value in condition.items():
        if key in ("and", "or"):
            for sub in value:
                refs |= condition_fields(sub)
        elif key == "not":
            refs |= condition_fields(value)
        elif key == "has_fields":
            refs.update(value)
        else:
            refs.update(value)
    return refs


# --- (a) the YAML files parse


def test_filebeat_compose_and_env_example_parse() -> None:
    assert isinstance(filebeat(), dict)
    assert isinstance(filebeat_direct_block(), dict)
    assert isinstance(compose()["services"], dict)
    assert env_example()["STACK_VERSION"]


# --- (b) the Logstash pipeline parses, and the parser rejects what Logstash would


def test_pipeline_parses_into_the_expected_plugins() -> None:
    config = pipeline()
    assert [s.kind for s in config.sections] == ["input", "filter", "output"]
    inputs = {p.name: p for p in config.plugins("input")}
    assert set(inputs) == {"beats", "file"}
    assert inputs["beats"].get("port") == 5044
    files = inputs["file"]
    assert files.get("codec") == "json" and isinstance(files.get("codec"), Bareword), "codec => json, not json_lines"
    assert files.get("mode") == "tail"
    assert files.get("sincedb_path").startswith("/usr/share/logstash/data/")
    paths = [resolve_env(p, {}) for p in files.get("path")]
    for name in ("requests.jsonl", "alerts.jsonl"):
        assert f"/trayllm/{name}" in paths, f"the file input tails {name}"
        rotated = [p for p in paths if fnmatch.fnmatch(f"/trayllm/{name}.1", p)]
        assert rotated, f"the file input also reads the rotated copies of {name}"
        assert all(fnmatch.fnmatch(f"/trayllm/{name}.{n}", rotated[0]) for n in range(1, 6))
    ids = [p.get("id") for p in config.plugins() if p.get("id")]
    assert len(ids) == len(set(ids)), "plugin ids are unique"


def test_elasticsearch_outputs_use_data_streams_and_event_id() -> None:
    outputs = es_outputs()
    assert len(outputs) == 2
    for out in outputs:
        assert out.get("data_stream") == "true"
        assert out.get("document_id") == "%{[event][id]}"
        assert out.get("data_stream_auto_routing") is not None
        assert out.get("manage_template") == Bareword("false")
        # Options the data-stream mode of the output refuses ("Invalid data stream configuration").
        assert not {"index", "action", "ilm_enabled", "template", "template_name"} & {k for k, _ in out.attributes}
        # Credentials come from the environment, never from the file.
        assert out.get("password") == "${LOGSTASH_INTERNAL_PASSWORD}"
        assert re.fullmatch(r"\$\{[A-Z_]+(:[^}]*)?\}", out.get("user"))
        assert all(h.startswith("${") for h in out.get("hosts"))


def test_each_elasticsearch_output_is_guarded_by_its_dataset_and_an_event_id() -> None:
    output = next(s for s in pipeline().sections if s.kind == "output")
    guarded = list(clauses_with(output.body, "elasticsearch"))
    assert len(guarded) == len(es_outputs()), "every elasticsearch output sits inside an if/else if"
    for condition, plugin in guarded:
        assert condition is not None, "not in an else clause"
        fields = {s.dotted for s in condition.selectors}
        assert {"event.id", "data_stream.dataset"} <= fields, condition.text
        assert plugin.get("data_stream_dataset") in condition.strings, condition.text
    # Whatever is not a trayllm record goes to the local file, not to Elasticsearch.
    branch = next(item for item in output.body if isinstance(item, Branch))
    else_condition, else_body = branch.clauses[-1]
    assert else_condition is None and [p.name for p in else_body] == ["file"]


GRAMMAR_SAMPLE = """
# a comment before everything
input { generator { lines => ['one', "two"] count => 1 codec => json { charset => "UTF-8" } } }
filter {
  if [a][b] == "x" and ([c] or ![d]) {
    mutate { add_field => { "[e]" => "%{[a][b]}" "f" => 'g' } }   # trailing comment
  } else if "tag" not in [tags] or [n] >= -1.5 or [m] =~ /^\\{/ or lowercase([s]) != "y" {
    drop {}
  } else if [list] in ["p", "q"] {
    drop { }
  } else {
    if ![z] { drop {} }
  }
}
output { stdout { codec => rubydebug } }
"""


def test_parser_reads_the_whole_grammar() -> None:
    config = parse(GRAMMAR_SAMPLE)
    assert [p.name for p in config.plugins()] == ["generator", "json", "mutate", "drop", "drop", "drop", "stdout"]
    generator = next(config.plugins("input"))
    assert generator.get("lines") == ["one", "two"] and generator.get("count") == 1
    mutate = next(p for p in config.plugins() if p.name == "mutate")
    assert mutate.get("add_field") == {"[e]": "%{[a][b]}", "f": "g"}
    conditions = list(config.conditions())
    assert [c.text.split()[0] for c in conditions] == ["[a][b]", '"tag"', "[list]", "![z]"]
    assert {s.dotted for s in conditions[1].selectors} == {"tags", "n", "m", "s"}


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("input { beats { port => 5044 }", "not closed"),
        ('output { stdout { codec => "json } }', "unterminated string"),
        ("input { beats { port 5044 } }", "'=>'"),
        ('filter { mutate { add_field => { "a" => "b", "c" => "d" } } }', "no commas"),
        ('filter { mutate { remove_field => ["a", ] } }', "trailing ','"),
        ("filter { else { drop {} } }", "'else' without an 'if'"),
        ("inputs { beats { } }", "expected input, filter or output"),
        ("filter { if [a] == { drop {} } }", "expected a field reference"),
        ("filter { if foo { drop {} } }", "'(' after a method name"),
        ("filter { if [a] =~ [b] { drop {} } }", "/regexp/ or a string"),
        ('filter { if ! "a" { drop {} } }', "'!' must be followed"),
        ("filter { if [a] not [b] { drop {} } }", "'in' after 'not'"),
        ('filter { mutate { a => "x"b => "y" } }', "separated by whitespace"),
        ("filter { mutate { a => x } }", "expected a value"),
        ("", "no input, filter or output section"),
    ],
)
def test_parser_rejects_broken_configs(broken: str, message: str) -> None:
    with pytest.raises(LogstashConfigError, match=re.escape(message)):
        parse(broken)


def test_parser_rejects_the_real_pipeline_with_one_brace_missing() -> None:
    text = PIPELINE.read_text()
    cut = text.rindex("}")
    with pytest.raises(LogstashConfigError, match="not closed"):
        parse(text[:cut] + text[cut + 1 :])
    line = text[: text.index("include_codec_tag")].count("\n") + 1
    with pytest.raises(LogstashConfigError, match=f"^line {line}, "):
        parse(text.replace("include_codec_tag => false", "include_codec_tag false"))


# --- (c) every field the configs name is a record field or one the pipeline adds


def test_pipeline_added_fields_are_not_record_fields() -> None:
    """Removing a "pipeline-added" field must never remove record data."""
    for added in PIPELINE_ADDED:
        assert added not in schema_fields()
        assert not any(f.startswith(added + ".") for f in schema_fields()), f"{added} holds record fields"


def test_logstash_field_references_exist_in_the_schema() -> None:
    refs = logstash_field_refs()
    assert {"event.id", "data_stream.dataset", "@version", "log.file"} <= refs, "the extraction sees the config"
    unknown = sorted(r for r in refs if not is_known_field(r))
    assert not unknown, f"pipeline/trayllm.conf names fields that no record has: {unknown}"


def test_logstash_removes_only_pipeline_added_fields() -> None:
    removed = set()
    for plugin in pipeline().plugins("filter"):
        removed.update(field_path(v) for v in plugin.get("remove_field", []))
    assert removed, "the pipeline removes the shipping tools' fields"
    assert removed <= set(PIPELINE_ADDED), sorted(removed - set(PIPELINE_ADDED))


def test_filebeat_field_references_exist_in_the_schema() -> None:
    config = filebeat()
    refs = filebeat_processor_fields(config["processors"])
    for out in filebeat_direct_block()["output.elasticsearch"]["indices"]:
        refs |= condition_fields({"equals": out["when.equals"]})
    assert {"event.id", "agent", "data_stream.dataset"} <= refs, "the extraction sees the config"
    unknown = sorted(r for r in refs if not is_known_field(r))
    assert not unknown, f"filebeat.yml names fields that no record has: {unknown}"
    dropped = {f for p in config["processors"] if "drop_fields" in p for f in p["drop_fields"]["fields"]}
    assert dropped <= set(PIPELINE_ADDED), sorted(dropped - set(PIPELINE_ADDED))


def test_nothing_in_the_pipeline_writes_record_content() -> None:
    """Filebeat and Logstash only decode, drop their own fields and set the _id: they add no text."""
    processors = filebeat()["processors"]
    assert {next(iter(p)) for p in processors} == {"drop_fields", "copy_fields"}
    targets = {pair["to"] for p in processors if "copy_fields" in p for pair in p["copy_fields"]["fields"]}
    assert targets == {"@metadata._id"}
    assert {p.name for p in pipeline().plugins("filter")} == {"json", "date", "mutate"}
    for plugin in pipeline().plugins("filter"):
        assert not {"add_field", "replace", "update", "copy", "rename"} & {k for k, _ in plugin.attributes}
    for inp in filebeat()["filebeat.inputs"]:
        assert "processors" not in inp and "fields" not in inp


# --- Filebeat inputs


def test_filebeat_has_one_filestream_input_per_record_file() -> None:
    inputs = filebeat()["filebeat.inputs"]
    assert len(inputs) == 2
    ids = [i["id"] for i in inputs]
    assert len(set(ids)) == len(ids), "filestream ids are unique"
    for inp, name in zip(inputs, ("requests.jsonl", "alerts.jsonl"), strict=True):
        assert inp["type"] == "filestream"
        paths = [resolve_env(p, {}) for p in inp["paths"]]
        assert f"/trayllm/{name}" in paths
        assert all(any(fnmatch.fnmatch(f"/trayllm/{name}.{n}", p) for p in paths) for n in range(1, 6)), (
            "the rotated copies are read too"
        )
        other = "alerts.jsonl" if name == "requests.jsonl" else "requests.jsonl"
        assert not any(fnmatch.fnmatch(f"/trayllm/{other}", p) for p in paths)
        assert "file_identity.native" in inp, "rotation is followed by inode, stated explicitly"
        assert inp["close.on_state_change.renamed"] is False
        assert inp["parsers"] == [
            {"ndjson": {"target": "", "expand_keys": True, "overwrite_keys": True, "add_error_key": True}}
        ]


def test_filebeat_direct_block_leaves_templates_to_trayllm() -> None:
    block = filebeat_direct_block()
    assert block["setup.template.enabled"] is False
    assert block["setup.ilm.enabled"] is False
    assert block["output.elasticsearch"]["password"] == "${LOGSTASH_INTERNAL_PASSWORD}"
    assert all(fnmatch.fnmatch(name, block["setup.template.pattern"]) for name in INDEX_PATTERNS)
    assert "output.logstash" in filebeat()


# --- (d) docker-compose


def test_compose_publishes_every_port_on_loopback_only() -> None:
    published = 0
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is not bound to 127.0.0.1"
        assert service.get("network_mode") != "host", name
    assert published >= 2, "Elasticsearch and Kibana are published"


def test_compose_runs_one_8_19_stack_version_for_all_images() -> None:
    services = compose()["services"]
    env = env_example()
    versions = {}
    for name, repository in IMAGES.items():
        image = services[name]["image"]
        assert image.startswith(repository + ":"), f"{name} runs {image}"
        tag = image.split(":", 1)[1]
        assert tag.startswith("${STACK_VERSION"), f"{name}: the version comes from STACK_VERSION"
        versions[name] = (resolve_env(tag, env), resolve_env(tag, {}))
    from_env, defaults = {v[0] for v in versions.values()}, {v[1] for v in versions.values()}
    assert len(from_env) == 1 and from_env == defaults, f"one stack version, in .env.example and compose: {versions}"
    (version,) = from_env
    assert re.fullmatch(r"8\.19\.\d+", version), version
    # The one-shot setup runs the Elasticsearch image too.
    assert resolve_env(services["setup"]["image"], env) == f"{IMAGES['elasticsearch']}:{version}"
    # Compatible with the Python client trayllm pins: the same major (client 8 talks to 8.x and 9.x).
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (client,) = [
        Requirement(r)
        for r in pyproject["project"]["optional-dependencies"]["elastic"]
        if Requirement(r).name == "elasticsearch"
    ]
    assert client.specifier.contains(version), f"stack {version} vs client {client}"
    assert not client.specifier.contains(f"{int(version.split('.')[0]) + 1}.0.0"), "client major is pinned"


def volumes(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for volume in service.get("volumes", []):
        source, target, *mode = _split_volume(volume)
        out.append((source, target, mode[0] if mode else "rw"))
    return out


def _split_volume(volume: str) -> list[str]:
    """Split SOURCE:TARGET[:MODE] where SOURCE holds ${VAR:-default} (with colons inside the braces)."""
    depth, parts, current = 0, [], ""
    for ch in volume:
        if ch == ":" and depth == 0:
            parts.append(current)
            current = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        current += ch
    return [*parts, current]


def test_compose_mounts_files_that_exist() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for source, _, _ in volumes(service):
            if source.startswith("."):
                assert (LOGSTASH_DIR / source).exists(), f"{name} mounts {source}, which is not in logstash/"
    logstash_mounts = {target: (source, mode) for source, target, mode in volumes(services["logstash"])}
    assert logstash_mounts["/usr/share/logstash/pipeline"] == ("./pipeline", "ro")
    assert (LOGSTASH_DIR / "pipeline" / PIPELINE.name).is_file()
    assert list((LOGSTASH_DIR / "pipeline").iterdir()) == [PIPELINE], "Logstash loads every file in pipeline/"
    filebeat_mounts = {target: (source, mode) for source, target, mode in volumes(services["filebeat"])}
    assert filebeat_mounts["/usr/share/filebeat/filebeat.yml"] == ("./filebeat.yml", "ro")
    # The record directory: read-only, where filebeat.yml looks (TRAYLLM_RECORDS_DIR in the service).
    records_dir = resolve_env(
        "${TRAYLLM_RECORDS_DIR}", dict(e.split("=", 1) for e in services["filebeat"]["environment"])
    )
    source, mode = filebeat_mounts[records_dir]
    assert mode == "ro"
    assert resolve_env(source, {"HOME": "/home/u"}) == "/home/u/.local/state/trayllm"
    assert resolve_env(source, {"HOME": "/home/u", "TRAYLLM_STATE_DIR": "/x"}) == "/x"
    setup = services["setup"]
    assert ("./setup/setup.sh", "/setup/setup.sh", "ro") in volumes(setup)
    assert setup["command"][-1] == "/setup/setup.sh"


def test_compose_takes_every_secret_from_env() -> None:
    text = COMPOSE.read_text()
    for key, value in env_example().items():
        if "PASSWORD" in key or "KEY" in key:
            assert value not in text, f"{key}'s example value is written into docker-compose.yml"
    for service in compose()["services"].values():
        for entry in service.get("environment", []):
            name, _, value = entry.partition("=")
            if "PASSWORD" in name or "ENCRYPTIONKEY" in name:
                assert value.startswith("${") and value.endswith("}"), entry
    es_env = dict(e.split("=", 1) for e in compose()["services"]["elasticsearch"]["environment"])
    assert es_env["xpack.security.enabled"] == "true"
    assert (LOGSTASH_DIR / ".gitignore").read_text().splitlines()[-1] == ".env"


def test_compose_health_and_order() -> None:
    services = compose()["services"]
    for name in ("elasticsearch", "kibana", "logstash", "filebeat"):
        assert "healthcheck" in services[name], name
    assert services["setup"]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    for name in ("kibana", "logstash"):
        assert services[name]["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert services["filebeat"]["depends_on"]["logstash"]["condition"] == "service_healthy"
    # The shippers start only on request, after `trayllm elastic setup` installed the templates.
    assert services["logstash"]["profiles"] == services["filebeat"]["profiles"] == ["logstash"]
    assert "profiles" not in services["elasticsearch"] and "profiles" not in services["kibana"]


# --- (e) the data stream names are the schema's


def test_data_stream_names_match_the_schema() -> None:
    assert {stream_name(out) for out in es_outputs()} == INDEX_PATTERNS
    for out in es_outputs():
        dataset = out.get("data_stream_dataset")
        schema = next(s for s in STREAMS if s.data_stream["dataset"] == dataset)
        assert stream_name(out) == schema.index_pattern
    indices = filebeat_direct_block()["output.elasticsearch"]["indices"]
    assert {i["index"] for i in indices} == INDEX_PATTERNS
    for entry in indices:
        schema = next(s for s in STREAMS if s.index_pattern == entry["index"])
        assert entry["when.equals"] == {"data_stream.dataset": schema.data_stream["dataset"]}
    role_pattern = re.search(r'"names": \["([^"]+)"\]', SETUP_SCRIPT.read_text()).group(1)
    assert all(fnmatch.fnmatch(name, role_pattern) for name in INDEX_PATTERNS)
    assert not fnmatch.fnmatch("logs-generic-default", role_pattern)


# --- the setup one-shot


def test_setup_script_is_valid_bash() -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    subprocess.run(["bash", "-n", str(SETUP_SCRIPT)], check=True)


class _FakeElasticsearch(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.requests.append(
            (self.command, self.path, self.headers.get("Authorization", ""), json.loads(body) if body else None)
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.end_headers()
        self.wfile.write(b'{"status":"green"}' if self.path.startswith("/_cluster") else b"{}")

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_es() -> Iterator[str]:
    _FakeElasticsearch.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeElasticsearch)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_setup(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("bash") is None or shutil.which("curl") is None:
        pytest.skip("needs bash and curl")
    environ = {
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "ES_URL": url,
        "ELASTIC_PASSWORD": "elastic-pw",
        "KIBANA_PASSWORD": "kibana-pw",
        "LOGSTASH_INTERNAL_PASSWORD": "logstash-pw",
        **env,
    }
    return subprocess.run(["bash", str(SETUP_SCRIPT)], env=environ, capture_output=True, text=True, timeout=60)


def test_setup_script_creates_the_writer_role_and_users(fake_es: str) -> None:
    result = run_setup(fake_es)
    assert result.returncode == 0, result.stderr
    calls = {(method, path): body for method, path, _, body in _FakeElasticsearch.requests}
    assert calls[("POST", "/_security/user/kibana_system/_password")] == {"password": "kibana-pw"}
    role = calls[("PUT", "/_security/role/trayllm_writer")]
    assert role == {
        "cluster": ["monitor"],
        "indices": [{"names": ["logs-trayllm.*"], "privileges": ["create_doc", "auto_configure"]}],
    }
    user = calls[("PUT", "/_security/user/trayllm_logstash")]
    assert user["password"] == "logstash-pw" and user["roles"] == ["trayllm_writer"]
    assert all(auth.startswith("Basic ") for _, _, auth, _ in _FakeElasticsearch.requests)
    # The user the Logstash pipeline logs in as is the one setup creates.
    for out in es_outputs():
        assert resolve_env(out.get("user"), {}) == "trayllm_logstash"


@pytest.mark.parametrize("bad", ['has"quote', "has\\backslash", "short", ""])
def test_setup_script_refuses_passwords_that_would_break_its_json(fake_es: str, bad: str) -> None:
    result = run_setup(fake_es, LOGSTASH_INTERNAL_PASSWORD=bad)
    assert result.returncode == 1
    assert "LOGSTASH_INTERNAL_PASSWORD" in result.stderr
    assert _FakeElasticsearch.requests == [], "nothing was sent"
