#!/usr/bin/env bash
# The test command (README's second command; .ci/run calls it too).
# Installs Debian's reference stack when it is missing (PyTorch, torchvision, scikit-learn, PIL, liblinear) and PoCL,
# runs every test, and ends with one line: "tests: N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."

need_install=0
/usr/bin/python3 -c "import torch, torchvision, sklearn, PIL, numpy" 2>/dev/null || need_install=1
command -v liblinear-train >/dev/null 2>&1 || need_install=1
if [ "$need_install" = 1 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing the reference stack (python3-torch python3-torchvision python3-sklearn python3-pil liblinear-tools)..."
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    python3-torch python3-torchvision python3-sklearn python3-pil python3-numpy liblinear-tools >/dev/null \
    || { echo "could not install the reference stack; tests that compare with PyTorch/scikit-learn will fail"; }
fi

# PoCL, the portable CPU OpenCL, so that the OpenCL tests (*OnOpenCl, OpenClTests) run the kernels through ILGPU's
# OpenCL backend; without an OpenCL device they are reported skipped with the reason. The tests opt in to PoCL
# themselves (TP7_POCL_GLOBAL_POINTERS, see Engine.Kernels/OpenCl.cs).
if [ ! -e /etc/OpenCL/vendors/pocl.icd ] || ! ldconfig -p 2>/dev/null | grep -q 'libOpenCL\.so\.1'; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing PoCL for the OpenCL tests (pocl-opencl-icd ocl-icd-libopencl1)..."
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq pocl-opencl-icd ocl-icd-libopencl1 >/dev/null; } \
    || echo "could not install PoCL; the OpenCL tests will be reported skipped"
fi

# 1. The Python tools (weight conversion, reference harness, dataset fetcher): standard unittest.
pylog=$(mktemp)
/usr/bin/python3 -m unittest discover -s tools -p 'test_*.py' 2>&1 | tee "$pylog"
pystatus=${PIPESTATUS[0]}
py_run=$(grep -oE '^Ran [0-9]+ test' "$pylog" | grep -oE '[0-9]+' | tail -1); py_run=${py_run:-0}
py_fail=$(grep -oE '(failures|errors)=[0-9]+' "$pylog" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
py_skip=$(grep -oE 'skipped=[0-9]+' "$pylog" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
if [ "$pystatus" != 0 ] && [ "$py_fail" = 0 ]; then py_fail=1; fi
rm -f "$pylog"

# 2. The engine, CLI and every comparison with PyTorch / scikit-learn / liblinear: xunit.
log=$(mktemp)
dotnet test Tp7.Native.sln -c Release --logger "console;verbosity=normal" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# dotnet test ends each test assembly with "Total tests: N" then "Passed: N", "Failed: N", "Skipped: N" lines.
# (At minimal verbosity the same totals come as "Passed!  - Failed: 0, Passed: 140, Skipped: 0, ..."; read either.)
count() {
  if grep -qE '^Total tests: ' "$log"; then
    grep -E "^ +$1: +[0-9]+ *\$" "$log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}'
  else
    grep -E '(Passed|Failed)! +- ' "$log" | grep -oE "$1: +[0-9]+" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}'
  fi
}
passed=$(count Passed); failed=$(count Failed); skipped=$(count Skipped)
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; echo "dotnet test exited with $status (build failure or crashed test host)"; fi
rm -f "$log"
passed=$((passed + py_run - py_fail - py_skip)); failed=$((failed + py_fail)); skipped=$((skipped + py_skip))
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$status" = 0 ] && [ "$failed" = 0 ]
