"""SIGHUP: apply a changed configuration to a running daemon, or refuse it and keep the running one.

Refused, with the reason in the journal: a config that does not load (every problem named, aliasing of
zone paths and move_to included), a zone added that another daemon runs, or a Redis that cannot say so.
Applied: zones removed (their lock released), added (taken, recounted) or changed; `[redis]`,
`[queue]` and `[metrics]` changes wait for a restart.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import redis

from .config import Config, ConfigError, load
from .daemonlock import ZoneTaken
from .messages import MessageId

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("irods_ingestd.daemon")


def _refused(d: Daemon, why: str) -> None:
    log.error("reload refused, keeping the running configuration:\n%s", why, extra={"message_id": MessageId.RELOAD})
    d.notifier.ready(d.status_line())


def reload(d: Daemon) -> None:
    d.notifier.reloading()
    try:
        new = load(d.cfg.source, check_paths=False)
    except ConfigError as e:
        _refused(d, str(e))
        return
    old = {z.name: z for z in d.cfg.zones}
    cur = {z.name: z for z in new.zones}
    added = sorted(cur.keys() - old.keys())
    moved = sorted(n for n in cur.keys() & old.keys()
                   if (cur[n].path, cur[n].collection) != (old[n].path, old[n].collection))
    if (added or moved) and d.owner is not None:
        d.owner.configs = dict(cur)
        try:
            d.owner.claim(moved)  # a zone's path or collection changed: into another daemon's zone?
            d.owner.acquire(added)
        except ZoneTaken as e:
            d.owner.configs = dict(old)
            try:
                d.owner.claim(moved)  # back to where the running zones are
            except (ZoneTaken, redis.RedisError):
                pass
            _refused(d, f"{new.source}: {e}")
            return
        except redis.RedisError as e:
            d.owner.configs = dict(old)
            _refused(d, f"Redis does not answer, so this daemon cannot take zone(s) {', '.join(added + moved)}: {e}")
            return
        d.recounts.append(d.new_recount(added))
    elif d.owner is not None:
        d.owner.configs = dict(cur)
    for name in old.keys() - cur.keys():
        d.remove_zone(name)
        if d.owner is not None:
            try:
                d.owner.release([name])
            except redis.RedisError:
                pass  # its key expires by itself
    for name, z in cur.items():
        if name in old and old[name] != z:
            d.remove_zone(name)
        if name not in d.zones:
            d.add_zone(z)
    for part in ("redis", "queue", "metrics"):
        if getattr(new, part) != getattr(d.cfg, part):
            log.warning("reload: the [%s] settings changed; they take effect at the next restart", part)
    d.cfg = Config(source=new.source, redis=d.cfg.redis, irods=new.irods, queue=d.cfg.queue, zones=new.zones,
                   log_level=new.log_level)
    logging.getLogger().setLevel(new.log_level.upper())
    log.info("configuration reloaded: %d zones (%s)", len(d.zones), ", ".join(d.zones),
             extra={"message_id": MessageId.RELOAD})
    d.notifier.ready(d.status_line())
