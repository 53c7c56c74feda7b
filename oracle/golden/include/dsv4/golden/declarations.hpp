// What a candidate dump declares about the run that made it — its token ids, its weights' content
// hash, its config (oracle/README.md §Candidate declarations) — compared with the golden's before
// anything is judged: a dump made from other tokens or weights fails every output, and the one
// useful message is which input differs.
//
// Where a candidate declares them (every one optional):
//   tokens   the tensor `inputs/tokens` (int32/int64, [b, L] or [L]; any dump format, the golden's
//            own dataset name), or HDF5 root attributes `tokens` (flat int64) + `tokens_shape` [b, L]
//            (what `dsv4 run --dump` writes);
//   weights  `weights_content_sha256`: an HDF5 root attribute or a safetensors `__metadata__` key,
//            the SHA-256 the golden records as weights.content_sha256 (goldens/README.md); or the
//            HDF5 root attributes `weights` = "synthetic" + `weights_seed` (`dsv4 run --dump`),
//            compared with a golden of synthetic weights;
//   config   `config`: an HDF5 root attribute or a safetensors `__metadata__` key, config.json text
//            (official ModelArgs or Hugging Face keys), compared field by field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/golden/golden.hpp"
#include "dsv4/io/tensor_source.hpp"

namespace dsv4 {

struct CandidateDeclarations {
  std::optional<std::vector<std::vector<std::int64_t>>> tokens;  // [b][L]
  std::string tokens_where;                                      // "tensor inputs/tokens", "attribute tokens"
  std::optional<std::string> weights_content_sha256;
  std::string weights_where;
  std::optional<std::uint64_t> weights_seed;  // dsv4 run dumps of synthetic weights
  std::optional<std::string> config_json;
  std::string config_where;
};

// Reads the declarations; InputError naming the candidate and the declaration when one is present
// but malformed (tokens of another dtype or rank, a config that does not parse, a non-string hash).
CandidateDeclarations read_declarations(const MappedTensorSource& candidate);

// One line per declared input that differs from the golden's, tokens first ("candidate tokens differ
// from the golden's at position 3 of sequence 0: 17, the golden's 912 (tensor inputs/tokens)"),
// then weights, then config (naming the differing fields). Empty when everything declared agrees.
std::vector<std::string> declaration_differences(const Golden& golden, const CandidateDeclarations& d);

// certify's and diff's check: prints each difference line, then "<command>: FAIL — the candidate was
// not made from the golden's inputs; nothing judged", and returns 1; returns 0 (printing nothing)
// when the declarations agree or there are none.
int check_declarations(const Golden& golden, const MappedTensorSource& candidate, const std::string& command);

}  // namespace dsv4
