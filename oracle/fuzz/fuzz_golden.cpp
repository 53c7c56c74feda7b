// libFuzzer harness, structure-aware: a golden whose manifest (its JSON: config, steps, dataset
// list with dtypes, shapes, roles and hashes, tolerance figures, weights) is the fuzzed text, with
// the data of a small real golden (fuzz_golden_common.hpp) written under the paths it lists, then
// everything dsv4 does with a golden: `golden verify` (verify_golden), Golden::open_verified (what
// certify and diff open), every dataset read and hash-checked, the tolerance figures, the weights
// record, and certify of a fixed candidate (the golden's own official values of a few outputs) end
// to end and — when the manifest's config is still the golden's, so the cached weights are its
// weights — with the local verdicts (the modules recomputed on the manifest's tokens and steps).
// Only InputError may escape.
//
// A mutated manifest alone would mostly be stopped by the hash checks (manifest_sha256, each
// dataset's sha256), so the input also says how to forge the file around it — what a hostile
// golden can do (goldens/README.md §What the hashes protect):
//   byte 0   flags: 0x01 re-hash: every listed dataset's sha256 set to that of the data written,
//                   then manifest_sha256 to that of the manifest (a forged, consistent golden)
//                   0x02 keep the template's manifest_sha256 attribute (stale when edited)
//                   0x04 inputs/tokens element [byte 1 % n] := the int64 of bytes 2-9
//                   0x08 the dataset listed at [byte 1 % n] is not written
//                   0x10 an extra, unlisted dataset exact/prefill/extra/out is written
//                   0x20 the dataset listed at [byte 1 % n] is written 1-D and one element short
//                   0x40 the root attribute dsv4_format_version := the int64 of bytes 2-9
//                   0x80 element 0 of the float dataset listed at [byte 1 % n] := the double of
//                        bytes 2-9 (NaN, Inf, huge)
//   byte 1   a dataset index; bytes 2-9 a value; the rest: the manifest text.
// Each listed path the template holds is written once; listed paths it lacks are not written.
//
// Every Hdf5File::open forks the probe (hdf5_probe.hpp), and each input writes a golden of up to
// 318 datasets: expect tens of inputs per second under ASan.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "dsv4/golden/certify.hpp"
#include "dsv4/golden/config_json.hpp"
#include "dsv4/golden/declarations.hpp"
#include "dsv4/golden/golden.hpp"
#include "dsv4/golden/sha256.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/npz.hpp"
#include "dsv4/io/tensor_source.hpp"
#include "fuzz_golden_common.hpp"

