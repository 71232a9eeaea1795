"""Configuration: read from the environment in exactly one place (``env.read``), validated at
start into one frozen ``Config``; ``variables`` lists every variable for ``--help`` and the docs."""

from trio_worker.config.env import default_worker_id, from_env
from trio_worker.config.model import Config, ConfigError

__all__ = ["Config", "ConfigError", "default_worker_id", "from_env"]
