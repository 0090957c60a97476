"""One error hierarchy for everything a user can get wrong.

Every error the library raises on purpose derives from :class:`TunerError`;
its message is one line that names the bad value and what is allowed. The CLI
prints it and exits with status 2, without a traceback.

This module imports nothing of the project, so that ``search_spaces`` and
``costmodel`` (which never import the rest of ``tuner``) can root their own
errors here.
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


class NoDeviceError(TargetError):
    """The target's code must run here (to be timed, say), and this machine has no such device."""


class CacheError(TunerError):
    """The tuning-log cache file is unusable (not ours, corrupt, wrong schema)."""


class BuildError(TunerError):
    """Compiling the model failed."""


class SettingsError(TunerError):
    """A setting, an option or a role's kind is not one that is allowed."""


def error_line(err: BaseException, *, last: bool = False) -> str:
    """One line of ``err``'s text for a message: its first non-empty line, or with ``last`` its
    last one (TVM's errors end with the message after a long C++ trace); the type's name when the
    text is empty."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return lines[-1] if last else lines[0]
