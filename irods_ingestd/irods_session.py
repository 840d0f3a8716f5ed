"""iRODS sessions for the workers: built from the config, opened lazily, reused job after job.

The password is looked up in this order:

1. ``$CREDENTIALS_DIRECTORY/irods-password`` (systemd ``LoadCredential=irods-password:...``),
2. ``[irods].password_file``,
3. ``[irods].password``,
4. none of them: python-irodsclient reads the scrambled ``.irodsA`` named by the environment file
   (``irods_authentication_file``) or ``$IRODS_AUTHENTICATION_FILE`` or ``~/.irods/.irodsA``.

PRC ignores a ``password`` argument given together with ``irods_env_file`` (it always reads ``.irodsA``),
so with a password the environment file is read here and its settings passed as keyword arguments.

The password is never logged; errors raised while building a session are :class:`SessionError` whose
text has the password blanked out.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import irods.exception as iex
from irods.session import iRODSSession

from .config import IrodsConfig

log = logging.getLogger(__name__)

CREDENTIAL_NAME = "irods-password"
APPLICATION_NAME = "irods-ingestd"


class SessionError(Exception):
    """The session could not be configured (bad environment file, unreadable password file ...)."""


# The server refused the service account's login (a wrong or expired password, an unknown user): the
# worker's credentials, never one file's fault.
_LOGIN_REFUSED = tuple(getattr(iex, n) for n in (
    "CAT_INVALID_AUTHENTICATION", "CAT_INVALID_USER", "CAT_INVALID_CLIENT_USER", "CAT_PASSWORD_EXPIRED",
    "PAM_AUTH_PASSWORD_FAILED", "PAM_AUTH_PASSWORD_INVALID_TTL") if hasattr(iex, n))


class LoginRefused(ConnectionError):
    """iRODS refused the login: handled like a server out of reach (retried, the files handed back to be
    queued again, none failed for it), since fixing the password fixes every file at once."""


def login_refused(exc: BaseException, session: iRODSSession | None) -> LoginRefused | None:
    """A LoginRefused naming the account and what to check, if `exc` is the server refusing the login."""
    if not isinstance(exc, _LOGIN_REFUSED):
        return None
    who = f"{session.username}#{session.zone} at {session.host}:{session.port}" if session is not None else "?"
    return LoginRefused(f"iRODS refused the login of {who} ({type(exc).__name__}): check the password "
                        "([irods] password_file or password, or the irods-password credential) and the user in "
                        "the environment file; the files wait and are tried again")


def _read_secret(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().rstrip("\r\n")


def load_password(cfg: IrodsConfig) -> str | None:
    """The password from the first source that has one, or None (then PRC reads .irodsA)."""
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        p = Path(cred_dir) / CREDENTIAL_NAME
        if p.is_file():
            return _read_secret(p)
    if cfg.password_file is not None:
        try:
            return _read_secret(cfg.password_file)
        except OSError as e:
            raise SessionError(f"cannot read the iRODS password file {cfg.password_file}: {e.strerror}") from None
    if cfg.password:
        return cfg.password
    return None


def read_environment(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            env = json.load(f)
    except OSError as e:
        raise SessionError(f"cannot read the iRODS environment file {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise SessionError(f"the iRODS environment file {path} is not valid JSON: {e}") from None
    if not isinstance(env, dict):
        raise SessionError(f"the iRODS environment file {path} is not a JSON object")
    missing = [k for k in ("irods_host", "irods_port", "irods_user_name", "irods_zone_name") if k not in env]
    if missing:
        raise SessionError(f"the iRODS environment file {path} lacks {', '.join(missing)}")
    return env


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, "********") if secret else text


def make_session(cfg: IrodsConfig) -> iRODSSession:
    """A new, not yet connected iRODSSession (PRC connects on the first request)."""
    if cfg.environment_file is None:
        raise SessionError("[irods].environment_file is not set")
    env = read_environment(cfg.environment_file)
    password = load_password(cfg)
    try:
        if password is not None:
            kwargs = {k: v for k, v in env.items() if k.startswith("irods_") and k != "irods_password"}
            session = iRODSSession(password=password, application_name=APPLICATION_NAME, **kwargs)
        else:
            session = iRODSSession(irods_env_file=str(cfg.environment_file), application_name=APPLICATION_NAME)
        session.connection_timeout = cfg.connection_timeout
    except Exception as e:  # never let the password reach a log through an exception's text
        raise SessionError(f"cannot configure the iRODS session: {type(e).__name__}: "
                           f"{_scrub(str(e), password)}") from None
    return session


class SessionHolder:
    """One iRODS session per process (or thread), opened lazily and reopened after a failure.

    ``get()`` returns the current session; ``reset()`` drops it after a network error so the next
    ``get()`` builds a fresh one; ``cleanup()`` disconnects at exit.
    """

    def __init__(self, cfg: IrodsConfig) -> None:
        self.cfg = cfg
        self._session: iRODSSession | None = None
        self._lock = threading.Lock()
        self.opened = 0

    def get(self) -> iRODSSession:
        with self._lock:
            if self._session is None:
                self._session = make_session(self.cfg)
                self.opened += 1
                log.debug("iRODS session configured (%s@%s:%s)", self._session.username,
                          self._session.host, self._session.port)
            return self._session

    def reset(self) -> None:
        """Forget the session (its connections may be dead); the next get() makes a new one."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            _quiet_cleanup(session)

    def cleanup(self) -> None:
        self.reset()


def _quiet_cleanup(session: iRODSSession) -> None:
    try:
        session.cleanup()
    except Exception as e:  # a dead connection cannot be closed politely; that is fine
        log.debug("ignoring an error while closing an iRODS session: %s", type(e).__name__)
    # PRC re-configures the session in cleanup(); drop its pool so nothing lingers.
    try:
        if session.pool is not None:
            session.pool.idle.clear()
            session.pool.active.clear()
    except Exception:  # pragma: no cover - defensive
        pass
