#!/usr/bin/env bash
# Build the two C extensions with AddressSanitizer and UndefinedBehaviorSanitizer and run the
# tests that feed them hostile bytes (the JSON fast path's fuzzing, the native reader against a
# real broker). Any out-of-bounds access, use after free or undefined behaviour aborts the run
# with the sanitizer's report.
#
#   bash scripts/asan-check.sh                     # the default tests
#   bash scripts/asan-check.sh tests/unit/test_x.py -k name
#   LIVETABLES_FUZZ_RECORDS=50000 LIVETABLES_FUZZ_SEED=7 bash scripts/asan-check.sh
#
# The source tree is copied to a temporary directory and the sanitized extensions are built
# there, so the project's own build (.venv, in-place .so files) is left as it is. Needs gcc
# with libasan and libubsan (Debian: gcc), and `make setup` done (it uses .venv's Python).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
CC="${CC:-gcc}"
if [ "$#" -eq 0 ]; then
  set -- tests/unit/test_json_fast_path_fuzz.py tests/unit/test_json_fast_path.py \
    tests/unit/test_native_reader_misuse.py tests/integration/test_native_reader.py \
    tests/integration/test_native_reader_hostile.py
fi

ASAN_LIB="$("$CC" -print-file-name=libasan.so)"
UBSAN_LIB="$("$CC" -print-file-name=libubsan.so)"
for lib in "$ASAN_LIB" "$UBSAN_LIB"; do
  [ -e "$lib" ] || { echo "asan-check: $CC has no $(basename "$lib")" >&2; exit 2; }
done

WORK="$(mktemp -d -t livetables-asan.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
git ls-files --cached --others --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$WORK"

cd "$WORK"
echo "asan-check: building the extensions with -fsanitize=address,undefined in $WORK"
CC="$CC" \
  CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g" \
  LDFLAGS="-fsanitize=address,undefined" \
  "$PYTHON" setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }
for so in connectors/_kafkabatch*.so connectors/decoders/_jsonrows*.so; do
  nm -D "$so" | grep -q __asan_init || { echo "asan-check: $so is not instrumented" >&2; exit 1; }
done

# The sanitizer runtime is preloaded into Python only: the variable is dropped before anything
# starts a child (the Kafka broker is a JVM, which must not run under it). PYTHONMALLOC=malloc
# sends every Python allocation through the sanitizer's malloc, so an overrun of a small bytes
# object is caught too. Leak checking is off: the interpreter keeps objects until exit.
# Reports also go to files (pytest may hold stderr when the process aborts) and are printed.
REPORTS="$WORK/sanitizer-report"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path=$REPORTS"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$REPORTS"
export PYTHONMALLOC=malloc
export PYTHONPATH="$WORK"
status=0
LD_PRELOAD="$ASAN_LIB $UBSAN_LIB" "$PYTHON" - "$WORK" "$@" <<'EOF' || status=$?
import os
import sys

os.environ.pop("LD_PRELOAD", None)
work, args = sys.argv[1], sys.argv[2:]
os.chdir(work)

import pytest  # noqa: E402

from connectors import _kafkabatch  # noqa: E402
from connectors.decoders import _jsonrows  # noqa: E402

for module in (_kafkabatch, _jsonrows):
    if not module.__file__.startswith(work):
        sys.exit(f"asan-check: {module.__name__} was loaded from {module.__file__}, not the build")
print(f"asan-check: sanitized extensions loaded from {work}", flush=True)
sys.exit(pytest.main(["-p", "no:cacheprovider", "--capture=sys", "-q", *args]))
EOF
if compgen -G "$REPORTS.*" >/dev/null; then
  cat "$REPORTS".*
  echo "asan-check: the sanitizers reported the above (exit $status)" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "asan-check: tests failed (exit $status), no sanitizer report" >&2
  exit "$status"
fi
echo "asan-check: no sanitizer report"
