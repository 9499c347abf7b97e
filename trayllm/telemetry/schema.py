"""The request record's fields, in one table, so the writer, the validator and the index template never drift apart.

Every field a request record may carry is a row of ``REQUEST_FIELDS``: its dotted ECS path, its
Elasticsearch type and what it means. ``es_properties()`` turns the table into the ``properties`` of an
index template, ``validate_record()`` checks a document against it, and ``flatten()`` / ``nest()`` convert
between the nested JSON we write and the dotted paths the table (and Kibana) use.

Names follow ECS where ECS has one, OpenTelemetry's GenAI conventions (``gen_ai.*``) for the model call,
and the product namespace ``llm.*`` for the rest (ECS custom-field guidance: never ``labels.*`` for numbers).
Durations are nanoseconds (``long``) like ``event.duration``; ``*.pct`` fields are fractions from 0 to 1.
``event.duration`` and ``llm.ttft.ns`` are both measured from the request's arrival at the daemon, so the
queue wait is part of each; ``@timestamp`` is that arrival (wall clock), and the request ended
``event.duration`` later.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from trayllm.errors import record_error_types

# The Elasticsearch types the table uses, and the JSON values each accepts.
ES_TYPES = frozenset(
    {"date", "keyword", "constant_keyword", "long", "float", "scaled_float", "text", "boolean", "flattened"}
)

OUTCOMES = ("success", "failure", "unknown")
"""ECS ``event.outcome`` values: ``unknown`` is a request the client cancelled."""

ERROR_TYPES: tuple[str, ...] = tuple(record_error_types())
"""Every ``error.type`` a record may carry: the error classes' ``record_type`` and ``cancelled`` (trayllm.errors)."""

DATA_STREAM = {"type": "logs", "dataset": "trayllm.requests", "namespace": "default"}
"""The data stream records go to: ``logs-trayllm.requests-default``."""


@dataclass(frozen=True)
class FieldType:
    """One field of the record: Elasticsearch type, meaning, and what values it may take."""

    es_type: str
    description: str
    array: bool = False  # a JSON array of values of es_type is allowed (ES maps arrays to the element type)
    allowed: tuple[str, ...] | None = None  # closed set of keyword values
    scaling_factor: int | None = None  # scaled_float only

    def __post_init__(self) -> None:
        if self.es_type not in ES_TYPES:
            raise ValueError(f"unknown Elasticsearch type {self.es_type!r}")
        if (self.es_type == "scaled_float") != (self.scaling_factor is not None):
            raise ValueError("scaling_factor goes with scaled_float, and only with it")

    def mapping(self) -> dict[str, Any]:
        """This field's leaf mapping in an index template."""
        out: dict[str, Any] = {"type": self.es_type}
        if self.scaling_factor is not None:
            out["scaling_factor"] = self.scaling_factor
        return out


def _f(es_type: str, description: str, **kw: Any) -> FieldType:
    return FieldType(es_type, description, **kw)


