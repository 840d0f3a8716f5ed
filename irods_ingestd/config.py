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

from . import registry
from .config_parse import Checker, parse_duration, parse_size
from .config_paths import aliasing_problems

DEFAULT_CONFIG = Path("/etc/irods-ingestd/config.toml")
CONFIG_ENV = "IRODS_INGESTD_CONFIG"

# Temporary names of the usual copy tools: rsync's `.name.XXXXXX`, partial downloads, editors' backups.
DEFAULT_TEMP_PATTERNS = (
    ".*.??????",
    "*.part",
    "*.partial",
    "*.tmp",
    "*.temp",
    "*~",
    ".~lock.*",
    "*.swp",
    ".nfs*",
    "*.filepart",
    ".syncthing.*",
)

MODES = ("put", "register")
WATCHERS = ("inotify", "poll")
SYMLINK_POLICIES = ("skip", "follow")
AFTER_ACTIONS = ("keep", *registry.AFTER_ACTIONS)  # delete, move: irods_ingestd.registry
VERSION_POLICIES = ("keep", "replace", "conflict")
LOG_LEVELS = ("debug", "info", "warning", "error")
MIN_SETTLE = 0.1  # seconds


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` lists every reason, one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))

    def __str__(self) -> str:
        return "\n".join(f"{self.source}: {p}" for p in self.problems)


@dataclass(frozen=True)
class ZoneConfig:
    name: str
    path: Path
    collection: str
    mode: str = "put"
    settle: float = 10.0
    watcher: str = "inotify"
    rescan: float = 900.0
    poll_interval: float = 30.0
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    temp_patterns: tuple[str, ...] = DEFAULT_TEMP_PATTERNS
    symlinks: str = "skip"
    resource: str = ""
    after: str = "keep"
    move_to: Path | None = None
    versions: str = "keep"  # a different file under an ingested name: keep the old object as name.~N~
    metadata: tuple[str, ...] = ()  # metadata extractors besides the provenance (irods_ingestd.registry)
    after_hold: float = 10.0  # seconds a verified file is left alone before delete/move (default: settle)


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

    def zone(self, name: str) -> ZoneConfig:
        for z in self.zones:
            if z.name == name:
                return z
        raise KeyError(name)


_TOP_KEYS = {"log_level", "redis", "irods", "queue", "zone"}
_REDIS_KEYS = {"url", "sentinels", "sentinel_master", "prefix"}
_IRODS_KEYS = {"environment_file", "password_file", "password", "connection_timeout"}
_QUEUE_KEYS = {
    "name", "batch_files", "batch_bytes", "max_backlog", "job_timeout",
    "retries", "backoff", "backoff_max", "give_up_after", "slowest_rate",
}
_ZONE_KEYS = {
    "name", "path", "collection", "mode", "settle", "watcher", "rescan", "poll_interval", "include",
    "exclude", "temp_patterns", "symlinks", "resource", "after", "move_to",
    "versions", "after_hold", "metadata",
}
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")




def _irods_path_ok(p: str) -> bool:
    return p.startswith("/") and len(p) > 1 and "//" not in p and not p.endswith("/") and \
        all(part not in (".", "..") for part in p.split("/")[1:])


def _zone_name(c: Checker, i: int, raw: dict[str, Any]) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        c.problems.append(f"zone #{i + 1}.name: missing or invalid (letters, digits, _ . -; 1-64 chars): "
                          f"{name!r}")
        return f"#{i + 1}"
    return name


def _zone_collection(c: Checker, where: str, raw: dict[str, Any]) -> str | None:
    collection = c.get(where, raw, "collection", str, None)
    if collection is None:
        c.problems.append(f"{where}.collection: missing (the target iRODS collection)")
    elif not _irods_path_ok(collection):
        c.problems.append(f"{where}.collection: {collection!r} must be an absolute iRODS path like "
                          f"/zone/home/user/landing (no trailing slash, no . or ..)")
    return collection


def _zone_times(c: Checker, where: str, raw: dict[str, Any]) -> tuple[float, float, float]:
    """settle, rescan, poll_interval."""
    settle = c.conv(where, raw, "settle", parse_duration, 10.0)
    if settle < MIN_SETTLE:
        c.problems.append(f"{where}.settle: must be at least {MIN_SETTLE:g}s (a file is ready when unchanged for "
                          f"this long; {settle:g}s would queue files still being written)")
    rescan = c.conv(where, raw, "rescan", parse_duration, 900.0)
    if rescan is not None and rescan < 1:
        c.problems.append(f"{where}.rescan: must be at least 1s")
    poll_interval = c.conv(where, raw, "poll_interval", parse_duration, 30.0)
    if poll_interval is not None and poll_interval < 0.1:
        c.problems.append(f"{where}.poll_interval: must be at least 0.1s")
    return settle, rescan, poll_interval


def _zone_metadata(c: Checker, where: str, raw: dict[str, Any]) -> tuple[str, ...]:
    metadata = c.strings(where, raw, "metadata", ())
    for m in metadata:
        if m not in registry.EXTRACTORS:
            c.problems.append(f"{where}.metadata: no metadata extractor named {m!r} (there are: "
                              f"{', '.join(sorted(registry.EXTRACTORS))})")
    return metadata


def _zone_path(c: Checker, where: str, path_s: str | None, check_paths: bool) -> Path | None:
    path = Path(path_s) if path_s else None
    if path is None:
        return None
    if not path.is_absolute():
        c.problems.append(f"{where}.path: {path_s!r} must be an absolute path")
    elif check_paths:
        try:
            st = os.stat(path)
            if not stat.S_ISDIR(st.st_mode):
                c.problems.append(f"{where}.path: {path_s} is not a directory")
            elif not os.access(path, os.R_OK | os.X_OK):
                c.problems.append(f"{where}.path: {path_s} is not readable by this user")
        except OSError as e:
            c.problems.append(f"{where}.path: {path_s}: {e.strerror}")
    return path


def _zone_move_to(c: Checker, where: str, move_to_s: str | None, after: str) -> Path | None:
    move_to = Path(move_to_s) if move_to_s else None
    if after == "move":
        if move_to is None:
            c.problems.append(f"{where}.move_to: required when after = \"move\"")
        elif not move_to.is_absolute():
            c.problems.append(f"{where}.move_to: {move_to_s!r} must be an absolute path")
    elif move_to is not None:
        c.problems.append(f"{where}.move_to: only used with after = \"move\" (after is {after!r})")
    return move_to


def _check_zone(c: Checker, i: int, raw: Any, check_paths: bool) -> ZoneConfig | None:
    if not isinstance(raw, dict):
        c.problems.append(f"zone #{i + 1}: expected a [[zone]] table")
        return None
    name = _zone_name(c, i, raw)
    where = f"zone {name!r}"
    c.unknown(where, raw, _ZONE_KEYS)
    path_s = c.get(where, raw, "path", str, None)
    if path_s is None:
        c.problems.append(f"{where}.path: missing (the landing directory)")
    collection = _zone_collection(c, where, raw)
    mode = c.choice(where, raw, "mode", MODES, "put")
    settle, rescan, poll_interval = _zone_times(c, where, raw)
    watcher = c.choice(where, raw, "watcher", WATCHERS, "inotify")
    symlinks = c.choice(where, raw, "symlinks", SYMLINK_POLICIES, "skip")
    after = c.choice(where, raw, "after", AFTER_ACTIONS, "keep")
    versions = c.choice(where, raw, "versions", VERSION_POLICIES, "keep")
    metadata = _zone_metadata(c, where, raw)
    after_hold = c.conv(where, raw, "after_hold", parse_duration, settle)
    if after_hold is not None and after_hold < 0:
        c.problems.append(f"{where}.after_hold: must not be negative")
    move_to_s = c.get(where, raw, "move_to", str, None)
    resource = c.get(where, raw, "resource", str, "")
    include = c.strings(where, raw, "include", ("*",))
    exclude = c.strings(where, raw, "exclude", ())
    temps = c.strings(where, raw, "temp_patterns", DEFAULT_TEMP_PATTERNS)
    path = _zone_path(c, where, path_s, check_paths)
    move_to = _zone_move_to(c, where, move_to_s, after)
    if mode == "register" and after != "keep":
        c.problems.append(f"{where}.after: a register-mode zone keeps its files in place; after must be "
                          f"\"keep\", not {after!r}")
    if path is None or collection is None:
        return None
    return ZoneConfig(
        name=name, path=path, collection=collection, mode=mode, settle=settle, watcher=watcher,
        rescan=rescan, poll_interval=poll_interval, include=include, exclude=exclude, temp_patterns=temps,
        symlinks=symlinks,
        resource=resource, after=after, move_to=move_to, versions=versions, metadata=tuple(metadata),
        after_hold=after_hold if after_hold is not None else settle,
    )


def _check_zones(c: Checker, zraw: Any, check_paths: bool) -> list[ZoneConfig]:
    """Every [[zone]], then what they must not share: a name, a directory (by real path and device/inode,
    not text: symlinks, bind mounts; missing directories are fine here), a move_to, a collection."""
    if not isinstance(zraw, list):
        c.problems.append("zone: use [[zone]] tables (an array of tables)")
        zraw = []
    zones = [z for i, raw in enumerate(zraw) if (z := _check_zone(c, i, raw, check_paths))]
    if not zraw:
        c.problems.append("no [[zone]] defined: nothing to watch")
    seen: dict[str, ZoneConfig] = {}
    for z in zones:
        if z.name in seen:
            c.problems.append(f"zone {z.name!r}: the name is used twice")
        seen[z.name] = z
    c.problems += aliasing_problems([z for z in zones if z.path.is_absolute() and
                                     (z.move_to is None or z.move_to.is_absolute())])
    for i, a in enumerate(zones):
        for b in zones[i + 1:]:
            if a.collection == b.collection or a.collection.startswith(b.collection + "/") or \
                    b.collection.startswith(a.collection + "/"):
                c.problems.append(f"zone {a.name!r} and zone {b.name!r}: their collections overlap "
                                  f"({a.collection} and {b.collection})")
    return zones


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
    if irods_cfg.environment_file is None:
        c.problems.append("[irods].environment_file: missing (path of an irods_environment.json)")
    elif check_paths and not irods_cfg.environment_file.is_file():
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
    if not re.match(r"^[A-Za-z0-9_.:-]+$", queue_cfg.name):
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
    zones = _check_zones(c, data.get("zone", []), check_paths)
    if c.problems:
        raise ConfigError(source, c.problems)
    return Config(source=source, redis=redis_cfg, irods=irods_cfg, queue=queue_cfg, zones=tuple(zones),
                  log_level=log_level)


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
    cfg = validate(data, source=str(p), check_paths=check_paths)
    return cfg


def file_is_private(path: Path) -> bool:
    """True if no one but the owner (and group) can read the file: what a credential file must be."""
    return not (os.stat(path).st_mode & stat.S_IROTH)
