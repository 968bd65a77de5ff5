#!/usr/bin/env bash
# Mutation testing of the engine core (`make mutate`; not part of `make test`). mutmut copies the sources it mutates
# into mutants/ and imports them from there, so it runs in build/mutate/, a copy of the repository with kernels/
# placed as onnxlrp/kernels/ (its installed name): the kernels are then mutated and imported like the rest.
# Configuration: [tool.mutmut] in pyproject.toml (modules, test folders). Optional arguments are passed to
# `mutmut run` (e.g. a glob of mutant names: 'onnxlrp.lrp.rules*'). Results: build/mutate/results.txt, one line per
# surviving mutant; `cd build/mutate && mutmut show NAME` shows a mutant's diff. tools/mutation_report.md records the
# last full run and what became of each survivor.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
WORK="$ROOT/build/mutate"
rm -rf "$WORK"
mkdir -p "$WORK"
cp -r "$ROOT/onnxlrp" "$ROOT/tests" "$ROOT/models" "$ROOT/pyproject.toml" "$WORK/"
cp -r "$ROOT/kernels" "$WORK/onnxlrp/kernels"
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
cd "$WORK"
# the copy's onnxlrp must shadow the editable install (whose finder maps onnxlrp.kernels to the repository's kernels/)
export PYTHONPATH="$WORK"
# one BLAS/OpenMP thread per forked test process (faster with several children, and no fork-after-threads hang)
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
"$PY" -m mutmut run --max-children "${MUTATE_JOBS:-2}" "$@" || true
"$PY" -m mutmut results > results.txt || true
echo "surviving or untested mutants: $(grep -c ':' results.txt || true) (build/mutate/results.txt)"
