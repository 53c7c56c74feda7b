#!/bin/bash
# How this project's device evidence is produced (gpu/README.md §Verified on a GPU, stop 24's row).
# The device machine has no compiler toolchain of ours: the binaries are built here (a Release build
# with DSV4_CUDA=ON), stripped and carried with the shared libraries they need:
#   mkdir -p devcarry/lib /tmp/dc && cp build/bin/{ops_test,gpu_*_test,cli_audit_test,dsv4,gpu_kernel_bench} /tmp/dc
#   strip --strip-unneeded /tmp/dc/* && (cd /tmp/dc && tar cf - . | xz -T2 -6 > $REPO/devcarry/bins.tar.xz)
#   cp <libhdf5, libcurl, ... as ldd lists them> devcarry/lib/ ; cp gpu/device_run.sh devcarry/run.sh
# then on the device, from the repository root: OUT=<dir> bash devcarry/run.sh
# (devcarry/ is git-ignored; the tests read DSV4_SOURCE_DIR=/work/main and DSV4_CLI_PATH=/work/main/build-e/bin/dsv4.)
set -u
cd "$(dirname "$0")"; DC=$PWD; REPO=$(cd .. && pwd)
mkdir -p bin && tar xJf bins.tar.xz -C bin
export LD_LIBRARY_PATH=$DC/lib
B=$DC/bin; L=/tmp/L; mkdir -p $L
# the tests read DSV4_SOURCE_DIR=/work/main and DSV4_CLI_PATH=/work/main/build-e/bin/dsv4
[ -e /work/main ] || { mkdir -p /work && ln -sfn "$REPO" /work/main; }
mkdir -p /work/main/build-e/bin && cp $B/dsv4 /work/main/build-e/bin/dsv4
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; compute-sanitizer --version | tail -1; python3 -c "import torch; print('torch', torch.__version__)"; } > $OUT/summary.txt 2>&1
( cd "$REPO"; timeout 60 python3 tests/bench/gpu_torch_peer.py --self-test > $L/peer_selftest.log 2>&1; echo "peer self-test rc=$?" >> $L/rc.txt
  timeout 170 python3 tests/bench/gpu_kernel_vs_torch.py --bench $B/gpu_kernel_bench --configs v4-flash --out $OUT/gvt-flash > $L/gvt_flash.log 2>&1; echo "gvt flash rc=$?" >> $L/rc.txt )
( timeout 200 $B/ops_test --gtest_filter='*Device*' > $L/ops_device.log 2>&1; echo "ops_test rc=$?" >> $L/rc.txt ) &
for t in $B/gpu_*_test $B/cli_audit_test; do ( timeout 200 $t > $L/$(basename $t).log 2>&1; echo "$(basename $t) rc=$?" >> $L/rc.txt ) & done
( D=/work/main/build-e/bin/dsv4; cd /tmp
  $D golden generate --device gpu --config tiny --seed 1 --prompt-len 6 --decode-steps 2 --out /tmp/g.h5 > $L/cli_gen.log 2>&1; echo "generate --device gpu rc=$?" >> $L/cli_gen.log
  $D golden verify --recompute /tmp/g.h5 >> $L/cli_gen.log 2>&1; echo "verify --recompute (cpu) of the gpu golden rc=$?" >> $L/cli_gen.log
  $D golden verify --recompute --device gpu /work/main/goldens/tiny-s1-p6-d2.h5 >> $L/cli_gen.log 2>&1; echo "verify --recompute --device gpu committed rc=$?" >> $L/cli_gen.log
  $D audit --config tiny --quick --json /tmp/a.json > $L/cli_audit.log 2>&1; echo "audit rc=$?" >> $L/cli_audit.log; cp /tmp/a.json $OUT/audit.json ) &
NEW='*Device*/head_rmsnorm:*Device*/add:*Device*/scale:*Device*/expert:*Device*/moe_combine'
{ for tool in memcheck racecheck initcheck synccheck; do for t in gpu_head_rmsnorm_test gpu_elementwise_test; do echo "$tool $B/$t *"; done; echo "$tool $B/ops_test $NEW"; done
  echo "memcheck $B/gpu_model_test *DeviceBackend*"; } > /tmp/jobs
timeout 260 xargs -P 13 -L 1 bash -c 'n=$(basename $1)_$0; l=/tmp/L/san_$n.log; compute-sanitizer --tool $0 --error-exitcode 99 $1 --gtest_filter=$2 > $l 2>&1; echo "$0 $(basename $1) $2 rc=$? $(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" $l | tail -1)"' < /tmp/jobs > $OUT/sanitizer.txt 2>&1
wait
sort $L/rc.txt >> $OUT/summary.txt
grep -hE "^device [a-z_0-9]+: |^\[  (PASSED|FAILED) |^\[  FAILED|recomputed|undecided|mismatch|compared|SKIPPED|rc=|recompute|audit:|GPU vs" $L/*.log | head -200 >> $OUT/summary.txt
tar czf $OUT/logs.tgz -C /tmp L
cat $OUT/summary.txt $OUT/sanitizer.txt; tail -5 $L/peer_selftest.log; tail -45 $L/gvt_flash.log
