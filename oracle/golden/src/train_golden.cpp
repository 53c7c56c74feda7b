// The train/ group of a golden: train_golden.hpp (goldens/README.md §The training step).
#include "dsv4/golden/train_golden.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "dsv4/config/resource_limits.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/model/checkpoint.hpp"

namespace dsv4 {

namespace {

using ojson = nlohmann::ordered_json;

constexpr const char* kTrain = "train/";
constexpr std::string_view kOfficial = "official/";  // after "train/": the official-style twins

struct Prefix {
  TrainDataset kind;
  const char* prefix;  // after "train/"; the name follows
  GoldenRole role;
  const char* dtype;
};
// One row per kind with a name (the description's table).
const Prefix kPrefixes[] = {
    {TrainDataset::kLoss, "loss/", GoldenRole::kValue, "float64"},
    {TrainDataset::kGrad, "grad/", GoldenRole::kValue, "float64"},
    {TrainDataset::kAdamWM, "adamw/m/", GoldenRole::kValue, "float64"},
    {TrainDataset::kAdamWV, "adamw/v/", GoldenRole::kValue, "float64"},
    {TrainDataset::kMuonMomentum, "muon/momentum/", GoldenRole::kValue, "float64"},
    {TrainDataset::kUpdated, "updated/", GoldenRole::kValue, "float64"},
    {TrainDataset::kQuantOffset, "quant_offsets/", GoldenRole::kValue, "float64"},
};
constexpr const char* kLossParts[] = {"total", "lm", "mtp", "balance"};

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() > suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

Tensor f64_tensor(std::vector<std::int64_t> shape, const double* data) {
  Tensor t(DType::kF64, std::move(shape));
  const auto v = t.values<double>();
  std::copy(data, data + v.size(), v.begin());
  return t;
}

Tensor scalar(double x) { return f64_tensor({1}, &x); }

// Float parameters of the config (the ParameterMap's names) with their checkpoint shapes.
std::map<std::string, std::vector<std::int64_t>> float_parameters(const ModelConfig& c) {
  std::map<std::string, std::vector<std::int64_t>> out;
  for (const CheckpointTensorInfo& t : published_checkpoint_tensors(c, CheckpointNaming::kOfficial))
    if (!ends_with(t.name, ".scale") && !ends_with(t.name, ".tid2eid")) out.emplace(t.name, t.shape);
  return out;
}

std::int64_t numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (const std::int64_t d : shape) n *= d;
  return n;
}

Tensor param_tensor(const std::vector<std::int64_t>& shape, const Mat& m) {
  if (numel(shape) != m.size())
    throw std::logic_error("train golden: a parameter of " + std::to_string(m.size()) +
                           " values has checkpoint shape " + shape_string(shape));
  return f64_tensor(shape, m.data());
}

}  // namespace

bool train_kind_has_official(TrainDataset kind) {
  switch (kind) {
    case TrainDataset::kLoss:
    case TrainDataset::kGrad:
    case TrainDataset::kAdamWM:
    case TrainDataset::kAdamWV:
    case TrainDataset::kMuonMomentum:
    case TrainDataset::kUpdated:
      return true;
    default:
      return false;
  }
}

std::optional<TrainDatasetDesc> describe_train_dataset(std::string_view path) {
  if (path.substr(0, 6) != kTrain) return std::nullopt;
  std::string_view rest = path.substr(6);
  if (rest.substr(0, kOfficial.size()) == kOfficial) {
    std::optional<TrainDatasetDesc> d =
        describe_train_dataset(std::string(kTrain) + std::string(rest.substr(kOfficial.size())));
    if (!d || d->official || !train_kind_has_official(d->kind)) return std::nullopt;
    d->official = true;
    return d;
  }
  if (rest == "tokens") return TrainDatasetDesc{TrainDataset::kTokens, "", GoldenRole::kInput, "int64"};
  if (rest == "decisions/min_routing_gap")
    return TrainDatasetDesc{TrainDataset::kRoutingGap, "", GoldenRole::kDecision, "float64"};
  for (const Prefix& p : kPrefixes) {
    const std::string_view pre(p.prefix);
    if (rest.size() <= pre.size() || rest.substr(0, pre.size()) != pre) continue;
    const std::string_view name = rest.substr(pre.size());
    if (name.find('/') != std::string_view::npos) return std::nullopt;
    if (p.kind == TrainDataset::kLoss) {
      bool known = false;
      for (const char* part : kLossParts) known = known || name == part;
      if (!known) return std::nullopt;
    }
    return TrainDatasetDesc{p.kind, std::string(name), p.role, p.dtype};
  }
  if (rest.substr(0, 10) == "decisions/") {
    const std::string_view r = rest.substr(10);
    const auto slash = r.find('/');
    if (slash == std::string_view::npos || r.find('/', slash + 1) != std::string_view::npos) return std::nullopt;
    const std::string_view module = r.substr(0, slash), what = r.substr(slash + 1);
    if (what == "experts" && ends_with(module, ".ffn"))
      return TrainDatasetDesc{TrainDataset::kRouting, std::string(module), GoldenRole::kDiscrete, "int64"};
    if (what == "lists" && ends_with(module, ".attn"))
      return TrainDatasetDesc{TrainDataset::kIndexLists, std::string(module), GoldenRole::kDiscrete, "int64"};
  }
  return std::nullopt;
}

