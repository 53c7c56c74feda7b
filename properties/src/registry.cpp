// The property registry and the RapidCheck runner behind it (registry.hpp).
#include "dsv4/properties/registry.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace dsv4::props {

// Defined in the file CMake generates from the properties/<stem>_props.cpp names.
void register_all_properties(Registry& r);

namespace {

bool valid_name(const std::string& n) {
  if (n.empty() || n.front() == '.' || n.back() == '.' || n.find('.') == std::string::npos) return false;
  return std::all_of(n.begin(), n.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'; });
}

// Reports every finished case to cfg.progress.
class ProgressListener : public rc::detail::TestListener {
 public:
  explicit ProgressListener(const RunConfig& cfg) : cfg_(cfg) {}
  void onTestCaseFinished(const rc::detail::CaseDescription& d) override {
    if (d.result.type == rc::detail::CaseResult::Type::Success) ++done_;
    if (d.result.type == rc::detail::CaseResult::Type::Discard) ++discarded_;
    if (cfg_.progress) cfg_.progress(done_);
  }
  int discarded() const { return discarded_; }
  void onShrinkTried(const rc::detail::CaseDescription&, bool) override {}
  void onTestFinished(const rc::detail::TestMetadata&, const rc::detail::TestResult&) override {}

 private:
  const RunConfig& cfg_;
  int done_ = 0;
  int discarded_ = 0;
};

std::string example_text(const rc::detail::Example& ex) {
  std::string s;
  for (const auto& [type, value] : ex) s += type + ": " + value + "\n";
  return s;
}

}  // namespace

void Registry::add(Property p) {
  if (!valid_name(p.name)) {
    throw std::invalid_argument("property name '" + p.name + "': expected <component>.<what> in lower case [a-z0-9_.]");
  }
  if (find(p.name) != nullptr) throw std::invalid_argument("property name '" + p.name + "' registered twice");
  if (p.component.empty()) throw std::invalid_argument("property '" + p.name + "': empty component");
  if (p.description.empty()) throw std::invalid_argument("property '" + p.name + "': empty description");
  if (p.default_runs < 1) throw std::invalid_argument("property '" + p.name + "': default_runs < 1");
  if (!p.run) throw std::invalid_argument("property '" + p.name + "': no run function");
  p.source = current_source_;
  props_.push_back(std::move(p));
}

const Property* Registry::find(const std::string& name) const {
  for (const auto& p : props_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

void Registry::add_source(const std::string& stem, void (*fn)(Registry&)) {
  current_source_ = stem;
  fn(*this);
  current_source_.clear();
}

const Registry& registry() {
  static const Registry r = [] {
    Registry reg;
    register_all_properties(reg);
    return reg;
  }();
  return r;
}

RunResult run_rapidcheck(const rc::detail::Property& property, const std::string& name, const RunConfig& cfg) {
  if (cfg.runs < 1) throw std::invalid_argument("runs must be ≥ 1");
  if (cfg.max_size < 0) throw std::invalid_argument("max_size must be ≥ 0");
  rc::detail::TestParams params;
  params.seed = cfg.seed;
  params.maxSuccess = cfg.runs;
  params.maxSize = cfg.max_size;
  rc::detail::TestMetadata meta;
  meta.id = name;
  meta.description = name;
  ProgressListener listener(cfg);
  const rc::detail::TestResult res = rc::detail::checkProperty(property, meta, params, listener, {});

  RunResult out;
  out.discarded = listener.discarded();
  rc::detail::SuccessResult ok;
  rc::detail::FailureResult fail;
  rc::detail::GaveUpResult gave_up;
  rc::detail::Error err;
  if (res.match(ok)) {
    out.passed = true;
    out.runs_done = ok.numSuccess;
    out.message = "OK, passed " + std::to_string(ok.numSuccess) + " tests";
  } else if (res.match(fail)) {
    out.runs_done = fail.numSuccess;
    out.message = fail.description;
    out.counterexample = example_text(fail.counterExample);
  } else if (res.match(gave_up)) {
    out.runs_done = gave_up.numSuccess;
    out.message = "gave up: " + gave_up.description;
  } else if (res.match(err)) {
    out.message = "error: " + err.description;
  }
  return out;
}

}  // namespace dsv4::props
