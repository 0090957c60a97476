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


@pytest.fixture
def cli(capsys):
    """The command line run in this process (no new interpreter to start and no TVM to import again):
    ``cli(*args)`` gives an object with ``returncode``, ``stdout`` and ``stderr``, as ``run_cli`` does."""
    from tuner.cli import main

    def run(*args):
        status = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, status or 0, captured.out, captured.err)

    return run
