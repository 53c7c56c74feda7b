#!/bin/bash
# The device run owed by the tiled DMMA linear (gpu/src/linear.cu; BENCHMARKS.md "The tiled DMMA
# linear"). Binaries built on the CPU machine from the commit under test (Release, DSV4_CUDA=ON), with
# two mutants of linear.cu that the tests must catch:
#   ops_test_m1_nobound: decide_dense's bound set to 0 (err = 0·gamma);
#   ops_test_m2_rz:      the fp8 / fp4 block sum rounded toward zero (__double2float_rz) instead of RN;
# stripped and carried (devcarry-h1/ is git-ignored):
#   mkdir -p devcarry-h1/lib devcarry-h1/bench /tmp/c/bin && cp build/bin/{ops_test,gpu_linear_test,gpu_kernel_bench,gpu_model_test,gpu_expert_test} <the mutants> /tmp/c/bin
#   strip --strip-unneeded /tmp/c/bin/* && (cd /tmp/c && tar cf - bin | xz -T2 -6 > $REPO/devcarry-h1/bins.tar.xz)
#   cp devcarry/lib/* devcarry-h1/lib/; cp tests/bench/gpu_{kernel_vs_torch,torch_peer}.py devcarry-h1/bench/; cp gpu/device_run_linear_tile.sh devcarry-h1/run.sh
# then on the device, from the repository root: OUT=<dir> bash devcarry-h1/run.sh
# Expected: every ops_test / gpu test run passes (0 failures on every line) with the default rows
# threshold, with tiles for every launch (DSV4_GPU_LINEAR_TILE_MIN_ROWS=1) and with none; both mutants
# FAIL; the sanitizers report 0 errors / 0 hazards; the bench prints ours beside torch fp32 / fp64.
set -u
cd "$(dirname "$0")"; DC=$PWD; REPO=$(cd .. && pwd)
export LD_LIBRARY_PATH=$DC/lib DSV4_SOURCE_DIR=$REPO
mkdir -p $DC/bin && tar xJf $DC/bins.tar.xz -C $DC; B=$DC/bin; L=$OUT/logs; mkdir -p $L
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; compute-sanitizer --version | tail -1; python3 -c "import torch; print('torch', torch.__version__)"; } > $OUT/summary.txt 2>&1
F='*Device*/linear:*Device*/grouped_projection:*Device*/moe_combine:*Device*/expert'
r() { local name=$1 to=$2; shift 2; ( timeout $to "$@" > $L/$name.log 2>&1; echo "$name rc=$?" >> $L/rc.txt ); }
r ops_default 200 $B/ops_test --gtest_filter="$F" &
DSV4_GPU_LINEAR_TILE_MIN_ROWS=1 r ops_tile_all 200 $B/ops_test --gtest_filter="$F" &
DSV4_GPU_LINEAR_TILE_MIN_ROWS=100000000 r ops_tile_none 200 $B/ops_test --gtest_filter="$F" &
r linear_test_default 200 $B/gpu_linear_test &
DSV4_GPU_LINEAR_TILE_MIN_ROWS=1 r linear_test_tile_all 200 $B/gpu_linear_test &
r expert_test 200 $B/gpu_expert_test &
DSV4_GPU_LINEAR_TILE_MIN_ROWS=1 r mutant_m1_nobound 200 $B/ops_test_m1_nobound --gtest_filter='*Device*/linear:*Device*/grouped_projection' &
DSV4_GPU_LINEAR_TILE_MIN_ROWS=1 r mutant_m2_rz 200 $B/ops_test_m2_rz --gtest_filter='*Device*/linear' &
r model_device 200 $B/gpu_model_test --gtest_filter='*DeviceBackend*' &
for tool in memcheck racecheck initcheck synccheck; do
  DSV4_GPU_LINEAR_TILE_MIN_ROWS=1 r san_$tool 250 compute-sanitizer --tool $tool --error-exitcode 99 $B/ops_test --gtest_filter='*Device*/linear:*Device*/grouped_projection' &
done
wait
# the bench alone on the GPU: ours (default threshold) beside torch, then the warp kernels alone, then tiles at every M
( cd $DC/bench && timeout 200 python3 gpu_kernel_vs_torch.py --bench $B/gpu_kernel_bench --configs v4-flash --ops linear_bf16,linear_fp8,linear_fp4 --out $OUT/gvt > $L/gvt.log 2>&1; echo "gvt rc=$?" >> $L/rc.txt )
DSV4_GPU_LINEAR_TILE_MIN_ROWS=100000000 r bench_warp_only 100 $B/gpu_kernel_bench --configs v4-flash --ops linear_bf16,linear_fp8,linear_fp4
DSV4_GPU_LINEAR_TILE_MIN_ROWS=1 r bench_tile_all 60 $B/gpu_kernel_bench --configs v4-flash --ops linear_bf16,linear_fp8,linear_fp4
sort $L/rc.txt >> $OUT/summary.txt
grep -hE "^\[  (PASSED|FAILED) |^\[  FAILED|mismatch|ERROR SUMMARY|RACECHECK SUMMARY|recomputed" $L/*.log | sort | uniq -c | head -80 >> $OUT/summary.txt
cat $OUT/summary.txt; tail -50 $L/gvt.log; cat $L/bench_warp_only.log $L/bench_tile_all.log | cut -c1-400