std::string train_dataset_path(TrainDataset kind, const std::string& name, bool official) {
  if (official) {
    if (!train_kind_has_official(kind)) throw std::logic_error("train_dataset_path: no official twin of this kind");
    return std::string(kTrain) + std::string(kOfficial) + train_dataset_path(kind, name).substr(6);
  }
  switch (kind) {
    case TrainDataset::kTokens:
      return "train/tokens";
    case TrainDataset::kRoutingGap:
      return "train/decisions/min_routing_gap";
    case TrainDataset::kRouting:
      return "train/decisions/" + name + "/experts";
    case TrainDataset::kIndexLists:
      return "train/decisions/" + name + "/lists";
    default:
      break;
  }
  for (const Prefix& p : kPrefixes)
    if (p.kind == kind) return std::string(kTrain) + p.prefix + name;
  throw std::logic_error("train_dataset_path: unknown kind");
}

std::optional<std::string> train_golden_refusal(const ModelConfig& c, std::int64_t batch, std::int64_t length) {
  if (batch != 1)
    return "the training step is one sequence (model_backward: the prefill of one sequence); the tokens hold " +
           std::to_string(batch) + " sequences";
  if (length < 3)
    return "the training step needs at least 3 tokens (next-token and MTP targets); the sequence has " +
           std::to_string(length);
  if (c.n_mtp_layers > 1)
    return "model_backward trains one MTP module (mtp.0); config " + c.name +
           " has n_mtp_layers = " + std::to_string(c.n_mtp_layers);
  double params = 0;
  for (const auto& [name, shape] : float_parameters(c)) params += static_cast<double>(numel(shape));
  // θ₀, ∂L/∂θ, the optimizer state (≤ 2 tensors a parameter, ~1 on average), θ₁, and the weights
  // and their second make: about 6 float64 copies.
  const double need = 6.0 * 8.0 * params;
  if (const auto avail = available_memory_bytes(); avail && need > *avail)
    return "the training step of config " + c.name + " holds about " + human_bytes(need) + " in float64 (" +
           std::to_string(static_cast<long long>(params)) +
           " parameters: weights, gradients, optimizer states, updated parameters), " + human_bytes(*avail) +
           " available (model_backward is exact double arithmetic: a config of the tiny scale)";
  return std::nullopt;
}

