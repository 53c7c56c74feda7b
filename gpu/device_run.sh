#!/bin/bash
# How this project's device evidence is produced (gpu/README.md §Verified on a GPU, stop 25's row).
# The device machine has no compiler toolchain of ours: the binaries are built here (a Release build
# with DSV4_CUDA=ON), stripped and carried with the shared libraries they need:
#   mkdir -p devcarry/lib /tmp/dc && cp build/bin/{ops_test,gpu_*_test,cli_audit_test,dsv4,gpu_kernel_bench} /tmp/dc
#   (plus ops_test_m2_rz: ops_test built with linear.cu's tiled fp8 / fp4 block sum rounded toward
#    zero, __double2float_rz, instead of __double2float_rn — a mutant the block-rounding cases must catch)
#   strip --strip-unneeded /tmp/dc/* && (cd /tmp/dc && tar cf - . | xz -T2 -6 > $REPO/devcarry/bins.tar.xz)
#   cp <libhdf5, libcurl, ... as ldd lists them> devcarry/lib/ ; cp gpu/device_run.sh devcarry/run.sh
# then on the device, from the repository root: OUT=<dir> bash devcarry/run.sh
# (devcarry/ is git-ignored; the tests read DSV4_SOURCE_DIR=/work/main and DSV4_CLI_PATH=/work/main/build/bin/dsv4.)
# Must show: every rc=0 except `mutant_m2_rz rc=1` (caught), 0 sanitizer errors.
set -u
cd "$(dirname "$0")"; DC=$PWD; REPO=$(cd .. && pwd)
mkdir -p bin && tar xJf bins.tar.xz -C bin
export LD_LIBRARY_PATH=$DC/lib DSV4_SOURCE_DIR=/work/main
B=$DC/bin; L=/tmp/L; mkdir -p $L
[ -e /work/main ] || { mkdir -p /work && ln -sfn "$REPO" /work/main; }
# the CLI tests run the dsv4 of the build directory they were compiled in (build/ since stop 25, build-e/ before)
for d in build build-e; do mkdir -p /work/main/$d/bin && cp $B/dsv4 /work/main/$d/bin/dsv4; done
{ date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; compute-sanitizer --version | tail -1; python3 -c "import torch; print('torch', torch.__version__)"; } > $OUT/summary.txt 2>&1
# the logs come back even if the call is cut short: a snapshot every 20 s
( while sleep 20; do tar czf $OUT/logs.tgz -C /tmp L 2>/dev/null; done ) &
SNAP=$!
r() { local name=$1 to=$2; shift 2; ( timeout $to "$@" > $L/$name.log 2>&1; echo "$name rc=$?" >> $L/rc.txt ); }
r ops_device 280 $B/ops_test --gtest_filter='*Device*' &
DSV4_GPU_LINEAR_TILE_MIN_ROWS=1 r ops_linear_tile_all 200 $B/ops_test --gtest_filter='*Device*/linear:*Device*/expert:*Device*/grouped_projection' &
DSV4_GPU_LINEAR_TILE_MIN_ROWS=1 r mutant_m2_rz 200 $B/ops_test_m2_rz --gtest_filter='*DeviceMatchesReference*/linear' &
for t in $B/gpu_*_test $B/cli_audit_test; do r $(basename $t) 280 $t & done
( D=/work/main/build-e/bin/dsv4; cd /tmp
  $D golden generate --device gpu --config tiny --seed 1 --prompt-len 40 --decode-steps 2 --out /tmp/g.h5 > $L/cli_gen.log 2>&1; echo "generate --device gpu rc=$?" >> $L/cli_gen.log
  $D golden verify --recompute /tmp/g.h5 >> $L/cli_gen.log 2>&1; echo "verify --recompute (cpu) of the gpu golden rc=$?" >> $L/cli_gen.log
  $D golden verify --recompute-only 'layers.1,decode1/layers.3,head' /tmp/g.h5 >> $L/cli_gen.log 2>&1; echo "verify --recompute-only (cpu spot check) of the gpu golden rc=$?" >> $L/cli_gen.log
  $D golden verify --recompute --device gpu /work/main/goldens/tiny-s1-p6-d2.h5 >> $L/cli_gen.log 2>&1; echo "verify --recompute --device gpu committed rc=$?" >> $L/cli_gen.log
  $D audit --config tiny --quick --json /tmp/a.json > $L/cli_audit.log 2>&1; echo "audit rc=$?" >> $L/cli_audit.log; cp /tmp/a.json $OUT/audit.json ) &
{ for tool in memcheck initcheck; do echo "$tool $B/ops_test *DeviceWithResident*"; done
  echo "racecheck $B/ops_test *DeviceMatchesReference*/linear"
  echo "memcheck $B/gpu_model_test *DeviceBackend*:-*BatchInvariance*"; } > /tmp/jobs
timeout 280 xargs -P 4 -L 1 bash -c 'n=$(basename $1)_$0; l=/tmp/L/san_$n.log; compute-sanitizer --tool $0 --error-exitcode 99 $1 --gtest_filter=$2 > $l 2>&1; echo "$0 $(basename $1) $2 rc=$? $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $l | tail -1)"' < /tmp/jobs > $OUT/sanitizer.txt 2>&1
kill $SNAP; wait
sort $L/rc.txt >> $OUT/summary.txt
grep -hE "^device [a-z_0-9]+: |^\[  (PASSED|FAILED) |^\[  FAILED|recomputed|undecided|mismatch|compared|reruns|tokens vs|SKIPPED|rc=|recompute|spot check|audit:|GPU vs|block-sum" $L/*.log | sort | uniq -c | sort -rn | head -150 >> $OUT/summary.txt
tar czf $OUT/logs.tgz -C /tmp L
cat $OUT/summary.txt $OUT/sanitizer.txt
# the v4-pro bench row (owed since stop 24), alone on the GPU, if time is left
( cd "$REPO"; timeout 60 python3 tests/bench/gpu_kernel_vs_torch.py --bench $B/gpu_kernel_bench --configs v4-pro --out $OUT/gvt-pro > $L/gvt_pro.log 2>&1; echo "gvt pro rc=$?"; tail -40 $L/gvt_pro.log )
