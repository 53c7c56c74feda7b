// Editing a dump for tests: a copy of an HDF5 dump with one tensor changed (the candidate "bug").
// The golden and dumps both suites start from. Shared by the cli_certify and cli_diff tests.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_process.hpp"
#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/numerics/philox.hpp"

namespace dsv4::testing_support {

// Writes `to`: every dataset of `from`, with `edit` applied to the one named `name`. Returns false
// when `from` has no dataset of that name.
inline bool perturbed_copy(const std::string& from, const std::string& to, const std::string& name,
                           const std::function<void(Tensor&)>& edit) {
  const Hdf5File in = Hdf5File::open(from);
  Hdf5File out = Hdf5File::create(to);
  bool found = false;
  for (const std::string& n : in.list_datasets()) {
    Tensor t = in.read(n);
    if (n == name) {
      edit(t);
      found = true;
    }
    out.write(n, t);
  }
  out.commit();
  return found;
}

// perturbed_copy with every value of `name` (float64) multiplied by `factor`: a module output off
// by 1% (the default), far beyond any tolerance.
inline bool scaled_copy(const std::string& from, const std::string& to, const std::string& name, double factor = 1.01) {
  return perturbed_copy(from, to, name, [factor](Tensor& t) {
    for (double& x : t.values<double>()) x *= factor;
  });
}

// The suites' prompt at `path`: 38 tokens of one sequence (36 prompt + 2 decode), ids from the
// counter-based RNG (9, 1) modulo 1024.
inline void write_suite_tokens(const std::string& path) {
  Tensor t(DType::kI64, {1, 38});
  const CounterRng rng(9, 1);
  for (std::int64_t i = 0; i < 38; ++i)
    t.values<std::int64_t>()[static_cast<std::size_t>(i)] = rng.words(static_cast<std::uint64_t>(i))[0] % 1024;
  write_npy(path, t);
}

// Whether the certify --json report `report` (its text) gives tensor `name` the verdict FAIL by a
// failing local (re-judged) check.
inline bool failed_locally(const std::string& report, const std::string& name) {
  const nlohmann::json j = nlohmann::json::parse(report);
  bool failed = false;
  for (const auto& t : j.at("tensors"))
    if (t.at("name") == name)
      failed = t.at("verdict") == "FAIL" && !t.at("local").is_null() && !t.at("local").at("pass");
  return failed;
}

// In `dir`: t.npy (38 tokens of one sequence: 36 prompt + 2 decode, so that the CSA layers'
// indexer, top-8 of 9 compressed entries from position 35 on, has a real cut), the golden g.h5 of
// the tiny config with seed 4, and the reference's own official (off.h5) and exact (ex.h5) dumps,
// made by the built CLI (DSV4_CLI_PATH). False when a command failed.
inline bool make_golden_and_dumps(const std::filesystem::path& dir) {
  const auto path = [&](const std::string& n) { return (dir / n).string(); };
  write_suite_tokens(path("t.npy"));
  const std::string cli = std::string("'") + DSV4_CLI_PATH + "' ";
  const std::string common = "--config tiny --seed 4 --tokens " + path("t.npy") + " --decode-steps 2 ";
  const auto ok = [](const std::string& cmd) { return std::system(cmd.c_str()) == 0; };
  return ok(cli + "golden generate " + common + "--deflate 0 --out " + path("g.h5") + " > /dev/null") &&
         ok(cli + "run " + common + "--mode official --dump " + path("off.h5") + " 2> /dev/null") &&
         ok(cli + "run " + common + "--mode exact --dump " + path("ex.h5") + " 2> /dev/null");
}

// A CLI suite sharing one golden and its dumps (make_golden_and_dumps), made once per test binary.
class GoldenSuite : public CliDir {
 protected:
  static void SetUpTestSuite() {
    shared_ = std::filesystem::temp_directory_path() / ("dsv4_golden_suite_" + std::to_string(::getpid()));
    std::filesystem::create_directories(shared_);
    ok_ = make_golden_and_dumps(shared_);
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(shared_); }
  static std::string path(const std::string& n) { return (shared_ / n).string(); }
  void SetUp() override {
    CliDir::SetUp();
    ASSERT_TRUE(ok_) << "golden / dumps could not be made";
  }

  static inline std::filesystem::path shared_;
  static inline bool ok_ = false;
};

}  // namespace dsv4::testing_support
