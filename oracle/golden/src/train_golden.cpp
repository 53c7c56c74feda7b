// The train/ group of a golden: train_golden.hpp (goldens/README.md §The training step).
#include "dsv4/golden/train_golden.hpp"

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <utility>

#include "dsv4/config/resource_limits.hpp"
#include "dsv4/model/checkpoint.hpp"

namespace dsv4 {

namespace {

using ojson = nlohmann::ordered_json;

constexpr const char* kTrain = "train/";

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

std::optional<TrainDatasetDesc> describe_train_dataset(std::string_view path) {
  if (path.substr(0, 6) != kTrain) return std::nullopt;
  const std::string_view rest = path.substr(6);
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

std::string train_dataset_path(TrainDataset kind, const std::string& name) {
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
  if (stats != nullptr)
    stats->seconds_step = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::int64_t n = 0;
  const auto put = [&](TrainDataset kind, const std::string& name, const Tensor& t) {
    emit(train_dataset_path(kind, name), t);
    ++n;
  };

  {
    Tensor t(DType::kI64, {1, static_cast<std::int64_t>(tokens.size())});
    std::copy(tokens.begin(), tokens.end(), t.values<std::int64_t>().begin());
    put(TrainDataset::kTokens, "", t);
  }
  const TrainingLoss& L = r.step.loss;
  put(TrainDataset::kLoss, "total", scalar(L.total));
  put(TrainDataset::kLoss, "lm", scalar(L.lm));
  put(TrainDataset::kLoss, "mtp", scalar(L.mtp));
  put(TrainDataset::kLoss, "balance", scalar(L.balance));
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
    put(TrainDataset::kGrad, name, param_tensor(sh->second, g));
    const OptimizerKind kind = r.optimizer.at(name);
    kinds[name] = optimizer_kind_name(kind);
    if (kind == OptimizerKind::kAdamW) {
      put(TrainDataset::kAdamWM, name, param_tensor(sh->second, r.adamw.at(name).m));
      put(TrainDataset::kAdamWV, name, param_tensor(sh->second, r.adamw.at(name).v));
    } else if (kind == OptimizerKind::kMuon) {
      put(TrainDataset::kMuonMomentum, name, param_tensor(sh->second, r.muon.at(name).momentum));
    }
    put(TrainDataset::kUpdated, name, param_tensor(sh->second, r.updated.at(name)));
  }
  if (stats != nullptr) stats->datasets = n;

  ojson j;
  j["step"] = 1;
  j["mode"] =
      "exact only: double arithmetic, fixed-order sums (ref/train model_backward, adamw, muon); no official-mode "
      "values yet";
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
    if (per_param && expected.count(path) == 0)
      problem(path, "no such parameter, or not a state of the optimizer that trains it (optimizer_for)");
  }

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

}  // namespace dsv4
