"""The daemon's shipping thread: the same ``Shipper`` as ``trayllm ship``, started when ``es_url`` is set.

It only reads files serving already wrote, so serving never waits for it. It also keeps out of serving's
way: it ships while the engine has nothing queued or running and has been quiet for ``QUIET_S``, and
otherwise waits up to ``Shipper.max_defer_s`` between batches. Without that, shipping a backlog of
100,000 records took CPU and the GIL from the inference thread and more than doubled request latency on
a 2-core machine (docs/BENCHMARKS.md). The thread also runs at a lower CPU priority where the OS allows it.

If another shipper holds the lock (a ``trayllm ship`` the user started), the daemon says so in its log and
does not ship; its status shows why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any

from trayllm.config import Settings
from trayllm.elastic.connection import ElasticTarget
from trayllm.elastic.shipper import Shipper
from trayllm.engine.interface import ServingEngine
from trayllm.errors import TrayllmError

log = logging.getLogger(__name__)

QUIET_S = 1.0  # serving must have been idle this long before a batch goes out
NICENESS = 10


class ShippingThread:
    def __init__(self, settings: Settings, engine: ServingEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.shipper: Shipper | None = None
        self.problem: str | None = None
        self._last_activity = 0.0
        self._thread = threading.Thread(target=self._run, name="trayllm-shipper", daemon=True)

    def observe(self, _record: object) -> None:
        """A request just ended (a record observer: called on the serving threads, so only a timestamp)."""
        self._last_activity = time.monotonic()

    def busy(self) -> bool:
        engine = self.engine
        return engine.in_flight > 0 or engine.queue_depth > 0 or time.monotonic() - self._last_activity < QUIET_S

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: per-thread niceness; elsewhere a no-op
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        try:
            target = ElasticTarget.from_settings(self.settings)
            shipper = Shipper(self.settings, target.client(), busy=self.busy)
            shipper.open()
        except TrayllmError as exc:
            self.problem = exc.message
            log.error("not shipping records: %s", exc.message)
            return
        self.shipper = shipper
        log.info("shipping records", extra={"es_url": target.shown_url})
        try:
            shipper.run()
        except Exception:  # shipping must never take the daemon down
            log.exception("the shipper stopped")
            self.problem = "the shipper stopped after an unexpected error (see the daemon log)"
        finally:
            shipper.close()

    def stats(self) -> dict[str, Any]:
        """For /v1/status: the shipper's counters, or why it is not shipping."""
        if self.shipper is None:
            return {"state": "not shipping" if self.problem else "starting", "last_error": self.problem}
        return self.shipper.stats.to_dict()

    def stop(self) -> None:
        if self.shipper is not None:
            self.shipper.stop()
        self._thread.join(timeout=10)
