// The `train/` group of a golden (goldens/README.md §The training step; issue 16 item 7): one
// complete training step of the reference in exact mode (ref/train train_step.hpp) on the golden's
// token sequence — the loss parts, the gradient of every parameter by official name, the optimizer
// states after the step and every updated parameter — written by `dsv4 golden generate --train`
// with the hashing and manifest conventions of the rest of the golden (golden.hpp), so that
// `dsv4 golden verify` covers it.
//
//   train/tokens                       int64   [1, s]       input     the step's ids (inputs/tokens, all L)
//   train/loss/{total,lm,mtp,balance} float64 [1]          value     total = lm + λ_MTP·mtp + balance
//   train/grad/<name>                  float64 <param>      value     ∂total/∂θ at θ₀ (exact)
//   train/adamw/m/<name>, …/v/<name>   float64 <param>      value     AdamW moments after step 1
//   train/muon/momentum/<name>         float64 <param>      value     Muon momentum after step 1
//   train/updated/<name>               float64 <param>      value     θ₁ (gate.bias: the bias update)
//   train/decisions/<block>.ffn/experts int64  [T, k]       discrete  the routing held fixed
//   train/decisions/<block>.attn/lists int64   [s, width]   discrete  the index lists held fixed (−1: none)
//   train/decisions/min_routing_gap    float64 [1]          decision  smallest biased-score gap of a cut
//   train/quant_offsets/<site>         float64 [rows, cols] value     δ = Q(v₀) − v₀ of each FP8 KV point
//   train/official/{loss,grad,adamw/m,adamw/v,muon/momentum,updated}/<name>
//                                      float64 as its exact twin  value  the official-style step's
//                                      (ref/train train_step_official, spec 06 §6.17)
//
// Each exact value dataset of the step (loss, grad, optimizer states, updated) has its official
// twin, and the manifest's train.tolerance.<exact path> holds the figures of the official-style
// value against the exact one — the fields of tolerance.tensors.<canonical> (golden.hpp,
// golden_tolerance_json): the yardstick of the certify tolerance model per gradient, as per forward
// output.
//
// <name> is a parameter's official name, <param> its shape in the checkpoint listing
// (published_checkpoint_tensors: vectors [n]). describe_train_dataset is the one description of
// these names (their kind, role and dtype): the writer takes the roles from it and verify judges
// every train/ dataset by it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/golden/golden.hpp"
#include "dsv4/numerics/tensor.hpp"
#include "dsv4/train/train_step.hpp"

