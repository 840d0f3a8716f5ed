"""The daemon's hold on its zones: taken at start (or once Redis answers), renewed every second,
refused or given up when another daemon holds one (`daemonlock`).

A mixin of `Daemon` (kept apart to keep each module small; see `Daemon` for the attributes it sets up).
"""

from __future__ import annotations

import logging
import time

import redis

from .daemonlock import ZoneOwnership, ZoneTaken
from .ledger import Ledger
from .messages import MessageId
from .recount import Recount
from .redishealth import RedisHealth
from .zone import Zone

log = logging.getLogger("irods_ingestd.daemon")


class Owning:
    """One daemon per zone: take, renew, refuse (see `Daemon` for the attributes it sets up)."""

    owner: ZoneOwnership | None
    health: RedisHealth
    recounts: list[Recount]
    zones: dict[str, Zone]
    exit_code: int
    _owned: bool
    _stop: bool
    _renewed: float
    ledger: Ledger

    def new_recount(self, zones: list[str]) -> Recount:
        return Recount(self.ledger, zones)

    def _take_zones(self, names: list[str]) -> None:
        """Take these zones for this daemon and recount their `queued` counters; ZoneTaken if another
        daemon runs one. With Redis away, taking them is tried again until it answers (nothing is
        queued meanwhile)."""
        if self.owner is None:
            return
        try:
            for zone, h in self.owner.acquire(names):
                log.warning("zone %s: %s is gone (no such process); this daemon takes the zone over", zone,
                            h.describe(), extra={"fields": {"INGEST_ZONE": zone}})
        except redis.RedisError as e:
            self.health.error(e)
            self._owned = False
            return
        self._owned = True
        self.recounts.append(self.new_recount(names))

    def _refuse(self, e: ZoneTaken, what: str) -> None:
        log.error("%s: %s; one daemon runs a zone (stop that daemon, or give this one other zones)", what, e,
                  extra={"message_id": MessageId.DAEMON_STOPPING, "fields": {"INGEST_ZONE": e.zone}})
        self.exit_code = 1
        self._stop = True

    def _keep_zones(self) -> None:
        """Renew this daemon's zones (or take them, if Redis was away at start); stop if another daemon
        took one over meanwhile (this one was stopped or cut off from Redis longer than the lock's TTL)."""
        if self.owner is None or self.exit_code:
            return
        try:
            if not self._owned:
                self._take_zones(list(self.zones))
            else:
                self.owner.renew()
            self._renewed = time.monotonic()
        except ZoneTaken as e:
            self._owned = False
            self._refuse(e, "stopping: another daemon took over a zone of this one")
