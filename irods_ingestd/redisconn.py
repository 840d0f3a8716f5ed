"""One way to reach Redis: a URL (TCP or unix socket) or Sentinel."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from .config import RedisConfig

# Fail fast (about a second) when Redis is away: the daemon keeps settling files meanwhile and tries
# again on its own schedule, and a worker's job is retried; a long client-side retry would stall both.
_RETRY = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3)


def connect(cfg: RedisConfig) -> redis.Redis:
    """A client for cfg; nothing is sent until the first command.

    RQ stores pickled bytes, so responses are never decoded.
    """
    if cfg.sentinels:
        from redis.sentinel import Sentinel

        from .sentinel_pool import FollowingSentinelPool

        hosts = [(h, int(p)) for h, p in (s.rsplit(":", 1) for s in cfg.sentinels)]
        sentinel = Sentinel(hosts, socket_timeout=5, socket_connect_timeout=5)
        # a pool that moves its connections to a new master as soon as the sentinels name one (sentinel_pool.py)
        return sentinel.master_for(cfg.sentinel_master, connection_pool_class=FollowingSentinelPool,
                                   socket_timeout=30, socket_connect_timeout=5, retry=_RETRY)
    return redis.Redis.from_url(cfg.url, socket_timeout=30, socket_connect_timeout=5,
                                health_check_interval=30, retry=_RETRY)
