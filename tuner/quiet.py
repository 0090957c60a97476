"""Keep TVM's and ONNX Runtime's own log lines from the user unless asked for (``--verbose``).

Both libraries log from C++ straight to the process's standard error (TVM's
``LOG(WARNING)`` has no level switch), so ``quiet`` points file descriptor 2 at a
temporary file while it is active and, with ``verbose``, leaves it alone. Python's
own ``sys.stderr`` writes to the same descriptor: a command prints its errors after
leaving the block.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager


@contextmanager
def quiet(verbose: bool = False):
    """Swallow what native code (and anything else) writes to standard error inside the block."""
    if verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
