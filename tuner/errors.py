"""One error hierarchy for everything a user can get wrong.

Every error the library raises on purpose derives from :class:`TunerError`;
its message is one line that names the bad value and what is allowed. The CLI
prints it and exits with status 2, without a traceback.
"""


class TunerError(Exception):
    """Root of the library's errors."""


class ModelError(TunerError):
    """The ONNX model cannot be read or is not valid ONNX."""


class UnsupportedOperatorError(ModelError):
    """The model uses operators the importer does not support."""


class ShapeError(TunerError):
    """An input shape is unknown, or a given shape does not fit the model."""


class TargetError(TunerError):
    """The target description is malformed or not supported."""


class CacheError(TunerError):
    """The tuning-log cache file is unusable (not ours, corrupt, wrong schema)."""


class BuildError(TunerError):
    """Compiling the model failed."""
