"""The one exception family gen_jax raises for bad user input.

The command-line tools print these as a single line (no traceback): they describe something the user can fix
(a path, a config key, a batch size), not a bug.
"""


class UserError(ValueError):
    """Bad input from the user: a config key, a data source, a checkpoint. The message says what to fix."""


class DataError(UserError):
    """A data source that cannot be read or does not fit the requested batching."""


class ConfigError(UserError):
    """A config with an unknown key or a value out of range."""


class CheckpointError(UserError):
    """A checkpoint directory that cannot be restored."""