std::string write_train_group(const ModelConfig& c, const ModelWeights& w, const std::vector<std::int64_t>& tokens,
                              const TrainStepOptions& opt, const TrainEmit& emit, TrainGoldenStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  const ParameterMap params = model_parameters(c, w);
  const TrainStepResult r = train_step(c, w, params, tokens, opt);
  // The official-style step (spec 06 §6.17) on the exact step's decisions: the yardstick.
  const TrainStepResult ro = train_step_official(c, w, params, tokens, r.step.loss.decisions, opt);
  if (stats != nullptr)
    stats->seconds_step = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::int64_t n = 0;
  ojson tolerance = ojson::object();
  const auto put = [&](TrainDataset kind, const std::string& name, const Tensor& t) {
    emit(train_dataset_path(kind, name), t);
    ++n;
  };
  // A value of the step: exact, its official twin and the figures of the one against the other.
  const auto put_pair = [&](TrainDataset kind, const std::string& name, const Tensor& exact, const Tensor& official) {
    put(kind, name, exact);
    emit(train_dataset_path(kind, name, /*official=*/true), official);
    ++n;
    const auto e = exact.values<double>(), o = official.values<double>();
    tolerance[train_dataset_path(kind, name)] = ojson::parse(
        golden_tolerance_json(std::vector<double>(e.begin(), e.end()), std::vector<double>(o.begin(), o.end())));
  };

  {
    Tensor t(DType::kI64, {1, static_cast<std::int64_t>(tokens.size())});
    std::copy(tokens.begin(), tokens.end(), t.values<std::int64_t>().begin());
    put(TrainDataset::kTokens, "", t);
  }
  const TrainingLoss& L = r.step.loss;
  const TrainingLoss& Lo = ro.step.loss;
  put_pair(TrainDataset::kLoss, "total", scalar(L.total), scalar(Lo.total));
  put_pair(TrainDataset::kLoss, "lm", scalar(L.lm), scalar(Lo.lm));
  put_pair(TrainDataset::kLoss, "mtp", scalar(L.mtp), scalar(Lo.mtp));
  put_pair(TrainDataset::kLoss, "balance", scalar(L.balance), scalar(Lo.balance));
  for (const auto& [module, idx] : L.decisions.routing) {
    const std::int64_t k = c.n_activated_experts;
    Tensor t(DType::kI64, {static_cast<std::int64_t>(idx.size()) / k, k});
    std::copy(idx.begin(), idx.end(), t.values<std::int64_t>().begin());
    put(TrainDataset::kRouting, module, t);
  }
  for (const auto& [module, lists] : L.decisions.index_lists) {
    Tensor t(DType::kI64, {lists.rows, lists.width});
    std::copy(lists.data.begin(), lists.data.end(), t.values<std::int64_t>().begin());
    put(TrainDataset::kIndexLists, module, t);
  }
  put(TrainDataset::kRoutingGap, "", scalar(L.decisions.min_routing_gap));
  for (const auto& [site, d] : L.offsets)
    put(TrainDataset::kQuantOffset, site, f64_tensor({d.rows(), d.cols()}, d.data()));

  const auto shapes = float_parameters(c);
  ojson kinds = ojson::object();
  for (const auto& [name, g] : r.step.grad) {
    const auto sh = shapes.find(name);
    if (sh == shapes.end()) throw std::logic_error("train golden: " + name + " is not a checkpoint parameter");
    // (name captured by reference explicitly: clang before 16 cannot capture a structured binding.)
    const auto pair = [&, &name = name](TrainDataset k, const Mat& e, const Mat& o) {
      put_pair(k, name, param_tensor(sh->second, e), param_tensor(sh->second, o));
    };
    pair(TrainDataset::kGrad, g, ro.step.grad.at(name));
    const OptimizerKind kind = r.optimizer.at(name);
    kinds[name] = optimizer_kind_name(kind);
    if (kind == OptimizerKind::kAdamW) {
      pair(TrainDataset::kAdamWM, r.adamw.at(name).m, ro.adamw.at(name).m);
      pair(TrainDataset::kAdamWV, r.adamw.at(name).v, ro.adamw.at(name).v);
    } else if (kind == OptimizerKind::kMuon) {
      pair(TrainDataset::kMuonMomentum, r.muon.at(name).momentum, ro.muon.at(name).momentum);
    }
    pair(TrainDataset::kUpdated, r.updated.at(name), ro.updated.at(name));
  }
  if (stats != nullptr) stats->datasets = n;

  ojson j;
  j["step"] = 1;
  j["mode"] =
      "exact: double arithmetic, fixed-order sums (ref/train model_backward, adamw, muon); official (train/official/): "
      "the official-style step on the exact step's decisions (train_step_official, spec 06 §6.17): the forward in "
      "official precision, activation gradients stored bf16, parameter gradients fp32 (every one by the "
      "FP32-partitioned sum of spec 06 §6.14, chunk_rows " +
      std::to_string(PartitionRule{}.chunk_rows) + "), optimizer states and updated parameters fp32";
  j["sequence"] = "train/tokens: every id of inputs/tokens (one sequence, all L, whatever decode_steps), one prefill";
  j["parameters_before"] =
      "model_parameters(config, weights): every float parameter as the exact value the exact forward multiplies by "
      "(quantised weights dequantised)";
  j["loss"] =
      "total = fl(fl(lm + fl(mtp_weight * mtp)) + balance); lm: mean next-token CE over positions 0..s-2; mtp: mean "
      "CE of mtp.0 (positions 0..s-2 with ids t1..t(s-1)) predicting t(i+2); balance: the sequence-wise balance loss "
      "of every score-routed layer, summed";
  j["held_fixed"] =
      "the routing (train/decisions/*.ffn/experts) and every index list (train/decisions/*.attn/lists): no gradient "
      "through a choice; the FP8 KV quantisation points pass straight through, the loss differentiated being v + "
      "delta with delta = train/quant_offsets/<site> frozen at this step's point";
  j["zero_by_definition"] =
      "indexer parameters (only choose; their signal is indexer_loss, not in this step) and gate.bias";
  j["optimizer_rule"] =
      "optimizer_for(name) (ref/train optimizer_assignment.hpp): muon (momentum), adamw (m, v, step 1) or none "
      "(gate.bias: the auxiliary-loss-free update from the step's routing loads, speed bias_speed)";
  j["lr"] = opt.lr;
  j["mtp_weight"] = opt.loss.mtp_weight;
  j["balance_alpha"] = opt.loss.balance_alpha;
  j["bias_speed"] = opt.bias_speed;
  j["adamw"] = {{"beta1", opt.adamw.beta1},
                {"beta2", opt.adamw.beta2},
                {"eps", opt.adamw.eps},
                {"weight_decay", opt.adamw.weight_decay}};
  j["muon"] = {{"momentum", opt.muon.momentum},
               {"rms", opt.muon.rms},
               {"weight_decay", opt.muon.weight_decay},
               {"ns_eps", opt.muon.ns_eps}};
  j["optimizer"] = std::move(kinds);
  j["tolerance"] = std::move(tolerance);
  return j.dump();
}

