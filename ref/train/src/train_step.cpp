// One training step of the reference (spec 06 §6.12, §6.13): train_step.hpp.
#include "dsv4/train/train_step.hpp"

#include <stdexcept>
#include <string>

namespace dsv4 {

std::string routing_module_of_bias(const std::string& name) {
  static const std::string kSuffix = ".gate.bias";
  if (name.size() <= kSuffix.size() || name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0)
    return {};
  return name.substr(0, name.size() - kSuffix.size());
}

OptimizerStep stored_fp32(OptimizerStep s) {
  const Precision p(Mode::kOfficial);
  if (s.muon) p.fp32_inplace(s.muon->momentum);
  if (s.adamw) {
    p.fp32_inplace(s.adamw->m);
    p.fp32_inplace(s.adamw->v);
  }
  p.fp32_inplace(s.updated);
  return s;
}

OptimizerStep optimizer_step(const ModelConfig& c, const std::string& name, OptimizerKind kind, const Mat& w0,
                             const Mat& g, const TrainStepOptions& opt, bool official, Deviation deviation,
                             int threads) {
  OptimizerStep r;
  r.updated = w0;
  switch (kind) {
    case OptimizerKind::kMuon: {
      MuonConfig muon = opt.muon;
      muon.deviation = deviation;
      MuonState s = muon_state(w0);
      muon_step(r.updated, s, g, opt.lr, muon, muon_row_blocks(name, c), threads);
      r.muon = std::move(s);
      break;
    }
    case OptimizerKind::kAdamW: {
      AdamWState s = adamw_state(w0);
      adamw_step(r.updated, s, g, opt.lr, opt.adamw);
      r.adamw = std::move(s);
      break;
    }
    case OptimizerKind::kNone:
      throw std::invalid_argument("optimizer_step: " + name +
                                  " is trained by no optimizer (a router bias follows the routing's loads)");
  }
  return official ? stored_fp32(std::move(r)) : r;
}

namespace {

// Every parameter stepped from a zero state by its optimizer (header); `style` null: exact, else
// the official-style storage (fp32 states and parameters) and the catalogue's optimizer deviations.
void step_parameters(const ModelConfig& c, const ParameterMap& params, const TrainStepOptions& opt,
                     const OfficialStyleOptions* style, int threads, TrainStepResult& r) {
  const std::int64_t E = c.n_routed_experts, k = c.n_activated_experts;
  const Precision p = style != nullptr ? Precision(Mode::kOfficial) : Precision(Mode::kExact);
  const Deviation dev = style != nullptr ? style->deviation : Deviation::kNone;
  for (const auto& [name, w0] : params) {
    const Mat& g = r.step.grad.at(name);
    OptimizerKind kind = optimizer_for(name).kind;
    // (Deviation kAdamWOnRouter, the training bug catalogue only.)
    if (dev == Deviation::kAdamWOnRouter && kind == OptimizerKind::kMuon && name.ends_with(".ffn.gate.weight"))
      kind = OptimizerKind::kAdamW;
    r.optimizer.emplace(name, kind);
    if (kind != OptimizerKind::kNone) {
      OptimizerStep s = optimizer_step(c, name, kind, w0, g, opt, style != nullptr, dev, threads);
      if (s.muon) r.muon.emplace(name, std::move(*s.muon));
      if (s.adamw) r.adamw.emplace(name, std::move(*s.adamw));
      r.updated.emplace(name, std::move(s.updated));
      continue;
    }
    // The only untrained float parameter the ParameterMap holds is a router bias (header).
    const std::string module = routing_module_of_bias(name);
    const auto it = r.step.loss.decisions.routing.find(module);
    if (module.empty() || it == r.step.loss.decisions.routing.end())
      throw std::logic_error("train_step: " + name + " is not trained by a gradient and is no router bias");
    const std::int64_t rows = static_cast<std::int64_t>(it->second.size()) / k;
    Mat w = w0;
    Vec b = w.col(0);
    update_router_bias(b, expert_loads(it->second, rows, E, k), opt.bias_speed);
    w.col(0) = b;
    p.fp32_inplace(w);
    r.updated.emplace(name, std::move(w));
  }
}

}  // namespace

TrainStepResult train_step(const ModelConfig& c, const ModelWeights& weights, const ParameterMap& params,
                           const std::vector<std::int64_t>& tokens, const TrainStepOptions& opt, int threads) {
  TrainStepResult r;
  r.step = model_backward(c, weights, params, tokens, opt.loss);
  step_parameters(c, params, opt, nullptr, threads, r);
  return r;
}

TrainStepResult train_step_official(const ModelConfig& c, const ModelWeights& weights, const ParameterMap& params,
                                    const std::vector<std::int64_t>& tokens, const TrainingDecisions& held,
                                    const TrainStepOptions& opt, const OfficialStyleOptions& style, int threads) {
  TrainStepResult r;
  r.step = model_backward_official(c, weights, params, tokens, held, opt.loss, style);
  step_parameters(c, params, opt, &style, threads, r);
  return r;
}

}  // namespace dsv4
