// `dsv4 run` end to end: the dump holds exactly what the in-process reference records (bit for bit,
// canonical names as HDF5 paths, int64 indices), the MTP schedule, the attributes; bad input exits 2
// with one line naming the problem and writes nothing.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/io/safetensors.hpp"
#include "dsv4/model/checkpoint.hpp"
#include "support/cli_process.hpp"

namespace dsv4 {
namespace {

using CliRun = testing_support::CliDir;

Tensor ids_tensor(DType dt, std::vector<std::int64_t> shape, const std::vector<std::int64_t>& v) {
  Tensor t(dt, std::move(shape));
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (dt == DType::kI64)
      t.values<std::int64_t>()[i] = v[i];
    else
      t.values<std::int32_t>()[i] = static_cast<std::int32_t>(v[i]);
  }
  return t;
}

const std::vector<std::int64_t> kToks = {5, 900, 17, 1023, 0, 77, 300, 42};  // tiny vocab 1024

TEST_F(CliRun, DumpEqualsTheInProcessReferenceBitForBit) {
  write_npy(file("t.npy"), ids_tensor(DType::kI32, {1, 8}, kToks));
  const auto r = dsv4("run --config tiny --seed 3 --tokens " + file("t.npy") +
                      " --decode-steps 2 --mode official --dump " + file("d.h5"));
  ASSERT_EQ(r.status, 0) << r.err;
  // Progress: one line per layer and step.
  EXPECT_NE(r.err.find("dsv4 run: prefill layers.5"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("dsv4 run: decode1 head"), std::string::npos) << r.err;

  // The same run in process.
  const ModelConfig c = builtin_config("tiny");
  const Transformer model(Precision(Mode::kOfficial), c, ModelWeights::synthetic(c, 3));
  const std::vector<std::vector<std::int64_t>> toks{kToks};
  const auto plan = plan_steps(c, 1, 8, 2);
  MemoryRecorder rec;
  run_plan(model, toks, plan, rec);

  const Hdf5File f = Hdf5File::open(file("d.h5"));
  const std::vector<std::string> names = f.list_datasets();
  ASSERT_EQ(names.size(), rec.entries().size());
  for (const auto& [name, t] : rec.entries()) {
    ASSERT_TRUE(f.is_dataset(name)) << name;
    const Tensor d = f.read(name);
    ASSERT_EQ(d.shape(), t.shape) << name;
    if (t.integral) {
      ASSERT_EQ(d.dtype(), DType::kI64) << name;
      for (std::size_t i = 0; i < t.values.size(); ++i)
        ASSERT_EQ(d.values<std::int64_t>()[i], static_cast<std::int64_t>(t.values[i])) << name;
    } else {
      ASSERT_EQ(d.dtype(), DType::kF64) << name;
      for (std::size_t i = 0; i < t.values.size(); ++i)
        ASSERT_EQ(std::bit_cast<std::uint64_t>(d.values<double>()[i]), std::bit_cast<std::uint64_t>(t.values[i]))
            << name << " element " << i;
    }
  }
  // Canonical names as nested groups; shapes [b, s, c]; MTP in every step but the last.
  EXPECT_EQ(f.read("prefill/layers.0.attn/out").shape(), (std::vector<std::int64_t>{1, 6, 256}));
  EXPECT_EQ(f.read("decode1/layers.2.ffn.gate/out1").dtype(), DType::kI64);
  EXPECT_TRUE(f.is_dataset("prefill/mtp.0.head/out"));
  EXPECT_TRUE(f.is_dataset("decode0/mtp.0.head/out"));
  EXPECT_FALSE(f.exists("decode1/mtp.0.head"));
  EXPECT_TRUE(f.exists("prefill/layers.2.attn.indexer"));  // CSA layer (ratio 4)
  // Attributes.
  EXPECT_EQ(f.attr_string("/", "dsv4_format"), "dsv4-dump");
  EXPECT_EQ(f.attr_string("/", "mode"), "official");
  EXPECT_EQ(f.attr_string("/", "weights"), "synthetic");
  EXPECT_EQ(f.attr_string("/", "weights_seed"), "3");
  // The declaration certify and diff compare with the golden's weights.
  EXPECT_EQ(f.attr_string("/", "weights_content_sha256"), weights_content_sha256(c, ModelWeights::synthetic(c, 3)));
  EXPECT_EQ(f.attr_int64s("/", "tokens"), kToks);
  EXPECT_EQ(f.attr_int64s("/", "tokens_shape"), (std::vector<std::int64_t>{1, 8}));
  EXPECT_EQ(parse_config_json(f.attr_string("/", "config"), "dump").dim, 256);
}

TEST_F(CliRun, WeightsFileGivesTheSameDumpAsTheSeedAndIsHashed) {
  const ModelConfig c = builtin_config("tiny");
  write_safetensors(file("w.safetensors"), model_weight_tensors(c, ModelWeights::synthetic(c, 3)));
  write_npy(file("t.npy"), ids_tensor(DType::kI64, {8}, kToks));
  auto r = dsv4("run --config tiny --weights " + file("w.safetensors") + " --tokens " + file("t.npy") +
                " --decode-steps 1 --dump " + file("a.h5"));
  ASSERT_EQ(r.status, 0) << r.err;
  r = dsv4("run --config tiny --seed 3 --tokens " + file("t.npy") + " --decode-steps 1 --dump " + file("b.h5"));
  ASSERT_EQ(r.status, 0) << r.err;
  const Hdf5File a = Hdf5File::open(file("a.h5")), b = Hdf5File::open(file("b.h5"));
  EXPECT_EQ(a.attr_string("/", "weights"), "file");
  EXPECT_EQ(a.attr_string("/", "weights_sha256").size(), 64u);
  EXPECT_EQ(a.attr_string("/", "mode"), "exact");  // the default
  // The file holds the seed's weights: the same content hash.
  EXPECT_EQ(a.attr_string("/", "weights_content_sha256"), b.attr_string("/", "weights_content_sha256"));
  for (const char* n : {"decode0/head/out", "prefill/layers.3.attn/out", "prefill/mtp.0.head/out"}) {
    SCOPED_TRACE(n);
    const Tensor x = a.read(n), y = b.read(n);
    ASSERT_EQ(x.nbytes(), y.nbytes());
    EXPECT_TRUE(std::equal(x.bytes(), x.bytes() + x.nbytes(), y.bytes()));
  }
}

// dsv4 demo's candidate is dumped as dsv4 run --dump is (make_run_weights, write_run_dump): it declares
// the weights' content hash, the golden's weights.content_sha256.
TEST_F(CliRun, DemoCandidateDeclaresTheWeightsContentHash) {
  const auto r = dsv4("demo --weights-seed 3 --prompt-len 6 --decode-steps 2 --out-dir " + file("demo"));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const ModelConfig c = builtin_config("tiny");
  const std::string sha = weights_content_sha256(c, ModelWeights::synthetic(c, 3));
  const Hdf5File f = Hdf5File::open(file("demo/candidate-official.h5"));
  EXPECT_EQ(f.attr_string("/", "weights_content_sha256"), sha);
  const nlohmann::json w = nlohmann::json::parse(Golden::open(file("demo/tiny-golden.h5")).weights_json());
  EXPECT_EQ(w.at("content_sha256").get<std::string>(), sha) << "the golden's weights";
}

TEST_F(CliRun, BadInputExitsTwoNamingTheProblem) {
  write_npy(file("t.npy"), ids_tensor(DType::kI64, {1, 8}, kToks));
  const std::string ok = " --tokens " + file("t.npy") + " --dump " + file("d.h5");
  expect_bad_input(dsv4("run --config tiny --tokens " + file("none.npy") + " --dump " + file("d.h5")), "run",
                   "none.npy");
  Tensor f32(DType::kF32, {1, 4});
  write_npy(file("f.npy"), f32);
  expect_bad_input(dsv4("run --config tiny --tokens " + file("f.npy") + " --dump " + file("d.h5")), "run",
                   "int32 or int64");
  std::vector<std::int64_t> bad = kToks;
  bad[5] = 1024;
  write_npy(file("v.npy"), ids_tensor(DType::kI64, {1, 8}, bad));
  expect_bad_input(dsv4("run --config tiny --tokens " + file("v.npy") + " --dump " + file("d.h5")), "run",
                   "token id 1024 at [0, 5] is outside the vocabulary");
  bad[5] = -1;
  write_npy(file("n.npy"), ids_tensor(DType::kI64, {1, 8}, bad));
  expect_bad_input(dsv4("run --config tiny --tokens " + file("n.npy") + " --dump " + file("d.h5")), "run",
                   "token id -1");
  expect_bad_input(dsv4("run --config tiny --decode-steps 8" + ok), "run", "--decode-steps");
  expect_bad_input(dsv4("run --config tiny --mode fast" + ok), "run", "fast");
  expect_bad_input(dsv4("run --config nosuch" + ok), "run", "nosuch");
  write_npy(file("b3.npy"), ids_tensor(DType::kI64, {3, 2}, {1, 2, 3, 4, 5, 6}));
  expect_bad_input(dsv4("run --config tiny --tokens " + file("b3.npy") + " --dump " + file("d.h5")), "run",
                   "max_batch_size");
  // A checkpoint missing one tensor, and one with a tensor of the wrong dtype.
  const ModelConfig c = builtin_config("tiny");
  auto w = model_weight_tensors(c, ModelWeights::synthetic(c, 3));
  auto w_missing = w;
  w_missing.erase("layers.2.attn.wkv.weight");
  write_safetensors(file("m.safetensors"), w_missing);
  expect_bad_input(dsv4("run --config tiny --weights " + file("m.safetensors") + ok), "run",
                   "layers.2.attn.wkv.weight");
  auto w_dtype = w;
  w_dtype["norm.weight"] = Tensor(DType::kI32, w.at("norm.weight").shape());
  write_safetensors(file("d.safetensors"), w_dtype);
  expect_bad_input(dsv4("run --config tiny --weights " + file("d.safetensors") + ok), "run", "norm.weight");
  expect_bad_input(dsv4("run --config tiny --seed 1 --weights " + file("d.safetensors") + ok), "run", "--weights");
  EXPECT_FALSE(std::filesystem::exists(file("d.h5")));
}

}  // namespace
}  // namespace dsv4