std::vector<GoldenProblem> verify_train_group(const Golden& g) {
  std::vector<GoldenProblem> out;
  const auto problem = [&](const std::string& ds, const std::string& what) { out.push_back({ds, what}); };
  const ojson man = ojson::parse(g.manifest_text());
  bool any = false;
  std::set<std::string> present;
  for (const GoldenEntry& e : g.entries()) {
    if (e.path.rfind(kTrain, 0) != 0) continue;
    any = true;
    present.insert(e.path);
    const std::optional<TrainDatasetDesc> d = describe_train_dataset(e.path);
    if (!d) {
      problem(e.path, "not a train/ dataset name (goldens/README.md §The training step)");
      continue;
    }
    if (e.role != d->role)
      problem(e.path,
              std::string("role ") + golden_role_name(e.role) + ", its name implies " + golden_role_name(d->role));
    if (e.dtype != d->dtype) problem(e.path, "dtype " + e.dtype + ", its name implies " + d->dtype);
  }
  if (!any) {
    if (man.contains("train")) problem("manifest", "a train section but no train/ datasets");
    return out;
  }
  if (!man.contains("train") || !man.at("train").is_object()) {
    problem("manifest", "train/ datasets but no train section (an object)");
    return out;
  }
  const ojson& tj = man.at("train");
  const auto require = [&](const std::string& path, const std::vector<std::int64_t>* shape) -> const GoldenEntry* {
    const GoldenEntry* e = g.find(path);
    if (e == nullptr) {
      problem(path, "missing: required in a training golden");
      return nullptr;
    }
    if (shape != nullptr && e->shape != *shape)
      problem(path, "shape " + shape_string(e->shape) + ", the parameter's is " + shape_string(*shape));
    return e;
  };
  const std::vector<std::int64_t> one{1};
  for (const char* part : kLossParts) require(train_dataset_path(TrainDataset::kLoss, part), &one);
  require(train_dataset_path(TrainDataset::kRoutingGap), &one);

  // Every float parameter: its gradient and updated value, the states of its optimizer, no others.
  std::set<std::string> expected;
  const auto expect = [&](TrainDataset kind, const std::string& name, const std::vector<std::int64_t>& shape) {
    const std::string path = train_dataset_path(kind, name);
    expected.insert(path);
    require(path, &shape);
  };
  const ojson opt_map =
      tj.contains("optimizer") && tj.at("optimizer").is_object() ? tj.at("optimizer") : ojson::object();
  for (const auto& [name, shape] : float_parameters(g.config())) {
    const OptimizerKind kind = optimizer_for(name).kind;
    if (!opt_map.contains(name) || opt_map.at(name) != optimizer_kind_name(kind))
      problem("manifest", std::string("train.optimizer.") + name + " is not " + optimizer_kind_name(kind) +
                              " (optimizer_for's assignment)");
    expect(TrainDataset::kGrad, name, shape);
    expect(TrainDataset::kUpdated, name, shape);
    if (kind == OptimizerKind::kAdamW) {
      expect(TrainDataset::kAdamWM, name, shape);
      expect(TrainDataset::kAdamWV, name, shape);
    } else if (kind == OptimizerKind::kMuon) {
      expect(TrainDataset::kMuonMomentum, name, shape);
    }
  }
  for (const std::string& path : present) {
    const std::optional<TrainDatasetDesc> d = describe_train_dataset(path);
    if (!d) continue;
    const bool per_param = d->kind == TrainDataset::kGrad || d->kind == TrainDataset::kUpdated ||
                           d->kind == TrainDataset::kAdamWM || d->kind == TrainDataset::kAdamWV ||
                           d->kind == TrainDataset::kMuonMomentum;
    const std::string exact_path = d->official ? train_dataset_path(d->kind, d->name) : path;
    if (per_param && expected.count(exact_path) == 0)
      problem(path, "no such parameter, or not a state of the optimizer that trains it (optimizer_for)");
  }

  // The official-style twins and their figures (train.tolerance), as the forward's (golden.cpp).
  const ojson tol = tj.contains("tolerance") && tj.at("tolerance").is_object() ? tj.at("tolerance") : ojson::object();
  if (!tj.contains("tolerance")) problem("manifest", "train.tolerance is missing (the official-style figures)");
  for (const std::string& path : present) {
    const std::optional<TrainDatasetDesc> d = describe_train_dataset(path);
    if (!d || !train_kind_has_official(d->kind)) continue;
    const std::string ex = train_dataset_path(d->kind, d->name), off = train_dataset_path(d->kind, d->name, true);
    if (d->official) {
      if (present.count(ex) == 0) problem(path, "an official-style twin without its exact dataset " + ex);
      continue;
    }
    const GoldenEntry* eo = g.find(off);
    if (eo == nullptr) {
      problem(off, "missing: every value of the step has its official-style twin");
      continue;
    }
    const GoldenEntry* ee = g.find(ex);
    if (eo->shape != ee->shape) {
      problem(off, "shape " + shape_string(eo->shape) + " differs from its exact twin's " + shape_string(ee->shape));
      continue;
    }
    if (!tol.contains(ex)) {
      problem("manifest", "train.tolerance." + ex + " is missing");
      continue;
    }
    if (!g.file().is_dataset(ex) || !g.file().is_dataset(off)) continue;
    const Tensor te = g.file().read(ex), to = g.file().read(off);
    if (te.dtype() != DType::kF64 || to.dtype() != DType::kF64 || te.numel() != to.numel()) continue;
    const auto e = te.values<double>(), o = to.values<double>();
    const ojson data = ojson::parse(
        golden_tolerance_json(std::vector<double>(e.begin(), e.end()), std::vector<double>(o.begin(), o.end())));
    if (tol.at(ex) != data)
      problem("manifest", "train.tolerance." + ex + " disagrees with the data (" + tol.at(ex).dump() + " stored, " +
                              data.dump() + " computed)");
  }
  for (const auto& [key, v] : tol.items())
    if (present.count(key) == 0) problem("manifest", "train.tolerance." + key + " names no exact dataset of the step");

  // The step's ids are the golden's sequence.
  const std::string tok = train_dataset_path(TrainDataset::kTokens);
  if (const GoldenEntry* e = require(tok, nullptr); e != nullptr && g.file().is_dataset(tok)) {
    const Tensor t = g.file().read(tok);
    const auto& in = g.tokens();
    bool same = in.size() == 1 && t.dtype() == DType::kI64 && t.rank() == 2 && t.dim(0) == 1 &&
                t.dim(1) == static_cast<std::int64_t>(in[0].size());
    for (std::int64_t i = 0; same && i < t.dim(1); ++i)
      same = t.values<std::int64_t>()[static_cast<std::size_t>(i)] == in[0][static_cast<std::size_t>(i)];
    if (!same) problem(tok, "is not inputs/tokens (one sequence)");
  }

  // The total as the step evaluates it.
  const auto loss = [&](const char* part) -> std::optional<double> {
    const std::string p = train_dataset_path(TrainDataset::kLoss, part);
    if (!g.file().is_dataset(p)) return std::nullopt;
    const Tensor t = g.file().read(p);
    if (t.dtype() != DType::kF64 || t.numel() != 1) return std::nullopt;
    return t.values<double>()[0];
  };
  const auto total = loss("total"), lm = loss("lm"), mtp = loss("mtp"), bal = loss("balance");
  if (!tj.contains("mtp_weight") || !tj.at("mtp_weight").is_number())
    problem("manifest", "train.mtp_weight is missing or not a number");
  else if (total && lm && mtp && bal) {
    const double w = tj.at("mtp_weight").get<double>();
    const double want = (*lm + w * *mtp) + *bal;
    if (!(*total == want))
      problem(train_dataset_path(TrainDataset::kLoss, "total"),
              "is not lm + mtp_weight·mtp + balance of the stored parts (the loss parts disagree)");
  }
  return out;
}

