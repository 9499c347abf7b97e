"""/v1/status's wire types and their engine twins: the same fields, converted in one place (daemon_status)."""

from __future__ import annotations

import dataclasses
import typing
from types import SimpleNamespace

import pytest

from trayllm import api_status
from trayllm.daemon.app import daemon_status
from trayllm.elastic.shipper import ShipperStats
from trayllm.engine import engine
from trayllm.engine.handle import Counters
from trayllm.engine.types import ModelInfo

# (engine type, wire type, fields deliberately on one side only). None today: a name put here needs a comment
# saying why the other side goes without it.
PAIRS = [
    (ModelInfo, api_status.ModelStatus, frozenset()),
    (Counters, api_status.RequestCounters, frozenset()),
    (ShipperStats, api_status.ShippingStatus, frozenset()),
]

INFO = ModelInfo(
    name="m",
    version="v1",
    source="/models/m",
    device="cuda:1",
    dtype="bfloat16",
    quantization="nf4",
    context_length=4096,
    device_index=1,
    memory_total_bytes=8 << 30,
    device_uuid="GPU-1234",
    engine="gpu-box",
    engine_url="http://gpu:8000/v1",
)
COUNTERS = Counters(completed=1, cancelled=2, failed=3, rejected=4, tokens_in=5, tokens_out=6)
SHIPPER = ShipperStats(
    state="backing off",
    delivered=1,
    duplicates=2,
    dead_lettered=3,
    unreadable=1,
    retries=4,
    backlog_bytes=5,
    last_error="refused",
    last_delivery=1.5,
)


@pytest.mark.parametrize(("internal", "wire", "deliberate"), PAIRS, ids=lambda p: getattr(p, "__name__", ""))
def test_a_field_added_on_one_side_is_not_forgotten_on_the_other(internal, wire, deliberate):
    engine_side = {f.name for f in dataclasses.fields(internal)}
    assert engine_side ^ set(wire.model_fields) == deliberate


def test_the_samples_below_set_every_field_off_its_default():
    for sample in (INFO, COUNTERS, SHIPPER):
        for f in dataclasses.fields(sample):
            assert getattr(sample, f.name) != f.default, f"{type(sample).__name__}.{f.name}: pick another value"


def test_the_status_state_is_the_engines_state_type():
    assert engine.EngineState is api_status.EngineState
    assert api_status.DaemonStatus.model_fields["state"].annotation == api_status.EngineState
    assert typing.get_args(api_status.EngineState) == ("loading", "warming", "ready", "failed", "reloading", "draining")


def _engine(info: ModelInfo | None) -> SimpleNamespace:
    return SimpleNamespace(
        info=info,
        memory=lambda: None,
        counters=COUNTERS,
        state="ready",
        paused=None,
        progress=None,
        error=None,
        queue_depth=0,
        in_flight=0,
        backlogged=False,
        vram_blocked=False,
        started_at=0.0,
    )


SETTINGS = SimpleNamespace(queue_size=8, max_batch=4, backlog_max_tokens=1000)
CONTROL = SimpleNamespace(
    bus=SimpleNamespace(boot_id="b"),
    slo_report=lambda: SimpleNamespace(objectives=[]),
    alerts=SimpleNamespace(firing=list),
)


def test_daemon_status_carries_every_engine_field_through():
    status = daemon_status(_engine(INFO), SETTINGS, CONTROL, shipping=SHIPPER.to_dict)
    assert status.model is not None and status.model.model_dump() == dataclasses.asdict(INFO)
    assert status.requests.model_dump() == dataclasses.asdict(COUNTERS)
    assert status.shipping is not None and status.shipping.model_dump() == SHIPPER.to_dict()
    assert api_status.DaemonStatus.model_validate_json(status.model_dump_json()) == status  # what a client reads back


def test_daemon_status_without_a_model_or_shipping():
    status = daemon_status(_engine(None), SETTINGS, CONTROL)
    assert (status.model, status.shipping, status.state) == (None, None, "ready")
