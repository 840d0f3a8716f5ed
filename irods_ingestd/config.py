"""Configuration: load a TOML file, validate it, and return typed dataclasses.

The pipeline is load (tomllib) → validate (one pass collecting every problem) → build the dataclasses.
Every message names the file, the table (zone) and the field, so `irods-ingestd check-config` can say
exactly what is wrong.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config_metrics, config_walk
from .config_metrics import MetricsConfig
from .config_parse import QUEUE_NAME, Checker, parse_duration, parse_size
from .config_walk import WalkConfig
from .config_zone import (  # noqa: F401 (re-exported: the zone's config is part of the config's API)
    AFTER_ACTIONS,
    DEFAULT_TEMP_PATTERNS,
    MIN_SETTLE,
    MODES,
    WATCHERS,
    ZoneConfig,
    check_zones,
)

DEFAULT_CONFIG = Path("/etc/irods-ingestd/config.toml")
CONFIG_ENV = "IRODS_INGESTD_CONFIG"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {p}" for p in self.problems)


@dataclass(frozen=True)
class RedisConfig:
    url: str = "redis://127.0.0.1:6379/0"
    sentinels: tuple[str, ...] = ()
    sentinel_master: str = "mymaster"
    prefix: str = "ingestd"


@dataclass(frozen=True)
class IrodsConfig:
    environment_file: Path | None = None
    password_file: Path | None = None
    password: str | None = field(default=None, repr=False)
    connection_timeout: float = 120.0


@dataclass(frozen=True)
class QueueConfig:
    name: str = "irods-ingestd"
    batch_files: int = 50
    batch_bytes: int = 256 << 20
    max_backlog: int = 200_000
    job_timeout: float = 3600.0
    retries: int = 5
    backoff: float = 2.0
    backoff_max: float = 300.0
    # a file whose transient errors outlast the retries goes back to be queued again (iRODS down for an
    # upgrade needs no human) until it has been failing this long; then it is listed as failed
    give_up_after: float = 86400.0
    # a job's timeout is job_timeout plus its bytes at this rate (bytes/s): large files are never cut off
    slowest_rate: float = 5 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    source: str
    redis: RedisConfig
    irods: IrodsConfig
    queue: QueueConfig
    zones: tuple[ZoneConfig, ...]
    log_level: str = "info"
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    walk: WalkConfig = field(default_factory=WalkConfig)

    def zone(self, name: str) -> ZoneConfig:
        for z in self.zones:
            if z.name == name:
                return z
        raise KeyError(name)


_TOP_KEYS = {"log_level", "redis", "irods", "queue", "zone", "metrics", "walk"}
_REDIS_KEYS = {"url", "sentinels", "sentinel_master", "prefix"}
_IRODS_KEYS = {"environment_file", "password_file", "password", "connection_timeout"}
_QUEUE_KEYS = {
    "name", "batch_files", "batch_bytes", "max_backlog", "job_timeout",
    "retries", "backoff", "backoff_max", "give_up_after", "slowest_rate",
}




def _check_redis(c: Checker, data: Mapping[str, Any]) -> RedisConfig:
    rraw = c.get("top level", data, "redis", dict, {})
    c.unknown("[redis]", rraw, _REDIS_KEYS)
    url = c.get("[redis]", rraw, "url", str, RedisConfig.url)
    if not re.match(r"^(redis|rediss|unix)://", url):
        c.problems.append(f"[redis].url: {url!r} must start with redis://, rediss:// or unix://")
    sentinels = c.strings("[redis]", rraw, "sentinels", ())
    for s in sentinels:
        if not re.match(r"^[^:\s]+:\d+$", s):
            c.problems.append(f"[redis].sentinels: {s!r} must be host:port")
    redis_cfg = RedisConfig(
        url=url, sentinels=sentinels,
        sentinel_master=c.get("[redis]", rraw, "sentinel_master", str, "mymaster"),
        prefix=c.get("[redis]", rraw, "prefix", str, "ingestd"),
    )
    return redis_cfg


def _check_irods(c: Checker, data: Mapping[str, Any], check_paths: bool) -> IrodsConfig:
    iraw = c.get("top level", data, "irods", dict, {})
    c.unknown("[irods]", iraw, _IRODS_KEYS)
    env_s = c.get("[irods]", iraw, "environment_file", str, None)
    pw_s = c.get("[irods]", iraw, "password_file", str, None)
    irods_cfg = IrodsConfig(
        environment_file=Path(env_s) if env_s else None,
        password_file=Path(pw_s) if pw_s else None,
        password=c.get("[irods]", iraw, "password", str, None),
        connection_timeout=c.conv("[irods]", iraw, "connection_timeout", parse_duration, 120.0),
    )
    for key, given in (("environment_file", env_s), ("password_file", pw_s)):
        if given is not None and not Path(given).is_absolute():  # else relative to wherever it was started
            c.problems.append(f"[irods].{key}: {given!r} must be an absolute path")
        elif given is not None and "\0" in given:
            c.problems.append(f"[irods].{key}: {given!r} contains a NUL character")
    if irods_cfg.environment_file is None:
        c.problems.append("[irods].environment_file: missing (path of an irods_environment.json)")
    elif check_paths and irods_cfg.environment_file.is_absolute() and "\0" not in str(env_s) and \
            not irods_cfg.environment_file.is_file():
        c.problems.append(f"[irods].environment_file: {env_s} does not exist or is not a file")
    return irods_cfg


def _check_queue(c: Checker, data: Mapping[str, Any]) -> QueueConfig:
    qraw = c.get("top level", data, "queue", dict, {})
    c.unknown("[queue]", qraw, _QUEUE_KEYS)
    q = QueueConfig()
    queue_cfg = QueueConfig(
        name=c.get("[queue]", qraw, "name", str, q.name),
        batch_files=c.get("[queue]", qraw, "batch_files", int, q.batch_files),
        batch_bytes=c.conv("[queue]", qraw, "batch_bytes", parse_size, q.batch_bytes),
        max_backlog=c.get("[queue]", qraw, "max_backlog", int, q.max_backlog),
        job_timeout=c.conv("[queue]", qraw, "job_timeout", parse_duration, q.job_timeout),
        retries=c.get("[queue]", qraw, "retries", int, q.retries),
        backoff=c.conv("[queue]", qraw, "backoff", parse_duration, q.backoff),
        backoff_max=c.conv("[queue]", qraw, "backoff_max", parse_duration, q.backoff_max),
        give_up_after=c.conv("[queue]", qraw, "give_up_after", parse_duration, q.give_up_after),
        slowest_rate=c.conv("[queue]", qraw, "slowest_rate", parse_size, q.slowest_rate),
    )
    if not QUEUE_NAME.match(queue_cfg.name):
        c.problems.append(f"[queue].name: {queue_cfg.name!r} may hold only letters, digits and _ . : -")
    for key in ("batch_files", "max_backlog"):
        if getattr(queue_cfg, key) < 1:
            c.problems.append(f"[queue].{key}: must be at least 1")
    if queue_cfg.retries < 0:
        c.problems.append("[queue].retries: must not be negative")
    return queue_cfg


def validate(data: Mapping[str, Any], source: str = "<config>", check_paths: bool = True) -> Config:
    """Validate parsed TOML and build a Config, or raise ConfigError listing every problem."""
    c = Checker()
    c.unknown("top level", data, _TOP_KEYS)
    log_level = c.choice("top level", data, "log_level", LOG_LEVELS, "info")

    redis_cfg = _check_redis(c, data)
    irods_cfg = _check_irods(c, data, check_paths)
    queue_cfg = _check_queue(c, data)
    zones = check_zones(c, data.get("zone", []), check_paths)
    metrics_cfg = config_metrics.check(c, data)
    walk_cfg = config_walk.check(c, data, queue_cfg.name)
    if c.problems:
        raise ConfigError(source, c.problems)
    return Config(source=source, redis=redis_cfg, irods=irods_cfg, queue=queue_cfg, zones=tuple(zones),
                  log_level=log_level, metrics=metrics_cfg, walk=walk_cfg)


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG


def load(path: str | os.PathLike[str] | None = None, check_paths: bool = True) -> Config:
    """Read and validate the config file; raise ConfigError with every problem found."""
    p = config_path(path)
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(str(p), ["file not found"]) from None
    except PermissionError:
        raise ConfigError(str(p), ["permission denied reading the file"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [f"not valid TOML: {e}"]) from None
    except UnicodeDecodeError as e:  # a daemon reloading it must not die of it
        raise ConfigError(str(p), [f"not UTF-8 text (byte {e.start}): not a TOML file"]) from None
    except OSError as e:  # a directory where the file should be, an I/O error
        raise ConfigError(str(p), [f"cannot be read: {e.strerror or e}"]) from None
    cfg = validate(data, source=str(p), check_paths=check_paths)
    return cfg


def file_is_private(path: Path) -> bool:
    """True if no one but the owner (and group) can read the file: what a credential file must be."""
    return not (os.stat(path).st_mode & stat.S_IROTH)