namespace {

// (group, sub): the parameter's place in the backward (sort_in_backward_order).
std::pair<int, int> backward_place(const std::string& name) {
  const auto has = [&](const char* part) { return name.find(part) != std::string::npos; };
  if (name == "embed.weight") return {1 << 20, 0};
  if (name == "head.weight") return {0, 0};
  if (name == "norm.weight") return {0, 1};
  if (name.rfind("hc_head", 0) == 0) return {0, 2};
  int group = 0;
  if (name.rfind("mtp.", 0) == 0) {
    group = 1;
    if (has(".hc_head") || name.ends_with("mtp.0.norm.weight")) return {group, -1};
    if (has(".e_proj.") || has(".h_proj.")) return {group, 6};
    if (has(".enorm.") || has(".hnorm.")) return {group, 7};
  } else if (name.rfind("layers.", 0) == 0) {
    group = 2 + (1 << 16) - std::stoi(name.substr(7));  // layers n−1 … 0
  } else {
    return {1 << 21, 0};
  }
  if (has(".ffn.")) return {group, 0};
  if (has(".ffn_norm.")) return {group, 1};
  if (has(".hc_ffn")) return {group, 2};
  if (has(".attn.")) return {group, 3};
  if (has(".attn_norm.")) return {group, 4};
  if (has(".hc_attn")) return {group, 5};
  return {group, 8};
}

struct BackwardKey {
  int stage = 3;  // 0 loss, 1 gradient, 2 optimizer state / updated, 3 not a train value
  std::pair<int, int> place{0, 0};
  std::string name;
  int within = 0;  // losses: lm, mtp, balance, total; optimizer: states before updated
  auto tie() const { return std::tie(stage, place, name, within); }
};

BackwardKey backward_key(const std::string& path) {
  BackwardKey k;
  const std::optional<TrainDatasetDesc> d = describe_train_dataset(path);
  if (!d || !train_kind_has_official(d->kind)) {
    k.name = path;
    return k;
  }
  k.name = d->name;
  switch (d->kind) {
    case TrainDataset::kLoss:
      k.stage = 0;
      k.within = d->name == "lm" ? 0 : d->name == "mtp" ? 1 : d->name == "balance" ? 2 : 3;
      k.name.clear();
      break;
    case TrainDataset::kGrad:
      k.stage = 1;
      k.place = backward_place(d->name);
      break;
    default:
      k.stage = 2;
      k.place = backward_place(d->name);
      k.within = d->kind == TrainDataset::kUpdated ? 1 : 0;
      break;
  }
  return k;
}

}  // namespace

