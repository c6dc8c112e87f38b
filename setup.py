"""Build the convcpu Cython extensions.

OpenMP is used when the compiler accepts it (flag on compile *and* link);
otherwise the extensions build serially and a warning says so.  Cython
directives are set once here for every module.  CONVCPU_SANITIZE=address (or
address,undefined) builds with those GCC/Clang sanitizers, for
tools/memcheck.sh.
"""
import os
import sys
import tempfile
import textwrap
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

EXTENSIONS = ["convcpu._core", "convcpu._direct"]

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "nonecheck": False,
    "embedsignature": True,
}


def _openmp_flags(compiler):
    """Return the OpenMP compile/link flags this compiler accepts, or None."""
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    if os.environ.get("CONVCPU_DISABLE_OPENMP"):
        return None
    code = textwrap.dedent(
        """
        #include <omp.h>
        int main(void) {
            int n = 0;
            #pragma omp parallel reduction(+:n)
            n += 1;
            return n > 0 ? 0 : 1;
        }
        """
    )
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "omp_probe.c")
        with open(src, "w") as handle:
            handle.write(code)
        try:
            objects = compiler.compile([src], output_dir=tmp, extra_postargs=["-fopenmp"])
            compiler.link_executable(objects, os.path.join(tmp, "omp_probe"),
                                     extra_postargs=["-fopenmp"])
        except Exception:  # noqa: BLE001 - any failure means "no OpenMP"
            return None
    return ["-fopenmp"], ["-fopenmp"]


class BuildExt(build_ext):
    def build_extensions(self):
        flags = _openmp_flags(self.compiler)
        if flags is None:
            warnings.warn("convcpu: the C compiler has no OpenMP; building serial kernels")
            compile_flags, link_flags = [], []
        else:
            compile_flags, link_flags = flags
        opt = [] if self.compiler.compiler_type == "msvc" else ["-O3"]
        sanitize = os.environ.get("CONVCPU_SANITIZE")
        if sanitize:
            # -O2: below it GCC does not contract a*b + c into a fused multiply-add,
            # and the portable kernels must give the AVX-512 kernels' bits.
            opt = ["-O2", "-g", "-fno-omit-frame-pointer", f"-fsanitize={sanitize}",
                   "-fno-sanitize-recover=all"]
            link_flags = link_flags + [f"-fsanitize={sanitize}"]
        for ext in self.extensions:
            ext.extra_compile_args = opt + compile_flags + ext.extra_compile_args
            ext.extra_link_args = link_flags + ext.extra_link_args
        super().build_extensions()


def _extensions():
    return [
        Extension(
            name,
            [os.path.join("src", name.replace(".", os.sep) + ".pyx")],
            include_dirs=[numpy.get_include(), os.path.join("src", "convcpu")],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        )
        for name in EXTENSIONS
    ]


setup(
    ext_modules=cythonize(_extensions(), compiler_directives=DIRECTIVES, include_path=["src"],
                          quiet=True, nthreads=0 if sys.platform == "win32" else 2),
    cmdclass={"build_ext": BuildExt},
)