REQUEST_FIELDS: dict[str, FieldType] = {
    # --- base, log
    "@timestamp": _f("date", "When the request arrived at the daemon (wall clock, UTC, ISO 8601)."),
    "log.level": _f(
        "keyword",
        "info for success or cancel, warn for a refused request (4xx), error otherwise.",
        allowed=("info", "warn", "error"),
    ),
    "message": _f("text", "One human-readable line summing the request up."),
    # --- event
    "event.id": _f("keyword", "The request id (x-request-id); also the Elasticsearch _id: re-shipping is idempotent."),
    "event.kind": _f("keyword", "Always 'event'.", allowed=("event",)),
    "event.category": _f("keyword", "ECS category: ['web'].", array=True),
    "event.outcome": _f("keyword", "success, failure, or unknown (the client cancelled).", allowed=OUTCOMES),
    "event.duration": _f("long", "End-to-end latency in nanoseconds: arrival to last byte (queue included)."),
    "event.end": _f(
        "date",
        "When the request ended: @timestamp + event.duration. The SLO windows count a request "
        "when it ended (it is judged then), live and in Elasticsearch alike.",
    ),
    "event.dataset": _f("keyword", "Always 'trayllm.requests' (equals data_stream.dataset)."),
    # --- who, where
    "user.name": _f("keyword", "The authenticated caller (socket peer user, or the token's user)."),
    "service.name": _f("keyword", "Always 'trayllm'."),
    "service.version": _f("keyword", "trayllm's version."),
    "host.name": _f("keyword", "The machine the daemon runs on."),
    # --- the model call (OpenTelemetry GenAI names)
    "gen_ai.operation.name": _f(
        "keyword",
        "The kind of call: 'chat' (a conversation, through the model's chat template) or 'text_completion' "
        "(a raw prompt: /v1/completions, Ollama's raw generate).",
        allowed=("chat", "text_completion"),
    ),
    "gen_ai.request.model": _f("keyword", "The model name the client asked for."),
    "gen_ai.response.model": _f("keyword", "The model that answered."),
    "gen_ai.request.max_tokens": _f("long", "max_tokens in effect (after any cap, see llm.max_tokens_capped)."),
    "gen_ai.request.temperature": _f("float", "Sampling temperature in effect."),
    "gen_ai.request.top_p": _f("float", "Nucleus-sampling top_p in effect."),
    "gen_ai.request.seed": _f("long", "The sampling seed, when the client gave one."),
    "gen_ai.request.stream": _f("boolean", "Whether the reply was streamed (SSE)."),
    "gen_ai.response.finish_reasons": _f(
        "keyword", "Why generation ended: stop, length, cancelled, error.", array=True
    ),
    "gen_ai.usage.input_tokens": _f("long", "Prompt tokens (after the chat template)."),
    "gen_ai.usage.output_tokens": _f("long", "Generated tokens."),
    # --- what is loaded (custom: llm.*)
    "llm.api": _f(
        "keyword",
        "The API the request came in on: 'openai' (/v1/...) or 'ollama' (/api/...).",
        allowed=("openai", "ollama"),
    ),
    "llm.request.ignored": _f(
        "keyword",
        "Fields and options the request sent that changed nothing (Ollama's API ignores some, as Ollama does; "
        "the reply's X-Trayllm-Ignored header names them too). Absent when there were none.",
        array=True,
    ),
    "llm.model.version": _f("keyword", "The model's content hash or revision."),
    "llm.model.dtype": _f("keyword", "Weights dtype: bfloat16, float16, float32."),
    "llm.model.quantization": _f("keyword", "none, nf4, int8, or the GGUF quantization it came from."),
    "llm.model.device": _f("keyword", "cpu, cuda, cuda:0, ... or remote (VRAM fields are absent when cpu)."),
    "llm.engine.name": _f("keyword", "The engine that served: local, remote, or its [[engines]] name."),
    "llm.engine.url": _f("keyword", "A remote engine's upstream base URL (absent for the local engine)."),
    # --- timings and speed
    "llm.ttft.ns": _f("long", "Time to first token in nanoseconds, from arrival (queue included)."),
    "llm.queue.ns": _f("long", "Time waiting in the daemon's queue before generation started, nanoseconds."),
    "llm.tokens_per_second": _f("float", "Decode speed: output tokens after the first per second of decoding."),
    "llm.max_tokens_capped": _f("boolean", "True when the daemon lowered the client's max_tokens."),
    # --- memory (CUDA only; absent on CPU)
    "llm.vram.peak.bytes": _f("long", "torch.cuda.max_memory_allocated over the request's lifetime."),
    "llm.vram.peak.pct": _f(
        "scaled_float",
        "llm.vram.peak.bytes / llm.vram.total.bytes (0-1); for a remote engine, the upstream's peak KV-cache "
        "usage (vLLM's kv_cache_usage_perc) while the request ran. The SLO is < 0.8.",
        scaling_factor=1000,
    ),
    "llm.vram.total.bytes": _f("long", "Total memory of the device the model runs on."),
    "llm.vram.nvml.used.bytes": _f("long", "NVML's device-wide used memory at the end of the request."),
    "llm.vram.nvml.pct": _f(
        "scaled_float", "NVML used / NVML total (0-1), every process on the device included.", scaling_factor=1000
    ),
    # --- HTTP, errors, tracing
    "http.response.status_code": _f("long", "The HTTP status the client got (200 also for a stream that failed)."),
    "error.type": _f(
        "keyword",
        "Why the request failed or stopped early; set whenever event.outcome is not success.",
        allowed=ERROR_TYPES,
    ),
    "error.message": _f("text", "The error message the client saw."),
    "trace.id": _f("keyword", "W3C trace-id from the request's traceparent header."),
    "span.id": _f("keyword", "W3C parent-id from the traceparent header: the caller's span that made this request."),
    # --- data stream (constant per stream; constant_keyword like Elastic's own logs template)
    "data_stream.type": _f("constant_keyword", "Always 'logs'."),
    "data_stream.dataset": _f("constant_keyword", "Always 'trayllm.requests'."),
    "data_stream.namespace": _f("constant_keyword", "Always 'default'."),
    # --- content: ONLY when the user turned log_content on; absent otherwise
    "gen_ai.input.messages": _f("flattened", "Opt-in (log_content): the chat messages sent, [{role, content}]."),
    "gen_ai.output.text": _f("text", "Opt-in (log_content): the reply text."),
}