void sort_in_backward_order(std::vector<std::string>& paths) {
  std::stable_sort(paths.begin(), paths.end(), [](const std::string& a, const std::string& b) {
    return backward_key(a).tie() < backward_key(b).tie();
  });
}

std::string train_param_module(const std::string& name) {
  std::string m = name;
  if (m.ends_with(".weight")) m.resize(m.size() - 7);
  const std::size_t dot = m.rfind('.');
  const std::string leaf = dot == std::string::npos ? m : m.substr(dot + 1);
  if (leaf == "w1" || leaf == "w2" || leaf == "w3" || leaf == "attn_sink") return m.substr(0, dot);
  if (leaf.rfind("hc_", 0) == 0)
    for (const char* suffix : {"_fn", "_base", "_scale"})
      if (m.ends_with(suffix)) return m.substr(0, m.size() - std::string_view(suffix).size());
  return m;
}

std::string train_blame(const std::string& path) {
  const std::optional<TrainDatasetDesc> d = describe_train_dataset(path);
  if (!d) return path;
  switch (d->kind) {
    case TrainDataset::kLoss:
      return "loss " + d->name + " (" + path + ")";
    case TrainDataset::kGrad:
      return "backward of " + train_param_module(d->name) + " (" + path + ")";
    case TrainDataset::kAdamWM:
    case TrainDataset::kAdamWV:
    case TrainDataset::kMuonMomentum:
    case TrainDataset::kUpdated:
      return "optimizer of " + d->name + " (" + path + ")";
    default:
      return path;
  }
}

