// libFuzzer harness: `dsv4 certify` end to end on a small golden (fuzz_golden_common.hpp, made
// once per process, opened with Golden::open_verified as the CLI does) with a fuzzed candidate
// file — a .npz, .npy or safetensors dump (recognised by content, as the CLI does), the fast
// formats: hundreds of inputs per second — or an HDF5 dump made of one (option 0x10: HDF5 reads
// fork the probe that contains libhdf5's crashes, tens per second). What `run_certify` does
// with it: TensorSource::open,
// the declarations (tokens, weights hash, config) checked against the golden's, then certify with
// the local verdicts (every module whose inputs the candidate holds recomputed, on the golden's
// cached synthetic weights) or end to end only, the report as text and JSON. certify must give a
// verdict (pass or fail) or refuse the candidate with InputError; any other exception, a crash, a
// sanitizer report or a hang is a finding.
//
//   byte 0   options: 0x01 --end-to-end-only, 0x02 --candidate-format bfloat16,
//            0x04 --require none (else all), 0x08 --require 'layers.1.*' (overrides 0x04);
//            0x10 an HDF5 candidate: the rest's tensors (read as below) written into an HDF5 file
//            as `dsv4 run --dump` writes one (bf16/fp8 with their dtype attributes), a safetensors
//            rest's __metadata__ entries as root string attributes (weights, weights_seed,
//            weights_content_sha256, config: the dump's declarations, fuzzed), and that file
//            certified; with it 0x20: an integer inputs/tokens tensor becomes the root attributes
//            tokens and tokens_shape (the dump's tokens declaration), 0x40: datasets gzip-chunked
//   the rest: the candidate file's bytes (.npz, .npy, safetensors, by content; any bytes).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dsv4/golden/certify.hpp"
#include "dsv4/golden/declarations.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/io/npz.hpp"
#include "dsv4/io/safetensors.hpp"
#include "dsv4/io/tensor_source.hpp"
#include "dsv4/numerics/formats.hpp"
#include "fuzz_golden_common.hpp"

namespace {

using dsv4::InputError;
using dsv4::Tensor;
namespace fz = dsv4::fuzz;

const dsv4::Golden& golden() {
  static const dsv4::Golden g = dsv4::Golden::open_verified(fz::golden_template().path);
  return g;
}

// The outputs of the seeds: layer 1 (CSA: compressor, indexer, gate) with its inputs, a decode
// output and the head.
const std::vector<std::string> kOutputs = {"prefill/layers.0/out",
                                           "prefill/layers.1.attn_norm/out",
                                           "prefill/layers.1.attn/kv",
                                           "prefill/layers.1.attn/out",
                                           "prefill/layers.1.attn.indexer/out",
                                           "prefill/layers.1.ffn.gate/out1",
                                           "prefill/layers.1.ffn_norm/out",
                                           "prefill/layers.1.ffn/out",
                                           "prefill/layers.1/out",
                                           "decode0/layers.1.attn/out",
                                           "prefill/head/out"};

// A float64 tensor as bf16 raw values (what an engine dumps), or as float32.
Tensor narrowed(const Tensor& t, dsv4::DType to) {
  Tensor out(to, t.shape());
  const auto v = t.values<double>();
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (to == dsv4::DType::kF32) {
      out.values<float>()[i] = static_cast<float>(v[i]);
    } else {
      const std::uint16_t b16 = dsv4::double_to_bf16(v[i]);
      std::memcpy(out.bytes() + 2 * i, &b16, 2);
    }
  }
  return out;
}

// Option 0x10: the candidate at `from` rewritten as an HDF5 dump at `to` (see the top). InputError
// when `from` is not a candidate or its names or attributes cannot be written to HDF5.
void write_hdf5_candidate(const std::string& from, const std::string& to, std::uint8_t options) {
  const std::unique_ptr<dsv4::TensorSource> src = dsv4::TensorSource::open(from);
  dsv4::Hdf5File f = dsv4::Hdf5File::create(to);
  dsv4::Hdf5WriteOptions wo;
  wo.deflate = (options & 0x40) ? 1 : 0;
  for (const std::string& n : src->names()) {
    const Tensor x = src->read(n);
    if ((options & 0x20) && n == "inputs/tokens" && x.dtype() == dsv4::DType::kI64 && x.rank() == 2) {
      const auto v = x.values<std::int64_t>();
      f.set_attr("/", "tokens", std::vector<std::int64_t>(v.begin(), v.end()));
      f.set_attr("/", "tokens_shape", std::vector<std::int64_t>{x.dim(0), x.dim(1)});
      continue;
    }
    f.write(n, x, wo);
  }
  if (src->format() == dsv4::SourceFormat::kSafetensors) {
    const dsv4::SafetensorsFile st = dsv4::SafetensorsFile::open(from);  // outlives the loop
    for (const auto& [k, v] : st.metadata()) f.set_attr("/", k, v);
  }
  f.commit();
}

