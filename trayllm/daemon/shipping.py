"""The daemon's shipping thread: the same ``Shipper`` as ``trayllm ship``, started when ``es_url`` is set.

It runs beside serving and only reads files serving already wrote, so serving never waits for it. If
another shipper holds the lock (a ``trayllm ship`` the user started), the daemon says so in its log and
does not ship; its status shows why.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from trayllm.config import Settings
from trayllm.elastic.connection import ElasticTarget
from trayllm.elastic.shipper import Shipper
from trayllm.errors import TrayllmError

log = logging.getLogger(__name__)


class ShippingThread:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.shipper: Shipper | None = None
        self.problem: str | None = None
        self._thread = threading.Thread(target=self._run, name="trayllm-shipper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            target = ElasticTarget.from_settings(self.settings)
            shipper = Shipper(self.settings, target.client())
            shipper.open()
        except TrayllmError as exc:
            self.problem = exc.message
            log.error("not shipping records: %s", exc.message)
            return
        self.shipper = shipper
        log.info("shipping records", extra={"es_url": target.url})
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