REQUIRED: frozenset[str] = frozenset(
    {
        "@timestamp",
        "log.level",
        "message",
        "event.id",
        "event.kind",
        "event.category",
        "event.outcome",
        "event.duration",
        "event.end",
        "event.dataset",
        "service.name",
        "service.version",
        "host.name",
        "gen_ai.operation.name",
        "data_stream.type",
        "data_stream.dataset",
        "data_stream.namespace",
    }
)
"""Fields every record carries, whatever happened to the request (a request refused before its body was
parsed still has these)."""

CONTENT_FIELDS: frozenset[str] = frozenset({"gen_ai.input.messages", "gen_ai.output.text"})
"""Prompt and reply text: written only when the user opted in with ``log_content``."""

ALERT_DATA_STREAM = {"type": "logs", "dataset": "trayllm.alerts", "namespace": "default"}
"""The data stream alert transitions go to: ``logs-trayllm.alerts-default``."""

ALERT_SEVERITIES = ("critical", "warning")

ALERT_FIELDS: dict[str, FieldType] = {
    "@timestamp": _f("date", "When the alert changed state (wall clock, UTC, ISO 8601)."),
    "log.level": _f(
        "keyword",
        "error for a critical alert firing, warn for others firing, info when resolved.",
        allowed=("info", "warn", "error"),
    ),
    "message": _f("text", "What happened, in one line (the notification text)."),
    "event.id": _f(
        "keyword",
        "The transition's id, '<daemon boot id>-<sequence>': also the /v1/events id and the Elasticsearch _id.",
    ),
    "event.kind": _f("keyword", "Always 'alert'.", allowed=("alert",)),
    "event.action": _f("keyword", "The transition: firing or resolved.", allowed=("firing", "resolved")),
    "event.dataset": _f("keyword", "Always 'trayllm.alerts' (equals data_stream.dataset)."),
    "rule.name": _f(
        "keyword",
        "The alert key: oom, slo.<objective>, burn.<objective>.<fast_burn|slow_burn>, engine.unreachable.<engine>.",
    ),
    "llm.alert.severity": _f(
        "keyword", "critical (OOM, an unreachable engine) or warning (an objective).", allowed=ALERT_SEVERITIES
    ),
    "llm.alert.value": _f("float", "The measured value that caused the transition (absent for OOM)."),
    "llm.alert.threshold": _f("float", "The threshold it crossed (absent for OOM)."),
    "llm.alert.request_ids": _f("keyword", "OOM: the requests that were in the failed forward pass.", array=True),
    "llm.oom.phase": _f("keyword", "OOM: prefill or decode.", allowed=("prefill", "decode")),
    "llm.oom.batch_size": _f("long", "OOM: requests in the failed forward pass."),
    "llm.oom.prompt_tokens": _f("long", "OOM: prompt tokens of those requests, summed."),
    "llm.oom.max_tokens": _f("long", "OOM: the largest max_tokens among them."),
    "llm.oom.retried": _f("boolean", "OOM: whether the requests were retried once (oom_retry)."),
    "llm.vram.allocated.bytes": _f("long", "OOM: torch.cuda.memory_allocated after the cache was emptied."),
    "llm.vram.reserved.bytes": _f("long", "OOM: torch.cuda.memory_reserved after the cache was emptied."),
    "llm.vram.total.bytes": REQUEST_FIELDS["llm.vram.total.bytes"],
    "llm.model.version": REQUEST_FIELDS["llm.model.version"],
    "llm.engine.url": _f("keyword", "engine.unreachable.<name>: the upstream base URL that stopped answering."),
    "gen_ai.response.model": _f("keyword", "The model loaded when the alert changed state."),
    "service.name": REQUEST_FIELDS["service.name"],
    "service.version": REQUEST_FIELDS["service.version"],
    "host.name": REQUEST_FIELDS["host.name"],
    "data_stream.type": REQUEST_FIELDS["data_stream.type"],
    "data_stream.dataset": _f("constant_keyword", "Always 'trayllm.alerts'."),
    "data_stream.namespace": REQUEST_FIELDS["data_stream.namespace"],
}

