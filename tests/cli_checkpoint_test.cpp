// Hostile checkpoints through the CLI (issue #4): a table of malformed safetensors files, each made
// from the valid tiny checkpoint by one edit — to the file format (header length, JSON, dtype,
// shape vs bytes, offsets, duplicate keys, truncation, trailing bytes) or to its meaning for the
// config (missing tensor, wrong dtype, wrong shape, a NaN, a tensor of another config, a bad
// tid2eid, a missing fp8 scale). `dsv4 run --weights` must exit 2 with one stderr line naming the
// tensor (or, for file-level damage, the rule) and write no dump.
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/io/safetensors.hpp"
#include "dsv4/model/checkpoint.hpp"
#include "dsv4/model/transformer.hpp"
#include "dsv4/numerics/formats.hpp"
#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

using Tensors = std::map<std::string, Tensor>;
using Json = nlohmann::ordered_json;

// The parts of a safetensors file: its header JSON text and the data buffer after it.
struct RawFile {
  std::string header, data;
};

RawFile split_file(const std::string& bytes) {
  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);  // little-endian on x86-64
  return {bytes.substr(8, n), bytes.substr(8 + n)};
}

std::string join_file(const std::string& header, const std::string& data) {
  const std::uint64_t n = header.size();
  std::string len(8, '\0');
  std::memcpy(len.data(), &n, 8);
  return len + header + data;
}

struct Case {
  std::string name;
  std::function<void(const std::string& valid_path, const Tensors& valid, const std::string& out)> make;
  std::string expect;  // a substring of the error line (the tensor's name where one is concerned)
};

class CliCheckpoint : public testing_support::CliDir {
 protected:
  void SetUp() override {
    CliDir::SetUp();
    Tensor t(DType::kI64, {1, 6});
    for (std::int64_t i = 0; i < 6; ++i) t.values<std::int64_t>()[static_cast<std::size_t>(i)] = 3 * i + 1;
    write_npy(file("t.npy"), t);
    const ModelConfig c = builtin_config("tiny");
    tensors_ = model_weight_tensors(c, ModelWeights::synthetic(c, 2));
    write_safetensors(file("valid.safetensors"), tensors_);
  }
  Result run_on(const std::string& weights) const {
    return dsv4("run --config tiny --weights " + weights + " --tokens " + file("t.npy") + " --dump " + file("d.h5"));
  }
  Tensors tensors_;
};

