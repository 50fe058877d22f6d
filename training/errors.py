"""One exception type for every bad setting, so callers and the CLI can report it uniformly."""


class ConfigError(ValueError):
    """A setting is invalid; the message names the option and what it accepts."""


def require(condition: bool, option: str, allowed: str, got: object) -> None:
    """Raise a `ConfigError` naming `option` unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{option}: got {got!r}; allowed: {allowed}")
