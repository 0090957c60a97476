"""The cost model's one error type."""

from __future__ import annotations

from tuner.errors import TunerError


class CostModelError(TunerError):
    """Bad input to the cost model, a model used before ``fit``, or a saved model
    that cannot be loaded (missing, corrupt or foreign file, wrong feature version).
    The message names the file or the value and what is wrong."""