void write_text(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

// A header edit of tensor `name` (the data buffer unchanged).
Case header_edit(const std::string& label, const std::string& name, const std::function<void(Json&)>& edit,
                 const std::string& expect) {
  return {label,
          [=](const std::string& valid, const Tensors&, const std::string& out) {
            RawFile f = split_file(testing_support::read_file(valid));
            Json h = Json::parse(f.header);
            edit(h.at(name));
            write_text(out, join_file(h.dump(), f.data));
          },
          expect};
}

// A consistent file (valid format) whose tensors are the valid ones after `edit`.
Case content_edit(const std::string& label, const std::function<void(Tensors&)>& edit, const std::string& expect) {
  return {label,
          [=](const std::string&, const Tensors& valid, const std::string& out) {
            Tensors t = valid;
            edit(t);
            write_safetensors(out, t);
          },
          expect};
}

std::vector<Case> hostile_cases(const Tensors& valid_tensors) {
  const std::string v = "layers.1.attn.wq_a.weight";
  const std::string norm = "layers.0.attn_norm.weight";
  const std::string tid = "layers.0.ffn.gate.tid2eid";
  std::string scale;  // the scale of some quantised weight (fp8 or fp4)
  for (const auto& [n, t] : valid_tensors)
    if (n.size() > 6 && n.compare(n.size() - 6, 6, ".scale") == 0) scale = n;
  std::vector<Case> c;
  c.push_back({"header length over 100 MB",
               [](const std::string& valid, const Tensors&, const std::string& out) {
                 std::string b = testing_support::read_file(valid);
                 const std::uint64_t n = 100'000'001;
                 std::memcpy(b.data(), &n, 8);
                 write_text(out, b);
               },
               "over the format's limit"});
  c.push_back({"header not JSON",
               [](const std::string& valid, const Tensors&, const std::string& out) {
                 RawFile f = split_file(testing_support::read_file(valid));
                 // the closing brace dropped (the writer pads the header with spaces after it)
                 write_text(out, join_file(f.header.substr(0, f.header.find_last_of('}')), f.data));
               },
               "not valid JSON"});
  c.push_back({"truncated data",
               [](const std::string& valid, const Tensors&, const std::string& out) {
                 const std::string b = testing_support::read_file(valid);
                 write_text(out, b.substr(0, b.size() - 100));
               },
               "truncated data"});
  c.push_back({"trailing bytes",
               [](const std::string& valid, const Tensors&, const std::string& out) {
                 write_text(out, testing_support::read_file(valid) + "12345678");
               },
               "trailing bytes"});
  c.push_back({"duplicate tensor key",
               [v](const std::string& valid, const Tensors&, const std::string& out) {
                 RawFile f = split_file(testing_support::read_file(valid));
                 const Json h = Json::parse(f.header);
                 const std::string entry = "\"" + v + "\":" + h.at(v).dump();
                 write_text(out, join_file("{" + entry + "," + f.header.substr(1), f.data));
               },
               "'" + v + "' is listed twice"});
  c.push_back(header_edit(
      "unknown dtype", v, [](Json& e) { e["dtype"] = "F7"; }, v));
  c.push_back(header_edit(
      "size != numel x dtype size", v, [](Json& e) { e["shape"][0] = e["shape"][0].get<int>() + 1; }, v));
  c.push_back(header_edit(
      "negative dimension", v, [](Json& e) { e["shape"][0] = -1; }, v));
  c.push_back(header_edit(
      "offsets end before begin", v,
      [](Json& e) {
        e["data_offsets"] = Json::array({e["data_offsets"][1], e["data_offsets"][0]});
      },
      v));
  c.push_back(header_edit(
      "offsets overlap the previous tensor", v,
      [](Json& e) {
        const auto b = e["data_offsets"][0].get<std::int64_t>(), f = e["data_offsets"][1].get<std::int64_t>();
        e["data_offsets"] = Json::array({b - 2, f - 2});
      },
      v));
  c.push_back(content_edit(
      "missing tensor", [v](Tensors& t) { t.erase(v); }, v));
  c.push_back(content_edit(
      "wrong dtype for the parameter", [v](Tensors& t) { t[v] = Tensor(DType::kI32, t.at(v).shape()); }, v));
  c.push_back(content_edit(
      "shape does not match the config",
      [v](Tensors& t) {
        const auto s = t.at(v).shape();
        t[v] = Tensor(t.at(v).dtype(), {s[0], s[1] + 32});
      },
      v));
  c.push_back(content_edit(
      "NaN in a weight",
      [norm](Tensors& t) {
        Tensor& x = t.at(norm);
        if (x.dtype() == DType::kBF16)
          x.values<std::uint16_t>()[3] = 0x7FC0;
        else
          x.values<float>()[3] = std::numeric_limits<float>::quiet_NaN();
      },
      norm));
  c.push_back(content_edit(
      "tensor of a deeper model", [norm](Tensors& t) { t["layers.6.attn_norm.weight"] = t.at(norm); },
      "layers.6.attn_norm.weight"));
  c.push_back(content_edit(
      "tid2eid expert id out of range",
      [tid](Tensors& t) {
        Tensor& x = t.at(tid);
        if (x.dtype() == DType::kI64)
          x.values<std::int64_t>()[0] = 99;
        else
          x.values<std::int32_t>()[0] = 99;
      },
      tid));
  if (!scale.empty())
    c.push_back(content_edit(
        "quantised weight without its scale", [scale](Tensors& t) { t.erase(scale); }, scale));
  return c;
}

TEST_F(CliCheckpoint, ValidCheckpointRuns) {
  const auto r = run_on(file("valid.safetensors"));
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(CliCheckpoint, HostileCheckpointsExitTwoNamingTheTensor) {
  const auto cases = hostile_cases(tensors_);
  EXPECT_GE(cases.size(), 12u);
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    const std::string bad = file("bad.safetensors");
    k.make(file("valid.safetensors"), tensors_, bad);
    expect_bad_input(run_on(bad), "run", k.expect);
    EXPECT_FALSE(std::filesystem::exists(file("d.h5"))) << "no dump is written";
    std::filesystem::remove(file("d.h5"));
  }
}

}  // namespace
}  // namespace dsv4
