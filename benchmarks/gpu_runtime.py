"""A runtime-only TVM to carry to a GPU machine that has no TVM and no network.

    python -m benchmarks.gpu_runtime build/gpu/runtime [--python 3.12]

The ``apache-tvm`` wheel is 100 MB, most of it the compiler library; a machine that only loads
and times built libraries needs its Python package and runtime libraries (``libtvm_runtime*.so``)
and ``tvm_ffi`` for that machine's Python. This downloads both wheels with pip (here, where PyPI
is reachable) and unpacks them without ``libtvm_compiler.so`` and the bundled third-party headers
(about 25 MB). There, ``PYTHONPATH=FOLDER TVM_USE_RUNTIME_LIB=1`` makes ``import tvm`` that
runtime (``benchmarks/gpu_device.sh`` does so).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = ("apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post0", "typing-extensions")  # what tvm_ffi imports
# the compiler, and the headers, C++ sources and web runtime that loading and timing
# a built library never touch (about 32 MB of the 60): the device's transfer limit is 64 MiB in all
LEFT_OUT = ("tvm/lib/libtvm_compiler.so", "tvm/3rdparty/", "tvm/src/", "tvm/web/", "tvm_ffi/include/",
            "tvm_ffi/3rdparty/")


def pack(folder: Path, python: str) -> int:
    """Unpack the runtime-only TVM for ``python`` (e.g. '3.12') into ``folder``; its size in bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as downloads:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--python-version", python, "--platform", "manylinux_2_28_x86_64", "-d", downloads,
                        *WHEELS], check=True)
        size = 0
        for wheel in sorted(Path(downloads).glob("*.whl")):
            with zipfile.ZipFile(wheel) as archive:
                for item in archive.infolist():
                    if item.filename.startswith(LEFT_OUT) or ".dist-info/" in item.filename:
                        continue
                    archive.extract(item, folder)
                    size += item.file_size
    return size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python version (default 3.12)")
    args = parser.parse_args(argv)
    size = pack(Path(args.folder), args.python)
    print(f"{args.folder}: TVM's runtime for Python {args.python}, {size / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
