#!/usr/bin/env bash
# Run a subset of the tests against an AddressSanitizer + UBSan build of
# convcpu's extensions: any invalid read or write, use after free, double
# free or undefined behaviour in them stops the run with a report.
#
#   tools/memcheck.sh [pytest arguments...]
#
# The sanitized build goes to a scratch directory (pip, with build isolation,
# CONVCPU_SANITIZE set: see setup.py); the installed convcpu is not touched.
# Leak detection is off (CPython keeps its own allocations at exit); the RSS
# loops of tests/test_reliability.py cover leaks.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

echo "memcheck: building convcpu with -fsanitize=address,undefined" >&2
CONVCPU_SANITIZE=address,undefined python -m pip install -q --no-deps --no-cache-dir \
    --target "$scratch/site" "$root"

libasan="$(gcc -print-file-name=libasan.so)"
libubsan="$(gcc -print-file-name=libubsan.so)"
export LD_PRELOAD="$libasan:$libubsan"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:allocator_may_return_null=1:detect_odr_violation=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONPATH="$scratch/site"

# Make sure the sanitized extensions are the ones the tests load.
python - "$scratch/site" <<'PY'
import sys
import convcpu._core, convcpu._direct
for module in (convcpu._core, convcpu._direct):
    assert module.__file__.startswith(sys.argv[1]), module.__file__
print("memcheck: testing", convcpu._core.__file__, file=sys.stderr)
PY

cd "$root"
if [ "$#" -eq 0 ]; then
    set -- tests/test_gemm.py tests/test_properties.py tests/test_error_inputs.py tests/test_deform.py \
        tests/test_conv.py tests/test_depthwise.py tests/test_transpose.py tests/test_local.py \
        tests/test_patches.py tests/test_signal.py tests/test_grad.py \
        "tests/test_reliability.py::test_same_bits_for_1_2_and_4_threads" \
        "tests/test_reliability.py::test_many_python_threads_calling_every_op_match_serial" \
        "tests/test_sizes.py::test_absurd_geometry_is_refused_before_allocating" \
        -k "not torch and not tensorflow and not onnx and not keras"
fi
# --capture=sys: a sanitizer report (written to file descriptor 2 as the
# process stops) reaches the terminal instead of a capture file.
status=0
python -m pytest -q -p no:cacheprovider --capture=sys "$@" || status=$?
if [ "$status" -ne 0 ]; then
    echo "memcheck: FAILED (exit $status; a sanitizer report, if any, is above)" >&2
    exit "$status"
fi
echo "memcheck: no AddressSanitizer or UBSan errors" >&2