namespace {

using dsv4::InputError;
using dsv4::Tensor;
using ojson = nlohmann::ordered_json;
namespace fz = dsv4::fuzz;

// The fixed candidate: the template's official values of a few outputs of layer 1 (CSA: indexer,
// compressor) and their module inputs, with the declared tokens.
const std::vector<std::string> kCandidateOutputs = {
    "prefill/layers.0/out",      "prefill/layers.1.attn_norm/out",    "prefill/layers.1.attn/kv",
    "prefill/layers.1.attn/out", "prefill/layers.1.attn.indexer/out", "prefill/layers.1.ffn.gate/out1",
    "prefill/layers.1.ffn/out",  "decode0/layers.1.attn/out",         "prefill/head/out"};

// [0]: the outputs alone (certified); [1]: with the declared tokens (checked against the golden's).
const std::vector<std::string>& candidate_paths() {
  static const std::vector<std::string> p = [] {
    const fz::GoldenTemplate& t = fz::golden_template();
    std::vector<std::pair<std::string, const Tensor*>> members;
    for (const std::string& name : kCandidateOutputs) members.emplace_back(name, &t.data.at("official/" + name));
    std::vector<std::string> paths = {fz::scratch_dir() + "/candidate.npz", fz::scratch_dir() + "/declaring.npz"};
    dsv4::write_npz(paths[0], members);
    members.emplace_back("inputs/tokens", &t.data.at("inputs/tokens"));
    dsv4::write_npz(paths[1], members);
    return paths;
  }();
  return p;
}

std::int64_t int64_at(const std::uint8_t* p) {
  std::int64_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::string sha256_of(const Tensor& t) { return dsv4::sha256_hex(std::span<const std::byte>(t.bytes(), t.nbytes())); }

// The forged golden of one input (see the header comment) at `path`.
void build(const std::uint8_t* data, std::size_t size, const std::string& path) {
  const fz::GoldenTemplate& t = fz::golden_template();
  const std::uint8_t flags = size > 0 ? data[0] : 0;
  const std::uint8_t pick = size > 1 ? data[1] : 0;
  std::uint8_t value_bytes[8] = {};
  if (size > 2) std::memcpy(value_bytes, data + 2, std::min<std::size_t>(8, size - 2));
  const std::int64_t value = int64_at(value_bytes);
  std::string manifest = size > 10 ? std::string(reinterpret_cast<const char*>(data + 10), size - 10) : std::string();

  // The listed paths (in order, once each) that the template holds.
  ojson m;
  bool parsed = false;
  try {
    m = ojson::parse(manifest);
    parsed = m.is_object() && m.contains("datasets") && m["datasets"].is_array();
  } catch (const nlohmann::json::exception&) {
  }
  std::vector<std::string> paths;
  std::set<std::string> seen;
  if (parsed) {
    for (const ojson& e : m["datasets"])
      if (e.is_object() && e.contains("path") && e["path"].is_string()) {
        const std::string p = e["path"].get<std::string>();
        if (t.data.count(p) && seen.insert(p).second) paths.push_back(p);
      }
  } else {
    paths = t.order;
  }

  std::map<std::string, Tensor> written;
  for (const std::string& p : paths) written.emplace(p, t.data.at(p));
  if (!paths.empty()) {
    const std::string& chosen = paths[pick % paths.size()];
    if (flags & 0x04) {
      Tensor& tok = written.count("inputs/tokens") ? written.at("inputs/tokens") : written.at(chosen);
      if (tok.dtype() == dsv4::DType::kI64 && tok.numel() > 0)
        tok.values<std::int64_t>()[static_cast<std::size_t>(pick) % static_cast<std::size_t>(tok.numel())] = value;
    }
    if (flags & 0x80) {
      Tensor& x = written.at(chosen);
      if (x.dtype() == dsv4::DType::kF64 && x.numel() > 0) std::memcpy(x.bytes(), value_bytes, 8);
    }
    if (flags & 0x20) {
      const Tensor& x = written.at(chosen);
      if (x.numel() > 0) {
        Tensor shorter(x.dtype(), {x.numel() - 1});
        std::memcpy(shorter.bytes(), x.bytes(), shorter.nbytes());
        written[chosen] = std::move(shorter);
      }
    }
    if (flags & 0x08) written.erase(chosen);
  }
  if (flags & 0x10) written.emplace("exact/prefill/extra/out", t.data.at(t.order.back()));

  if (parsed && (flags & 0x01)) {  // forge: hashes of what is written, then the manifest's own
    for (ojson& e : m["datasets"])
      if (e.is_object() && e.contains("path") && e["path"].is_string()) {
        const auto it = written.find(e["path"].get<std::string>());
        if (it != written.end()) e["sha256"] = sha256_of(it->second);
      }
    manifest = m.dump(1);
  }

  dsv4::Hdf5File f = dsv4::Hdf5File::create(path);
  for (const auto& [p, x] : written) f.write(p, x);
  f.write_string("manifest", manifest);
  f.set_attr("/", "dsv4_format", dsv4::kGoldenFormatName);
  f.set_attr("/", "dsv4_format_version", (flags & 0x40) ? value : dsv4::kGoldenFormatVersion);
  f.set_attr("/", "manifest_sha256", (flags & 0x02) ? dsv4::sha256_hex(t.manifest) : dsv4::sha256_hex(manifest));
  f.commit();
}

void use_verified(const std::string& path, std::uint8_t pick) {
  const fz::GoldenTemplate& t = fz::golden_template();
  const dsv4::Golden g = dsv4::Golden::open_verified(path);
  (void)g.decode_steps();
  for (const std::string& name : g.canonical_names()) (void)g.tolerance(name);
  // (Every dataset is read, hash-checked, by verify_golden and by certify below.)
  (void)g.weights_seed();

  const dsv4::MappedTensorSource declaring(dsv4::TensorSource::open(candidate_paths()[1]), dsv4::NameMap{});
  (void)dsv4::check_declarations(g, declaring, "certify");
  const dsv4::MappedTensorSource cand(dsv4::TensorSource::open(candidate_paths()[0]), dsv4::NameMap{});
  // Local verdicts only where the cached weights are the golden's (its config unchanged): other
  // configs would need their own weights made per input (seconds each).
  const bool same_model = dsv4::config_to_json(g.config()) == t.config_json && g.weights_seed() == 1;
  // With the local verdicts (they include the end-to-end comparisons) when the weights are the
  // golden's, unless byte 1 is odd: the end-to-end screen alone.
  fz::certify_and_report(g, cand, {}, same_model && (pick % 2 == 0) ? t.weights : nullptr);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ::setenv("DSV4_HDF5_PROBE_SECONDS", "5", 0);  // the probe's limit, under libFuzzer's -timeout of 10 s
  const fz::GoldenTemplate& t = fz::golden_template();
  (void)candidate_paths();
  const std::string dir = fz::seeds_dir_requested();
  if (dir.empty()) return 0;
  // Seeds: the whole manifest (an intact golden), forged and plain; a manifest listing only the
  // inputs and layer 1's outputs (re-hashed); one with the tokens forged out of the vocabulary.
  std::filesystem::create_directories(dir);
  const auto seed = [&](const std::string& name, std::uint8_t flags, std::uint8_t pick, std::int64_t value,
                        const std::string& manifest) {
    std::string bytes(10, '\0');
    bytes[0] = static_cast<char>(flags);
    bytes[1] = static_cast<char>(pick);
    std::memcpy(bytes.data() + 2, &value, 8);
    fz::write_bytes(dir + "/" + name, bytes + manifest);
  };
  seed("intact", 0x00, 0, 0, t.manifest);
  seed("forged_tokens", 0x05, 3, 1000, t.manifest);
  ojson m = ojson::parse(t.manifest);
  ojson kept = ojson::array();
  for (const ojson& e : m["datasets"]) {
    const std::string p = e["path"].get<std::string>();
    if (p.rfind("inputs/", 0) == 0 || p.find("/layers.1.") != std::string::npos ||
        p.find("/layers.0/out") != std::string::npos || p.find("/head/") != std::string::npos)
      kept.push_back(e);
  }
  m["datasets"] = kept;
  seed("layer1_only", 0x01, 0, 0, m.dump(1));
  seed("layer1_nan", 0x81, 7, 0x7ff8000000000001LL, m.dump(1));
  std::fprintf(stderr, "fuzz_golden: seeds written to %s\n", dir.c_str());
  std::exit(0);
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = fz::scratch_dir() + "/golden.h5";
  try {
    build(data, size, path);
  } catch (const InputError&) {  // dsv4's writer refused the forged file (e.g. a manifest with NULs)
    return 0;
  }
  try {
    (void)dsv4::verify_golden(path);
  } catch (const InputError&) {
  }
  try {
    use_verified(path, size > 1 ? data[1] : 0);
  } catch (const InputError&) {
  }
  std::filesystem::remove(path);
  return 0;
}