TrainStepOptions train_step_options(const Golden& g) {
  const ojson man = ojson::parse(g.manifest_text());
  if (!man.contains("train") || !man.at("train").is_object())
    throw InputError(g.path(), "manifest: no train section (the training step's hyper-parameters)");
  const ojson& tj = man.at("train");
  const auto number = [&](std::initializer_list<const char*> key) {
    const ojson* at = &tj;
    std::string name = "train";
    for (const char* k : key) {
      name += std::string(".") + k;
      if (!at->is_object() || !at->contains(k))
        throw InputError(g.path(), "manifest: " + name + " is missing (the pre-step state of the training step)");
      at = &at->at(k);
    }
    if (!at->is_number() || !std::isfinite(at->get<double>()))
      throw InputError(g.path(), "manifest: " + name + " is not a finite number");
    return at->get<double>();
  };
  TrainStepOptions o;
  o.lr = number({"lr"});
  o.loss.mtp_weight = number({"mtp_weight"});
  o.loss.balance_alpha = number({"balance_alpha"});
  o.bias_speed = number({"bias_speed"});
  o.adamw.beta1 = number({"adamw", "beta1"});
  o.adamw.beta2 = number({"adamw", "beta2"});
  o.adamw.eps = number({"adamw", "eps"});
  o.adamw.weight_decay = number({"adamw", "weight_decay"});
  o.muon.momentum = number({"muon", "momentum"});
  o.muon.rms = number({"muon", "rms"});
  o.muon.weight_decay = number({"muon", "weight_decay"});
  o.muon.ns_eps = number({"muon", "ns_eps"});
  return o;
}

std::map<std::string, GoldenTolerance> train_tolerances(const Golden& g) {
  std::map<std::string, GoldenTolerance> out;
  const ojson man = ojson::parse(g.manifest_text());
  if (!man.contains("train") || !man.at("train").is_object() || !man.at("train").contains("tolerance")) return out;
  const ojson& tol = man.at("train").at("tolerance");
  if (!tol.is_object()) throw InputError(g.path(), "manifest: train.tolerance is not an object");
  for (const auto& [key, t] : tol.items()) {
    try {
      GoldenTolerance gt;
      gt.official_grid = golden_grid_dtype(t.at("official_grid").get<std::string>());
      GoldenTolerance::Figures fig;
      fig.error.compared = t.at("official_compared").get<std::int64_t>();
      fig.error.max_abs = t.at("official_max_abs").get<double>();
      fig.error.rms = t.at("official_rms").get<double>();
      fig.error.bias_sum = t.at("official_bias_sum").get<double>();
      fig.exact_rms = t.at("exact_rms").get<double>();
      if (fig.error.compared < 0 || !(fig.error.max_abs >= 0) || !(fig.error.rms >= 0) ||
          !std::isfinite(fig.error.bias_sum) || !(fig.exact_rms >= 0) || !std::isfinite(fig.error.max_abs) ||
          !std::isfinite(fig.error.rms) || !std::isfinite(fig.exact_rms))
        throw std::invalid_argument("a figure is negative or not finite");
      gt.official = fig;
      out.emplace(key, gt);
    } catch (const std::exception& e) {
      throw InputError(g.path(), "manifest: train.tolerance." + key + ": " + e.what());
    }
  }
  return out;
}

}  // namespace dsv4
