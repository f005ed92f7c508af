"""Settings: read once from the environment (prefix ``CLICKTRAIL_``) and validated at start.

Other modules receive a ``Settings`` object; nothing reads the environment at the point of use.
Every default is written once, on the ``Settings`` fields; ``load_settings``, the CLI's
arguments and docs/configuration.md (checked by tests/test_docs.py) take theirs from there.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from backend.core.logs import LogFormat
from backend.core.private_files import private_directory, private_opener

PREFIX = "CLICKTRAIL_"
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[IpNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
DEFAULT_HOST = "127.0.0.1"  # where ``clicktrail run`` and ``clicktrail web`` listen
DEFAULT_PORT = 8000


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names every variable at fault."""


@dataclass(frozen=True, slots=True)
class Settings:
    environment: Literal["development", "production"] = "development"
    var_dir: Path = Path("var")
    database_url: str = ""
    redis_url: str = ""
    secret_key: str = ""
    public_url: str = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
    trusted_proxies: tuple[IpNetwork, ...] = LOOPBACK
    retention_days: int = 90
    attribution_window_days: int = 30
    batch_size: int = 2000
    batch_max_wait_ms: int = 20
    claim_idle_ms: int = 15_000
    honor_gpc: bool = True
    honor_dnt: bool = False
    access_log: bool = False
    # Networks that outgoing requests (link health checks, partners' postbacks, webhooks) may
    # reach although they are not public (tests, intranets). CLICKTRAIL_OUTBOUND_ALLOW, or the
    # older name CLICKTRAIL_LINK_CHECK_ALLOW.
    outbound_allow: tuple[IpNetwork, ...] = ()
    log_format: LogFormat = "text"
    ready_max_lag_s: int = 60
    worker_cpu: int | None = None  # the CPU the worker keeps its threads on (None: any)
    # Prometheus: the worker's metrics listener (None: none), and the scrape target a web
    # process counts for (None: itself; ``clicktrail web --workers N`` names its own for all N).
    worker_metrics_port: int | None = None
    worker_metrics_host: str = "127.0.0.1"
    metrics_target: str | None = None
    stream: str = "ct:events"
    consumer_group: str = "writers"
    # Outgoing mail. No SMTP_HOST (the default): mails are written to var/mail/ instead.
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_tls: Literal["starttls", "tls", "none"] = "starttls"
    smtp_user: str | None = None
    smtp_password: str | None = None
    mail_from: str = "clicktrail@localhost"
    # A MaxMind database (.mmdb, e.g. GeoLite2-Country) to look countries up in instead of the
    # geoip2fast data the package ships.
    geoip_database: Path | None = None

    @property
    def link_check_allow(self) -> tuple[IpNetwork, ...]:
        """The older name of ``outbound_allow``."""
        return self.outbound_allow

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


DEFAULTS = Settings()


def _int(env: Mapping[str, str], name: str, default: int, errors: list[str], minimum: int) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        errors.append(f"{PREFIX}{name}: expected a whole number, got {raw!r}")
        return default
    if value < minimum:
        errors.append(f"{PREFIX}{name}: must be at least {minimum}, got {value}")
    return value


def _cpu(env: Mapping[str, str], name: str, errors: list[str]) -> int | None:
    """A CPU this process may run on, or None when the variable is unset."""
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return None
    if not hasattr(os, "sched_getaffinity"):
        errors.append(f"{PREFIX}{name}: this system cannot keep a process to a CPU")
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if not raw.isdigit() or int(raw) not in allowed:
        errors.append(f"{PREFIX}{name}: expected one of the CPUs {allowed}, got {raw!r}")
        return None
    return int(raw)


