"""Reading typed values from the environment, each failure naming its variable."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from trio_worker.config.model import ConfigError
from trio_worker.config.variables import DEFAULTS

# What Kubernetes puts in ``<SERVICE>_PORT`` for every Service of the namespace (service links):
# ``tcp://10.0.0.7:6379`` for a Service named ``redis``.
_SERVICE_LINK = re.compile(r"^(tcp|udp|sctp)://", re.IGNORECASE)


class Secret(NamedTuple):
    """A secret as given at start, and the file it came from (read again for each new
    connection: ``config.secrets``), if it came from one."""

    value: str | None
    path: str | None


class Env:
    """Typed access to an environment mapping; remembers which variables were read."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.read: set[str] = set()

    def raw(self, name: str) -> str | None:
        """The value as given (a password keeps its spaces), or None if unset or blank."""
        self.read.add(name)
        value = self._env.get(name)
        if value is None or value.strip() == "":
            return None
        if name.endswith("_PORT") and _SERVICE_LINK.match(value.strip()):
            service = name.removesuffix("_PORT").lower().replace("_", "-")
            raise ConfigError(
                name,
                "a port number, not a Kubernetes service link (a Service named"
                f" {service!r} in the namespace injects {name}=tcp://...): set"
                " enableServiceLinks: false in the pod spec",
                value,
            )
        return value

    def is_set(self, name: str) -> bool:
        return self.raw(name) is not None

    def given(self, name: str, otherwise: str | None = None) -> str | None:
        """The value as given, else the variable's default from its table (``variables``),
        else ``otherwise``: a default computed at start, which the table shows in words."""
        value = self.raw(name)
        if value is not None:
            return value
        default = DEFAULTS[name]
        assert default is None or otherwise is None, f"{name}: two defaults"
        return default if default is not None else otherwise

    def text(self, name: str, otherwise: str | None = None) -> str:
        value = self.given(name, otherwise)
        assert value is not None, f"{name}: no default"
        return value.strip()

    def optional(self, name: str) -> str | None:
        value = self.given(name)
        return None if value is None else value.strip()

    def integer(self, name: str, *, low: int, high: int) -> int:
        raw = self.text(name)
        expected = f"a whole number from {low} to {high}"
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, expected, raw) from None
        if not low <= value <= high:
            raise ConfigError(name, expected, raw)
        return value

    def seconds(
        self,
        name: str,
        *,
        scale: float = 1.0,
        zero: bool = False,
        at_least: float | None = None,
    ) -> float:
        """A positive number (or zero, where allowed) in the variable's unit, in seconds."""
        raw = self.text(name)
        if at_least is not None:
            expected = f"a number of at least {at_least:g}"
        else:
            expected = "a non-negative number" if zero else "a positive number"
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, expected, raw) from None
        ok = (value > 0 or (zero and value == 0)) and value < 1e9
        if not ok or (at_least is not None and value < at_least):
            raise ConfigError(name, expected, raw)
        return value * scale

    def flag(self, name: str, otherwise: bool | None = None) -> bool:
        value = self.text(name, None if otherwise is None else str(otherwise)).lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, "true or false", value)

    def choice(
        self,
        name: str,
        options: tuple[str, ...],
        *,
        upper: bool = False,
        otherwise: str | None = None,
    ) -> str:
        value = self.text(name, otherwise)
        value = value.upper() if upper else value.lower()
        if value not in options:
            raise ConfigError(name, " or ".join(options), value)
        return value

    def readable_file(self, name: str) -> str | None:
        """A path that must name a readable file (a certificate, a key), or None if unset."""
        path = self.optional(name)
        if path is not None:
            _read(name, path)
        return path

    def secret(self, name: str, file_name: str) -> Secret:
        """A secret given directly (``name``) or in a file (``file_name``); never both."""
        path = self.optional(file_name)
        value = self.raw(name)
        if path is None:
            return Secret(value, None)
        if value is not None:
            raise ConfigError(
                file_name,
                f"to be unset when {name} is set (one secret, given once: {name} or {file_name})",
            )
        return Secret(secret_text(_read(file_name, path)), path)


def secret_text(text: str) -> str:
    """A secret file's content as the secret: a trailing newline is an artefact of how secret
    files are written, not a character of the secret."""
    return text.rstrip("\r\n")


def unreadable(exc: OSError | UnicodeDecodeError) -> str:
    """Why a file could not be read, without its content."""
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


def _read(name: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, f"a readable UTF-8 file ({unreadable(exc)})") from None
