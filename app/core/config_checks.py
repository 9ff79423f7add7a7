"""What makes a configuration unusable: settings out of their range, and in production the
unsafe defaults (app/core/production.py). `derive_settings` (app/core/config.py) refuses
such a configuration before anything starts."""

from __future__ import annotations

from typing import Any

from limits import parse_many

from app.core.production import unsafe_production_settings

# The IPv6 prefixes that may count as one client: a /32 is a whole provider's allocation (a
# wider one would join strangers), a /128 a single address.
IPV6_PREFIX_RANGE = range(32, 129)
# REFRESH_REUSE_GRACE: long enough for requests in flight (two tabs refreshing at once, a
# retry after a lost answer), too short for a copy replayed later to pass as one of them.
REFRESH_REUSE_GRACE_RANGE = range(0, 61)
# The cleanup job stops 30 s before its timeout: a shorter timeout would leave it no time.
MIN_CLEANUP_TIMEOUT = 60


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message names the setting."""


def refuse_unusable(config: dict[str, Any]) -> None:
    """Raise ConfigError naming the first setting out of its range, or, in production, every
    unsafe default."""
    if config["APP_ENV"] not in {"development", "production"}:
        raise ConfigError(
            f"APP_ENV must be 'development' or 'production', got {config['APP_ENV']!r}"
        )
    if config["RATELIMIT_IPV6_PREFIX"] not in IPV6_PREFIX_RANGE:
        raise ConfigError(
            "RATELIMIT_IPV6_PREFIX must be a prefix length from 32 to 128 (64: one client per"
            f" /64), got {config['RATELIMIT_IPV6_PREFIX']!r}"
        )
    if not _is_rate_limit(config["ADMIN_LIST_RATE_LIMIT"]):
        raise ConfigError(
            "ADMIN_LIST_RATE_LIMIT must be a rate limit such as 60/minute or"
            f" '60/minute;600/hour', got {config['ADMIN_LIST_RATE_LIMIT']!r}"
        )
    if config["REFRESH_REUSE_GRACE"] not in REFRESH_REUSE_GRACE_RANGE:
        raise ConfigError(
            "REFRESH_REUSE_GRACE must be 0 (off) to 60 seconds, got"
            f" {config['REFRESH_REUSE_GRACE']!r}"
        )
    if config["TOKEN_CLEANUP_TIMEOUT"] < MIN_CLEANUP_TIMEOUT:
        raise ConfigError(
            f"TOKEN_CLEANUP_TIMEOUT must be at least {MIN_CLEANUP_TIMEOUT} seconds (a run stops"
            f" 30 s before it), got {config['TOKEN_CLEANUP_TIMEOUT']!r}"
        )
    problems = unsafe_production_settings(config) if config["APP_ENV"] == "production" else []
    if problems:
        raise ConfigError("refusing to start with APP_ENV=production: " + "; ".join(problems))


def _is_rate_limit(value: Any) -> bool:
    try:
        items = parse_many(value) if isinstance(value, str) else []
    except ValueError:
        return False
    return bool(items) and all(item.amount >= 1 for item in items)
