// What the golden and certify harnesses (fuzz_golden, fuzz_certify) share: a small golden made
// once per process (a 3-layer model of dim 128 and vocab 64, prompt 4 + 1 decode step: 318
// datasets, about 1 MB), held in memory as its datasets and manifest, with its synthetic weights;
// a per-process scratch directory; their certify step (certify_and_report); and the rule of both harnesses: only
// InputError (bad input, exit 2) may escape what dsv4 does with a hostile file — any other exception is a finding.
//
// Seeds: with DSV4_FUZZ_WRITE_SEEDS=<dir> in the environment a harness writes its seed corpus
// (built from this golden) into <dir> and exits, so the committed seeds can be remade after a
// format change (oracle/README.md, "Fuzzing").
#pragma once

#include <map>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/certify.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/io/tensor_source.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4::fuzz {

struct GoldenTemplate {
  std::string path;                    // the golden as generated (kept for the process's life)
  std::string manifest;                // its manifest text
  std::map<std::string, Tensor> data;  // every dataset (manifest path → tensor)
  std::vector<std::string> order;      // dataset paths in manifest order
  std::string config_json;             // config_to_json of its config
  ModelConfig config;
  const ModelWeights* weights = nullptr;  // its synthetic weights (seed 1)
};

// Generated on the first call (a few seconds under ASan), then the same object.
const GoldenTemplate& golden_template();

// A scratch directory of this process ($TMPDIR or /tmp), created on the first call, removed at exit.
const std::string& scratch_dir();

// Writes `bytes` to `path` (truncating); aborts on an I/O error (the harness's, not dsv4's).
void write_bytes(const std::string& path, const std::string& bytes);

// The seed directory when DSV4_FUZZ_WRITE_SEEDS is set, else "".
std::string seeds_dir_requested();

// What both harnesses do with a golden and a candidate, as `dsv4 certify` does it
// (cli/cmd_certify.cpp): certify with `opts`, its local verdicts (diff_against_golden: every module
// whose inputs the candidate holds recomputed) on `weights` when non-null (the golden's own weights:
// golden_template's cached ones), else the end-to-end screen alone; then the verdict and the report
// as text (verbose) and JSON, made and dropped. Throws what certify throws (InputError: bad input).
void certify_and_report(const Golden& g, const MappedTensorSource& cand, CertifyOptions opts,
                        const ModelWeights* weights);

}  // namespace dsv4::fuzz