ALERT_REQUIRED: frozenset[str] = frozenset(
    {
        "@timestamp",
        "log.level",
        "message",
        "event.id",
        "event.kind",
        "event.action",
        "event.dataset",
        "rule.name",
        "llm.alert.severity",
        "service.name",
        "service.version",
        "host.name",
        "data_stream.type",
        "data_stream.dataset",
        "data_stream.namespace",
    }
)


def _outcome_needs_error_type(flat: Mapping[str, Any]) -> list[str]:
    if flat.get("event.outcome") in ("failure", "unknown") and "error.type" not in flat:
        return [f"error.type: required when event.outcome is {flat['event.outcome']}"]
    return []


@dataclass(frozen=True)
class RecordSchema:
    """One record stream's fields, required set and data stream: the table everything else derives from."""

    name: str
    fields: Mapping[str, FieldType]
    required: frozenset[str]
    data_stream: Mapping[str, str]
    content_fields: frozenset[str] = frozenset()
    rules: Callable[[Mapping[str, Any]], list[str]] = lambda flat: []  # cross-field checks on the flat record

    def __post_init__(self) -> None:
        """A path may not be both a leaf and a parent (``a.b`` and ``a.b.c``): ES could not map it."""
        for path in self.fields:
            parts = path.split(".")
            for i in range(1, len(parts)):
                if ".".join(parts[:i]) in self.fields:
                    raise ValueError(f"{path!r} is below the leaf field {'.'.join(parts[:i])!r}")
        unknown = (self.required | self.content_fields) - self.fields.keys()
        if unknown:
            raise ValueError(f"{self.name}: required/content fields not in the table: {sorted(unknown)}")

    @property
    def object_leaves(self) -> frozenset[str]:
        """Fields whose value is one JSON object (``flattened``): not walked into."""
        return frozenset(p for p, f in self.fields.items() if f.es_type == "flattened")

    @property
    def index_pattern(self) -> str:
        """``logs-trayllm.requests-default``: the data stream's name."""
        d = self.data_stream
        return f"{d['type']}-{d['dataset']}-{d['namespace']}"

    def es_properties(self) -> dict[str, Any]:
        """The ``mappings.properties`` of an index template, nested the way Elasticsearch wants it."""
        root: dict[str, Any] = {}
        for path, field in self.fields.items():
            *parents, leaf = path.split(".")
            node = root
            for part in parents:
                node = node.setdefault(part, {"properties": {}})["properties"]
            node[leaf] = field.mapping()
        return root

    def flatten(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Nested document → ``{dotted.path: value}``.

        Objects are walked into, except under a ``flattened`` field (its value is one leaf). Lists are values.
        An empty object contributes nothing. Keys that already hold dots are joined as they are.
        """
        out: dict[str, Any] = {}
        leaves = self.object_leaves

        def walk(prefix: str, node: Mapping[str, Any]) -> None:
            for key, value in node.items():
                path = f"{prefix}.{key}" if prefix else str(key)
                if isinstance(value, Mapping) and path not in leaves:
                    walk(path, value)
                else:
                    out[path] = value

        walk("", record)
        return out

    def validate(self, record: Mapping[str, Any]) -> list[str]:
        """Everything wrong with a nested document; an empty list means it is a good record.

        Checks: every field is in the table; each value has the JSON type its ES type needs (arrays only
        where the field allows them); closed keyword sets; required fields present; keys are nested objects,
        not dotted strings; the schema's cross-field ``rules``; ``data_stream.*`` match the stream.
        """
        problems: list[str] = []
        leaves = self.object_leaves

        def dotted_keys(prefix: str, node: Mapping[str, Any]) -> None:
            for key, value in node.items():
                path = f"{prefix}.{key}" if prefix else str(key)
                if "." in str(key):
                    problems.append(f"{path}: dotted key in a nested document (write nested objects)")
                if isinstance(value, Mapping) and path not in leaves:
                    dotted_keys(path, value)

        dotted_keys("", record)
        flat = self.flatten(record)
        for path, value in flat.items():
            field = self.fields.get(path)
            if field is None:
                problems.append(f"{path}: not a {self.name}-record field")
                continue
            if value is None:
                problems.append(f"{path}: null (leave an absent field out instead)")
                continue
            if isinstance(value, list) and field.es_type != "flattened":
                if not field.array:
                    problems.append(f"{path}: {field.es_type} wants one value, got an array")
                    continue
                problems.extend(p for p in (_type_problem(f"{path}[{i}]", field, v) for i, v in enumerate(value)) if p)
                continue
            problem = _type_problem(path, field, value)
            if problem:
                problems.append(problem)
        problems.extend(f"{path}: required field missing" for path in sorted(self.required - flat.keys()))
        problems.extend(self.rules(flat))
        for part, expected in self.data_stream.items():
            value = flat.get(f"data_stream.{part}")
            if value is not None and value != expected:
                problems.append(f"data_stream.{part}: {value!r} is not this stream's {expected!r}")
        return problems

    def markdown_table(self) -> str:
        """The field table of docs/RECORDS.md, generated here so the docs cannot drift from the schema."""
        rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
        for path, field in self.fields.items():
            kind = field.es_type + ("[]" if field.array else "")
            rows.append(f"| `{path}` | {kind} | {'yes' if path in self.required else ''} | {field.description} |")
        return "\n".join(rows)


REQUESTS = RecordSchema("request", REQUEST_FIELDS, REQUIRED, DATA_STREAM, CONTENT_FIELDS, _outcome_needs_error_type)
ALERTS = RecordSchema("alert", ALERT_FIELDS, ALERT_REQUIRED, ALERT_DATA_STREAM)


def nest(flat: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> dict[str, Any]:
    """``{dotted.path: value}`` (or pairs) → nested document, in the order given. The inverse of ``flatten``."""
    items = flat.items() if isinstance(flat, Mapping) else flat
    root: dict[str, Any] = {}
    for path, value in items:
        # "@timestamp" and friends have no dots; everything else nests at each dot
        *parents, leaf = path.split(".")
        node = root
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{path!r}: {part!r} is already a value, not an object")
            node = child
        if isinstance(node.get(leaf), dict):
            raise ValueError(f"{path!r} is already an object")
        node[leaf] = value
    return root


def _is_iso_datetime(value: str) -> bool:
    try:
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return False
    return parsed.tzinfo is not None


def _type_problem(path: str, field: FieldType, value: Any) -> str | None:
    """Why ``value`` cannot be indexed as ``field`` (None if it can)."""
    t = field.es_type
    if t == "flattened":
        ok = isinstance(value, (dict, list))
    elif t == "date":
        ok = isinstance(value, str) and _is_iso_datetime(value)
    elif t in ("keyword", "constant_keyword", "text"):
        ok = isinstance(value, str)
    elif t == "long":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif t in ("float", "scaled_float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:  # boolean
        ok = isinstance(value, bool)
    if not ok:
        want = (
            "an ISO 8601 time with a zone"
            if t == "date"
            else {
                "flattened": "an object or array",
                "keyword": "a string",
                "constant_keyword": "a string",
                "text": "a string",
                "long": "an integer",
                "float": "a finite number",
                "scaled_float": "a finite number",
                "boolean": "true or false",
            }[t]
        )
        return f"{path}: {t} wants {want}, got {type(value).__name__} {value!r:.60}"
    if field.allowed is not None and value not in field.allowed:
        return f"{path}: {value!r} is not one of {', '.join(field.allowed)}"
    return None


# The request stream's table as plain functions: what most callers want.
es_properties = REQUESTS.es_properties
flatten = REQUESTS.flatten
validate_record = REQUESTS.validate
markdown_table = REQUESTS.markdown_table