namespace dsv4 {

enum class TrainDataset {
  kTokens,
  kLoss,          // name: total, lm, mtp, balance
  kGrad,          // name: a parameter
  kAdamWM,        // name: an AdamW parameter
  kAdamWV,        // name: an AdamW parameter
  kMuonMomentum,  // name: a Muon parameter
  kUpdated,       // name: a parameter
  kRouting,       // name: a routed FFN module (`layers.3.ffn`, `mtp.0.ffn`)
  kIndexLists,    // name: an attention module (`layers.2.attn`)
  kRoutingGap,
  kQuantOffset,  // name: a quantisation site (`layers.2.attn.kv`, `layers.2.attn.compressor`)
};

struct TrainDatasetDesc {
  TrainDataset kind;
  std::string name;  // the parameter, loss part, module or site; empty for kTokens, kRoutingGap
  GoldenRole role;
  const char* dtype;      // "float64" or "int64"
  bool official = false;  // train/official/…: the official-style twin of a value dataset
};

// The description of a `train/…` path; nullopt for a path that names no train dataset.
std::optional<TrainDatasetDesc> describe_train_dataset(std::string_view path);
// The inverse: the path of the dataset of `kind` for `name`.
std::string train_dataset_path(TrainDataset kind, const std::string& name = "", bool official = false);
// Whether a kind has an official-style twin (the step's values: loss, grad, states, updated).
bool train_kind_has_official(TrainDataset kind);

// The order of the step's backward, in which certify and diff blame the first failing train/ value
// (goldens/README.md §Certifying a training engine): the loss parts (lm, mtp, balance, then total),
// then every gradient in the order the backward produces it — the head (head.weight, norm,
// hc_head), the MTP block (its hc_head and norm, ffn, ffn_norm, hc_ffn, attn, attn_norm, hc_attn,
// then e_proj / h_proj, enorm / hnorm), layers n−1 … 0 (each: ffn, ffn_norm, hc_ffn, attn,
// attn_norm, hc_attn), embed.weight — then the optimizer's states and updated parameters in the
// same parameter order (the optimizer runs after the backward). Names within one module: by name.
// Sorts official-style twins as their exact paths; paths that are not train/ values go last.
void sort_in_backward_order(std::vector<std::string>& paths);
// What a failing train/ value blames, in words: "loss balance", "backward of layers.5.ffn.experts.3
// (train/grad/…)", "optimizer of layers.3.ffn.gate.weight (train/updated/…)".
std::string train_blame(const std::string& path);
// The module a parameter's gradient belongs to: the name without `.weight`, an expert's w1/w2/w3
// and an mHC parameter's _fn/_base/_scale (`layers.5.ffn.experts.3`, `layers.2.hc_attn`,
// `layers.2.attn.wq_a`, `layers.2.attn.attn_sink` → `layers.2.attn`).
std::string train_param_module(const std::string& name);

// The tolerance figures of the train group (manifest train.tolerance), keyed by the exact dataset's
// path (`train/grad/<name>`); empty for a golden without them. InputError-like bad golden (naming
// the key) for an entry that is not of the tolerance.tensors schema.
std::map<std::string, GoldenTolerance> train_tolerances(const Golden& g);

// The step's hyper-parameters as the manifest's train section records them (lr, mtp_weight,
// balance_alpha, bias_speed, adamw.{beta1, beta2, eps, weight_decay}, muon.{momentum, rms,
// weight_decay, ns_eps}): what the teacher-forced optimizer of certify steps with. InputError
// naming the golden and the key for a golden without a train section, or a key missing or not a
// finite number.
TrainStepOptions train_step_options(const Golden& g);

// Why a training step cannot be written for this config and these tokens (one line, naming the
// limit), or nullopt: the step is one sequence (batch 1) of at least 3 tokens, MTP trains mtp.0
// only (n_mtp_layers ≤ 1), and its float64 state (parameters, gradients, optimizer states, updated
// parameters: about 6 × 8 bytes a parameter) must fit the available memory (DSV4_MEMORY_LIMIT).
std::optional<std::string> train_golden_refusal(const ModelConfig& c, std::int64_t batch, std::int64_t length);

struct TrainGoldenStats {
  double seconds_step = 0;  // forward, backward and the optimizer step
  std::int64_t datasets = 0;
};

// Runs train_step on tokens (one sequence) from model_parameters(c, w) and hands every train/
// dataset to `emit` in a fixed order (tokens, losses, decisions, offsets, then per parameter in
// name order: grad, states, updated). Returns the manifest's "train" section (JSON text).
using TrainEmit = std::function<void(const std::string& path, const Tensor& t)>;
std::string write_train_group(const ModelConfig& c, const ModelWeights& w, const std::vector<std::int64_t>& tokens,
                              const TrainStepOptions& opt, const TrainEmit& emit, TrainGoldenStats* stats = nullptr);

// The train/ checks of verify_golden (the hashes, dtypes and shapes of every listed dataset are
// verify_golden's own): every train/ dataset is a described name with its role and dtype; the
// manifest's train section is present exactly when train/ datasets are; every float parameter of
// the config has its gradient and updated value of the checkpoint shape, the states of its
// optimizer (optimizer_for) and no other; the losses, tokens and decisions are there; train/tokens
// is inputs/tokens; the stored total is lm + λ_MTP·mtp + balance as the step evaluates it.
std::vector<GoldenProblem> verify_train_group(const Golden& g);

}  // namespace dsv4
