"""Build of sgan's compiled CPU kernels (``sgan_cli/native_coding.c``); the rest of the
package's metadata is in pyproject.toml.

The kernels are an optional extension: where no C compiler works, ``pip install`` still
succeeds and sgan runs its torch engine, naming why in its summaries. They are a plain
shared library without Python's C API (sgan_cli/native.py loads them with ctypes, and
ctypes calls release the GIL), so no Python headers are needed to build them.

Flags: ``-O3 -march=native -fopenmp-simd`` (vectorised loops over atoms, for this machine's
CPU: right for a local or editable install, which builds on the machine that runs it);
either extra is dropped where the compiler refuses it. ``SGAN_PORTABLE=1`` leaves out
``-march=native``: for wheels and for installs shared between machines with different CPUs
(a ``-march=native`` build may stop with an illegal instruction on an older CPU).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

SOURCE = "sgan_cli/native_coding.c"
# what native.py calls; exported by name (MSVC needs the list; elsewhere all are exported)
SYMBOLS = ["sgan_lars", "sgan_omp", "sgan_update_atoms", "sgan_source_sha256"]
# after Python's own CFLAGS: -fno-wrapv undoes their -fwrapv (signed overflow wraps), with which gcc
# compiles the index loops to other code than the kernels were tuned and measured with
BASE_FLAGS = ["-O3", "-std=c99", "-fno-wrapv"]


def _extra_flag_sets() -> list[list[str]]:
    portable = os.environ.get("SGAN_PORTABLE", "").strip().lower() in ("1", "true", "yes", "on")
    sets = [["-march=native", "-fopenmp-simd"], ["-fopenmp-simd"], []]
    return sets[1:] if portable else sets


class BuildKernels(build_ext):
    """build_ext that tries the flag sets in turn, and exports the kernels' own symbols
    (no ``PyInit_`` function: the library is loaded by ctypes, never imported)."""

    def get_export_symbols(self, ext: Extension) -> list[str]:
        return ext.export_symbols

    def build_extension(self, ext: Extension) -> None:
        if self.compiler.compiler_type == "msvc":
            ext.extra_compile_args = ["/O2"]
            super().build_extension(ext)
            return
        error: CompileError | None = None
        for extra in _extra_flag_sets():
            ext.extra_compile_args = [*BASE_FLAGS, *extra]
            try:
                super().build_extension(ext)
                return
            except CompileError as exc:  # a flag this compiler refuses, or no compiler at all
                error = exc
        assert error is not None
        raise error


# the source's checksum, compiled in: native.py refuses a library built from another source
# (an editable install whose C file changed since it was built)
digest = hashlib.sha256(Path(SOURCE).read_bytes()).hexdigest()  # setuptools runs this file in its folder

setup(
    ext_modules=[
        Extension(
            "sgan_cli._native_coding",
            sources=[SOURCE],
            define_macros=[("SGAN_SOURCE_SHA256", f'"{digest}"')],
            libraries=[] if os.name == "nt" else ["m"],
            export_symbols=list(SYMBOLS),
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildKernels},
)
