"""The C compiler that links built code into a shared library for the target's machine.

For this machine's architecture TVM's default (the host's ``g++``) does; for another,
a cross compiler named after the target's triple (``aarch64-linux-gnu-gcc``, as
Debian's ``gcc-aarch64-linux-gnu`` installs it), or the one the user names.
"""

from __future__ import annotations

import os
import shutil

from .errors import TargetError


def find_compiler(target: dict, cc: str | None = None) -> str | None:
    """The compiler to link for ``target``: ``cc`` when given (a path or a name on PATH), None for
    this machine's own architecture, else the cross compiler named after the target's triple."""
    from .backend import is_foreign

    if cc is not None:
        found = shutil.which(cc) or (cc if os.access(cc, os.X_OK) and os.path.isfile(cc) else None)
        if found is None:
            raise TargetError(f"compiler {cc!r} (--cc) is not an executable file or a command on PATH")
        return found
    if not is_foreign(target):
        return None
    triple = str(target["mtriple"])
    names = _names(triple)
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise TargetError(f"no cross compiler for {triple} found (looked for {', '.join(names)}): install one "
                      f"(Debian: apt-get install gcc-{names[-1][:-len('-gcc')]}) or pass --cc PATH")


def _names(triple: str) -> list[str]:
    """``aarch64-unknown-linux-gnu`` -> the compilers such a triple's toolchain installs, most exact first."""
    parts = triple.split("-")
    names = [f"{triple}-gcc"]
    if len(parts) == 4:  # arch-vendor-os-abi: Debian's toolchains leave the vendor out
        names.append(f"{parts[0]}-{parts[2]}-{parts[3]}-gcc")
    elif len(parts) == 2:
        names.append(f"{parts[0]}-linux-{parts[1]}-gcc")
    return names


def export_library(module, path: str, cc: str | None) -> None:
    """Write ``module`` (a TVM executable or runtime module) as a shared library linked by ``cc``
    (None: TVM's default, for this machine)."""
    if cc is None:
        module.export_library(path)
        return
    from tvm.support import cc as tvm_cc

    module.export_library(path, fcompile=tvm_cc.cross_compiler(cc))