void write_seeds(const std::string& dir) {
  const fz::GoldenTemplate& t = fz::golden_template();
  std::filesystem::create_directories(dir);
  const auto seed = [&](const std::string& name, std::uint8_t options, const std::vector<std::byte>& file) {
    std::string bytes(1, static_cast<char>(options));
    bytes.append(reinterpret_cast<const char*>(file.data()), file.size());
    fz::write_bytes(dir + "/" + name, bytes);
  };
  std::vector<Tensor> keep;  // owns the narrowed copies
  keep.reserve(2 * kOutputs.size() + 1);
  dsv4::NamedTensors f64, mixed;
  for (const std::string& n : kOutputs) {
    const Tensor& x = t.data.at("official/" + n);
    f64.emplace_back(n, &x);
    if (x.dtype() == dsv4::DType::kF64) {
      keep.push_back(narrowed(x, n.find("/head/") != std::string::npos ? dsv4::DType::kF32 : dsv4::DType::kBF16));
      mixed.emplace_back(n, &keep.back());
    } else {
      mixed.emplace_back(n, &x);
    }
  }
  seed("npz_f64", 0x00, dsv4::encode_npz(f64));
  seed("npz_deflate_e2e", 0x01, dsv4::encode_npz(f64, {.compress = true}));
  dsv4::SafetensorsWriteOptions meta;
  meta.metadata["config"] = t.config_json;
  meta.metadata["weights_content_sha256"] =
      nlohmann::json::parse(golden().weights_json()).at("content_sha256").get<std::string>();
  seed("safetensors_bf16", 0x00, dsv4::encode_safetensors(mixed, meta));
  seed("safetensors_bf16_format", 0x0a, dsv4::encode_safetensors(mixed));
  dsv4::NamedTensors with_tokens = mixed;
  with_tokens.emplace_back("inputs/tokens", &t.data.at("inputs/tokens"));
  seed("safetensors_tokens", 0x04, dsv4::encode_safetensors(with_tokens));
  seed("npy_one", 0x04, dsv4::encode_npy(t.data.at("official/prefill/layers.1.attn/out")));
  // HDF5 dumps: declared as dsv4 run declares (synthetic weights of seed 1, the config, the tokens
  // as attributes), and declaring the weights' content hash with gzip-chunked datasets.
  dsv4::SafetensorsWriteOptions dump;
  dump.metadata["dsv4_format"] = "dsv4-dump";
  dump.metadata["config"] = t.config_json;
  dump.metadata["weights"] = "synthetic";
  dump.metadata["weights_seed"] = "1";
  seed("hdf5_dump", 0x30, dsv4::encode_safetensors(with_tokens, dump));
  seed("hdf5_gzip_hash", 0x50, dsv4::encode_safetensors(mixed, meta));
  std::fprintf(stderr, "fuzz_certify: seeds written to %s\n", dir.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ::setenv("DSV4_HDF5_PROBE_SECONDS", "5", 0);
  (void)golden();
  if (const std::string dir = fz::seeds_dir_requested(); !dir.empty()) {
    write_seeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fz::GoldenTemplate& t = fz::golden_template();
  const dsv4::Golden& g = golden();
  const std::uint8_t options = size > 0 ? data[0] : 0;
  std::string path = fz::scratch_dir() + "/candidate";
  fz::write_bytes(path, size > 1 ? std::string(reinterpret_cast<const char*>(data + 1), size - 1) : std::string());
  if (options & 0x10) {
    try {
      write_hdf5_candidate(path, path + ".h5", options);
    } catch (const InputError&) {
      return 0;  // not a candidate, or not one HDF5 can hold (a name with an empty component, …)
    }
    path += ".h5";
  }
  try {
    const dsv4::MappedTensorSource cand(dsv4::TensorSource::open(path), dsv4::NameMap{});
    if (dsv4::check_declarations(g, cand, "certify") != 0) return 0;
    dsv4::CertifyOptions opts;
    opts.require = dsv4::parse_requirement((options & 0x08) ? "layers.1.*" : (options & 0x04) ? "none" : "all");
    if (options & 0x02) opts.candidate_format = dsv4::candidate_format_option("bfloat16");
    fz::certify_and_report(g, cand, opts, (options & 0x01) ? nullptr : t.weights);
  } catch (const InputError&) {
  }
  return 0;
}