def _bool(env: Mapping[str, str], name: str, default: bool, errors: list[str]) -> bool:
    raw = env.get(PREFIX + name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    errors.append(f"{PREFIX}{name}: expected true or false, got {raw!r}")
    return default


def _networks(raw: str, errors: list[str], name: str) -> tuple[IpNetwork, ...]:
    networks: list[IpNetwork] = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            errors.append(f"{PREFIX}{name}: {part!r} is not an IP network (CIDR)")
    return tuple(networks)


def _outbound_allow(env: Mapping[str, str], errors: list[str]) -> tuple[IpNetwork, ...]:
    """``OUTBOUND_ALLOW``, or its older name ``LINK_CHECK_ALLOW`` when it is not set."""
    if PREFIX + "OUTBOUND_ALLOW" in env:
        return _networks(env[PREFIX + "OUTBOUND_ALLOW"], errors, "OUTBOUND_ALLOW")
    return _networks(env.get(PREFIX + "LINK_CHECK_ALLOW", ""), errors, "LINK_CHECK_ALLOW")


def _development_secret(var_dir: Path) -> str:
    """A development secret kept in ./var so restarts keep click ids and sessions valid."""
    path = var_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(48)
    # "x": owner-only from its creation, and another process's file is never overwritten
    with open(private_directory(var_dir) / "secret_key", "x", opener=private_opener) as file:
        file.write(secret)
    return secret


def _readable_file(env: Mapping[str, str], name: str, errors: list[str]) -> Path | None:
    raw = env.get(PREFIX + name, "").strip()
    if not raw:
        return None
    path = Path(raw)
    if not path.is_file():
        errors.append(f"{PREFIX}{name}: no file at {raw!r}")
    return path


def load_settings(env: Mapping[str, str] | None = None, *, create_secret: bool = True) -> Settings:
    """Build settings from ``env`` (default: the process environment); raise ``SettingsError``.
    Without ``create_secret`` a missing development secret stays missing (commands that only
    read or change accounts must not leave a var/ behind where they were typed)."""
    env = os.environ if env is None else env
    errors: list[str] = []
    environment = env.get(PREFIX + "ENV", DEFAULTS.environment)
    if environment not in ("development", "production"):
        errors.append(f"{PREFIX}ENV: expected development or production, got {environment!r}")
        environment = DEFAULTS.environment
    var_dir = Path(env.get(PREFIX + "VAR_DIR", DEFAULTS.var_dir))
    database_url = (
        env.get(PREFIX + "DATABASE_URL") or f"sqlite+aiosqlite:///{var_dir}/clicktrail.db"
    )
    if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        errors.append(
            f"{PREFIX}DATABASE_URL: use sqlite+aiosqlite:///path or postgresql+asyncpg://..., "
            f"got {database_url.split('://')[0]!r}"
        )
    redis_url = env.get(PREFIX + "REDIS_URL", "")
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        errors.append(f"{PREFIX}REDIS_URL: expected redis://, rediss:// or unix://")
    secret_key = env.get(PREFIX + "SECRET_KEY", "")
    if secret_key and len(secret_key) < 32:
        errors.append(f"{PREFIX}SECRET_KEY: must be at least 32 characters")
    if not secret_key and environment == "production":
        errors.append(f"{PREFIX}SECRET_KEY: required in production")
    public_url = env.get(PREFIX + "PUBLIC_URL", DEFAULTS.public_url).rstrip("/")
    if not public_url.startswith(("http://", "https://")):
        errors.append(f"{PREFIX}PUBLIC_URL: expected an http(s) URL, got {public_url!r}")
    log_format = env.get(PREFIX + "LOG_FORMAT") or (
        "json" if environment == "production" else DEFAULTS.log_format
    )
    if log_format not in ("json", "text"):
        errors.append(f"{PREFIX}LOG_FORMAT: expected json or text, got {log_format!r}")
        log_format = DEFAULTS.log_format
    trusted_raw = env.get(PREFIX + "TRUSTED_PROXIES")
    trusted = (
        DEFAULTS.trusted_proxies
        if trusted_raw is None
        else _networks(trusted_raw, errors, "TRUSTED_PROXIES")
    )
    smtp_tls = env.get(PREFIX + "SMTP_TLS", DEFAULTS.smtp_tls).strip().lower()
    if smtp_tls not in ("starttls", "tls", "none"):
        errors.append(f"{PREFIX}SMTP_TLS: expected starttls, tls or none, got {smtp_tls!r}")
        smtp_tls = DEFAULTS.smtp_tls
    mail_from = env.get(PREFIX + "MAIL_FROM", DEFAULTS.mail_from)
    if "@" not in mail_from or any(char in mail_from for char in "\r\n"):
        errors.append(f"{PREFIX}MAIL_FROM: expected an address like Name <a@b.example>")
    settings = Settings(
        environment=environment,  # type: ignore[arg-type]
        var_dir=var_dir,
        database_url=database_url,
        redis_url=redis_url,
        secret_key=secret_key,
        public_url=public_url,
        trusted_proxies=trusted,
        retention_days=_int(env, "RETENTION_DAYS", DEFAULTS.retention_days, errors, minimum=1),
        attribution_window_days=_int(
            env, "ATTRIBUTION_WINDOW_DAYS", DEFAULTS.attribution_window_days, errors, minimum=1
        ),
        batch_size=_int(env, "BATCH_SIZE", DEFAULTS.batch_size, errors, minimum=1),
        batch_max_wait_ms=_int(
            env, "BATCH_MAX_WAIT_MS", DEFAULTS.batch_max_wait_ms, errors, minimum=0
        ),
        claim_idle_ms=_int(env, "CLAIM_IDLE_MS", DEFAULTS.claim_idle_ms, errors, minimum=0),
        honor_gpc=_bool(env, "HONOR_GPC", DEFAULTS.honor_gpc, errors),
        honor_dnt=_bool(env, "HONOR_DNT", DEFAULTS.honor_dnt, errors),
        access_log=_bool(env, "ACCESS_LOG", DEFAULTS.access_log, errors),
        outbound_allow=_outbound_allow(env, errors),
        log_format=log_format,  # type: ignore[arg-type]
        ready_max_lag_s=_int(env, "READY_MAX_LAG_S", DEFAULTS.ready_max_lag_s, errors, minimum=1),
        worker_cpu=_cpu(env, "WORKER_CPU", errors),
        worker_metrics_port=_int(env, "WORKER_METRICS_PORT", 0, errors, minimum=0) or None,
        worker_metrics_host=env.get(PREFIX + "WORKER_METRICS_HOST") or DEFAULTS.worker_metrics_host,
        metrics_target=env.get(PREFIX + "METRICS_TARGET") or None,
        smtp_host=env.get(PREFIX + "SMTP_HOST", "").strip() or None,
        smtp_port=_int(env, "SMTP_PORT", DEFAULTS.smtp_port, errors, minimum=1),
        smtp_tls=smtp_tls,  # type: ignore[arg-type]
        smtp_user=env.get(PREFIX + "SMTP_USER") or None,
        smtp_password=env.get(PREFIX + "SMTP_PASSWORD") or None,
        mail_from=mail_from,
        geoip_database=_readable_file(env, "GEOIP_DATABASE", errors),
    )
    if errors:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(errors))
    if not settings.secret_key and (create_secret or (var_dir / "secret_key").exists()):
        settings = settings.with_overrides(secret_key=_development_secret(var_dir))
    return settings
