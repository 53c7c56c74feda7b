// The content hash's throughput (issue 14 item 2: certify and diff hash every golden dataset they
// read, `dsv4 golden generate` and `dsv4 run` the weights): dsv4's SHA-256 (dsv4/golden/sha256.hpp,
// OpenSSL EVP) in GB/s, against peers measured in the same run on the same bytes. Results and the
// commands: BENCHMARKS.md §"Issue 14: the content hash's throughput".
//
//   hash_bench [--mb 512] [--reps 5] [--file F] [--config tiny]
//
// Timed, best of --reps: sha256_hex of an in-memory buffer of --mb MB (pseudo-random bytes; the
// hash's speed does not depend on them), peer memcpy of the same buffer; with --file,
// sha256_file_hex of F (a golden, say; in the page cache after the first repetition), peer reading F
// with the same 1 MiB reads; with --config, weights_content_sha256 of that config's seeded synthetic
// weights (what a golden's weights.content_sha256 is; hashed in place, as golden generate does),
// over their bytes. CPU times beside wall
// times: the hash runs on one thread, so its CPU time is its cost on a shared machine.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "bench_clock.hpp"
#include "dsv4/config/model_config.hpp"
#include "dsv4/golden/model_run.hpp"
#include "dsv4/golden/sha256.hpp"
#include "dsv4/model/checkpoint.hpp"
#include "dsv4/model/transformer.hpp"

namespace {

using namespace dsv4::bench;  // bench_clock.hpp: the clocks, timings and machine notes

void line(const char* what, double bytes, const Timing& t) {
  std::printf("%-46s %10.1f MB %9.4f s %9.4f s CPU %8.2f GB/s %8.2f GB/s per CPU-s\n", what, bytes / 1e6, t.wall, t.cpu,
              bytes / t.wall / 1e9, bytes / t.cpu / 1e9);
}

// Reads `path` to its end in 1 MiB reads (sha256_file_hex's buffer size); returns the bytes read.
std::uint64_t read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buf(std::size_t{1} << 20);
  std::uint64_t n = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    n += static_cast<std::uint64_t>(in.gcount());
  }
  return n;
}

// The bytes of every tensor of the weights (what weights_content_sha256 hashes, with their names).
std::uint64_t weights_bytes(const dsv4::ModelConfig& c, dsv4::ModelWeights& w) {
  std::uint64_t n = 0;
  for (const auto& [name, t] : dsv4::model_weight_tensors(c, w)) n += t.nbytes();
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  double mb = 512;
  int reps = 5;
  std::string file, config;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--mb") {
      mb = std::stod(argv[i + 1]);
    } else if (a == "--reps") {
      reps = std::stoi(argv[i + 1]);
    } else if (a == "--file") {
      file = argv[i + 1];
    } else if (a == "--config") {
      config = argv[i + 1];
    } else {
      reps = 0;
      break;
    }
  }
  if (reps < 1 || mb <= 0) {
    std::fprintf(stderr, "usage: hash_bench [--mb 512] [--reps 5] [--file F] [--config tiny]\n");
    return 2;
  }
  std::printf("hash_bench: %s\nload average at start: %s\n", cpu_model().c_str(), loadavg().c_str());
  const auto bytes = static_cast<std::size_t>(mb * 1e6);
  std::vector<std::uint64_t> src(bytes / 8), dst(bytes / 8);
  std::uint64_t z = 0x9E3779B97F4A7C15ull;
  for (std::uint64_t& x : src) x = (z = z * 6364136223846793005ull + 1442695040888963407ull);
  std::memset(dst.data(), 1, dst.size() * 8);  // first touch outside the timing
  const auto span = std::as_bytes(std::span<const std::uint64_t>(src));
  std::string digest;
  line("sha256_hex, in memory", static_cast<double>(span.size()),
       best_of(reps, [&] { digest = dsv4::sha256_hex(span); }));
  line("  peer: memcpy of the same buffer", static_cast<double>(span.size()),
       best_of(reps, [&] { std::memcpy(dst.data(), src.data(), src.size() * 8); }));
  if (!file.empty()) {
    std::uint64_t n = 0;
    const Timing h = best_of(reps, [&] { digest = dsv4::sha256_file_hex(file); });
    const Timing r = best_of(reps, [&] { n = read_file(file); });
    line("sha256_file_hex", static_cast<double>(n), h);
    line("  peer: reading the file (1 MiB reads)", static_cast<double>(n), r);
  }
  if (!config.empty()) {
    const dsv4::ModelConfig c = dsv4::builtin_config(config);
    dsv4::ModelWeights w = dsv4::make_weights(c, dsv4::WeightsSpec{1, ""});
    line("weights_content_sha256 (seed 1)", static_cast<double>(weights_bytes(c, w)),
         best_of(reps, [&] { digest = dsv4::weights_content_sha256(c, w); }));
  }
  std::printf("(last digest %s)\nload average at end: %s\n", digest.c_str(), loadavg().c_str());
  return 0;
}
