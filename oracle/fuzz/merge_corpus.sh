#!/usr/bin/env bash
# Merges what fuzzing found back into the committed seed corpora, minimised: for each harness,
# libFuzzer's -merge=1 (edges only: hit counts are not features here) adds to oracle/fuzz/corpus/<name>/ only the inputs of build-fuzz/corpus/<name>/
# (filled by .ci/fuzz or a longer campaign) that reach coverage the committed corpus does not.
# Review `git status oracle/fuzz/corpus` and commit what it added.
#   bash oracle/fuzz/merge_corpus.sh [name …]     (default: every harness that has a found corpus)
set -euo pipefail
cd "$(dirname "$0")/../.."
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for d in build-fuzz/corpus/*/; do [ -d "$d" ] && names+=("$(basename "$d")"); done
fi
for t in "${names[@]}"; do
  bin=build-fuzz/bin/fuzz_$t
  if [ ! -x "$bin" ]; then echo "merge_corpus: $bin not built (run .ci/fuzz first)" >&2; exit 2; fi
  mkdir -p "oracle/fuzz/corpus/$t"
  before=$(find "oracle/fuzz/corpus/$t" -type f | wc -l)
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 "$bin" -merge=1 -use_counters=0 -use_value_profile=0 -timeout=10 -rss_limit_mb=2048 \
    "oracle/fuzz/corpus/$t" "build-fuzz/corpus/$t" >"build-fuzz/merge_$t.log" 2>&1
  after=$(find "oracle/fuzz/corpus/$t" -type f | wc -l)
  echo "$t: $before -> $after seed inputs ($(grep -o 'cov: [0-9]*' "build-fuzz/merge_$t.log" | tail -1))"
done
