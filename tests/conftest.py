import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def backend():
    from tuner.backend import resolve_backend

    return resolve_backend("host")


@pytest.fixture
def cache(tmp_path):
    from tuner.cache import Cache

    with Cache(tmp_path / "cache.sqlite") as opened:
        yield opened


def run_cli(*args, timeout=600, cwd=None):
    """Run the installed ``tuner`` entry point in a fresh process."""
    return subprocess.run([sys.executable, "-m", "tuner.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)
