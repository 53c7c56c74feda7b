// oracle/golden/include/dsv4/golden/declarations.hpp
#include "dsv4/golden/declarations.hpp"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "dsv4/golden/config_json.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/safetensors.hpp"

namespace dsv4 {

namespace {

constexpr const char* kTokensTensor = "inputs/tokens";

std::vector<std::vector<std::int64_t>> tokens_from(const std::vector<std::int64_t>& flat,
                                                   const std::vector<std::int64_t>& shape, const std::string& where) {
  if (shape.size() != 2 || shape[0] < 0 || shape[1] < 0 ||
      shape[0] * shape[1] != static_cast<std::int64_t>(flat.size()))
    throw InputError(
        where, "token ids of " + std::to_string(flat.size()) + " elements do not have shape " + shape_string(shape));
  std::vector<std::vector<std::int64_t>> t;
  for (std::int64_t b = 0; b < shape[0]; ++b)
    t.emplace_back(flat.begin() + b * shape[1], flat.begin() + (b + 1) * shape[1]);
  return t;
}

std::vector<std::vector<std::int64_t>> tokens_of_tensor(const Tensor& t, const std::string& where) {
  if (t.dtype() != DType::kI32 && t.dtype() != DType::kI64)
    throw InputError(where, "token ids must be int32 or int64, got " + std::string(dtype_name(t.dtype())));
  if (t.rank() != 1 && t.rank() != 2)
    throw InputError(where, "token ids must have shape [b, L] or [L], got " + t.shape_string());
  std::vector<std::int64_t> flat;
  if (t.dtype() == DType::kI32) {
    for (const std::int32_t v : t.values<std::int32_t>()) flat.push_back(v);
  } else {
    for (const std::int64_t v : t.values<std::int64_t>()) flat.push_back(v);
  }
  const std::vector<std::int64_t> shape = t.rank() == 2 ? t.shape() : std::vector<std::int64_t>{1, t.dim(0)};
  return tokens_from(flat, shape, where);
}

std::string config_fields_differing(const ModelConfig& cand, const ModelConfig& golden) {
  const nlohmann::ordered_json a = nlohmann::ordered_json::parse(config_to_json(cand));
  const nlohmann::ordered_json b = nlohmann::ordered_json::parse(config_to_json(golden));
  std::string out;
  int n = 0;
  for (const auto& [key, v] : b.items()) {
    if (key == "dsv4_name" || (a.contains(key) && a.at(key) == v)) continue;
    if (++n <= 4)
      out += (out.empty() ? "" : ", ") + key + " " + (a.contains(key) ? a.at(key).dump() : "absent") +
             ", the golden's " + v.dump();
  }
  if (n > 4) out += " (and " + std::to_string(n - 4) + " more fields)";
  return out;
}

}  // namespace

CandidateDeclarations read_declarations(const MappedTensorSource& candidate) {
  CandidateDeclarations d;
  const TensorSource& src = candidate.source();
  const std::string& path = src.path();
  // The tokens tensor, under its canonical name (through the map) or the source's own.
  std::string tokens_name;
  if (candidate.contains(kTokensTensor))
    tokens_name = candidate.source_name(kTokensTensor);
  else if (src.contains(kTokensTensor))
    tokens_name = kTokensTensor;
  if (!tokens_name.empty()) {
    d.tokens_where = "tensor " + tokens_name;
    d.tokens = tokens_of_tensor(src.read(tokens_name), path + ": " + d.tokens_where);
  }
  if (src.format() == SourceFormat::kHdf5) {
    const Hdf5File f = Hdf5File::open(path);
    if (!d.tokens && f.has_attr("/", "tokens") && f.has_attr("/", "tokens_shape")) {
      d.tokens_where = "attribute tokens";
      d.tokens = tokens_from(f.attr_int64s("/", "tokens"), f.attr_int64s("/", "tokens_shape"),
                             path + ": attributes tokens, tokens_shape");
    }
    if (f.has_attr("/", "weights_content_sha256")) {
      d.weights_content_sha256 = f.attr_string("/", "weights_content_sha256");
      d.weights_where = "attribute weights_content_sha256";
    } else if (f.has_attr("/", "weights") && f.attr_string("/", "weights") == "synthetic" &&
               f.has_attr("/", "weights_seed")) {
      const std::string s = f.attr_string("/", "weights_seed");
      d.weights_seed = parse_seed_string(s);  // as the golden's seed ("-1" is not 2^64 - 1)
      if (!d.weights_seed)
        throw InputError(path, "attribute weights_seed '" + printable_name(s, 80) +
                                   "' is not a seed (the decimal digits of a uint64)");
      d.weights_where = "attribute weights_seed";
    }
    if (f.has_attr("/", "config")) {
      d.config_json = f.attr_string("/", "config");
      d.config_where = "attribute config";
    }
  } else if (src.format() == SourceFormat::kSafetensors) {
    const SafetensorsFile st = SafetensorsFile::open(path);  // not a reference into a temporary (fuzz_certify)
    const auto& meta = st.metadata();
    if (const auto it = meta.find("weights_content_sha256"); it != meta.end()) {
      d.weights_content_sha256 = it->second;
      d.weights_where = "metadata weights_content_sha256";
    }
    if (const auto it = meta.find("config"); it != meta.end()) {
      d.config_json = it->second;
      d.config_where = "metadata config";
    }
  }
  return d;
}

std::vector<std::string> declaration_differences(const Golden& g, const CandidateDeclarations& d) {
  std::vector<std::string> out;
  if (d.tokens) {
    const auto& c = *d.tokens;
    const auto& t = g.tokens();
    const auto shape = [](const std::vector<std::vector<std::int64_t>>& v) {
      return shape_string(
          {static_cast<std::int64_t>(v.size()), v.empty() ? 0 : static_cast<std::int64_t>(v[0].size())});
    };
    if (shape(c) != shape(t)) {
      out.push_back("candidate tokens differ from the golden's: shape " + shape(c) + ", the golden's " + shape(t) +
                    " (" + d.tokens_where + ")");
    } else {
      bool found = false;
      for (std::size_t b = 0; b < c.size() && !found; ++b)
        for (std::size_t i = 0; i < c[b].size() && !found; ++i)
          if (c[b][i] != t[b][i]) {
            found = true;
            out.push_back("candidate tokens differ from the golden's at position " + std::to_string(i) +
                          " of sequence " + std::to_string(b) + ": " + std::to_string(c[b][i]) + ", the golden's " +
                          std::to_string(t[b][i]) + " (" + d.tokens_where + ")");
          }
    }
  }
  const nlohmann::json w = nlohmann::json::parse(g.weights_json());
  const std::string golden_sha = w.value("content_sha256", "");
  if (d.weights_content_sha256 && !golden_sha.empty() && *d.weights_content_sha256 != golden_sha)
    out.push_back("candidate weights differ from the golden's: content SHA-256 " + *d.weights_content_sha256 +
                  ", the golden's " + golden_sha + " (" + d.weights_where + ")");
  if (!d.weights_content_sha256 && d.weights_seed) {
    const std::optional<std::uint64_t> gs = g.weights_seed();
    if (!gs) {
      // A golden of checkpoint weights (perhaps the export of this very seed): compare contents.
      const std::string sha =
          weights_content_sha256(g.config(), make_weights(g.config(), WeightsSpec{d.weights_seed, ""}));
      if (sha != golden_sha)
        out.push_back("candidate weights differ from the golden's: synthetic weights of seed " +
                      std::to_string(*d.weights_seed) + " (content SHA-256 " + sha + "), the golden's are '" +
                      w.value("file", "") + "' (content SHA-256 " + golden_sha + ") (" + d.weights_where + ")");
    } else if (*gs != *d.weights_seed)
      out.push_back("candidate weights differ from the golden's: synthetic seed " + std::to_string(*d.weights_seed) +
                    ", the golden's " + std::to_string(*gs) + " (" + d.weights_where + ")");
  }
  if (d.config_json) {
    ModelConfig c;
    try {
      c = parse_config_json(*d.config_json, "the candidate's " + d.config_where);
    } catch (const ConfigError& e) {
      throw InputError("the candidate's " + d.config_where, e.what());
    }
    if (!same_model(c, g.config()))
      out.push_back("candidate config differs from the golden's: " + config_fields_differing(c, g.config()) + " (" +
                    d.config_where + ")");
  }
  return out;
}

int check_declarations(const Golden& golden, const MappedTensorSource& candidate, const std::string& command) {
  const std::vector<std::string> diffs = declaration_differences(golden, read_declarations(candidate));
  if (diffs.empty()) return 0;
  for (const std::string& l : diffs) std::printf("%s\n", l.c_str());
  std::printf("%s: FAIL — the candidate was not made from the golden's inputs; nothing judged\n", command.c_str());
  return 1;
}

}  // namespace dsv4
