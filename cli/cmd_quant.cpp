// `dsv4 quant`: apply one of the named QAT quantisers (quant→dequant, in place) to a .npy array
// along its last dimension and write the float32 result. Bad input: one line on stderr, exit 2,
// nothing written.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "commands.hpp"
#include "dsv4/golden/cli_guard.hpp"
#include "dsv4/io/atomic_file.hpp"
#include "dsv4/io/input_error.hpp"
#include "dsv4/io/npy.hpp"
#include "dsv4/numerics/quant.hpp"
#include "dsv4/numerics/tensor.hpp"

namespace dsv4::cli {

namespace {

constexpr const char* kFooter = R"(
Example:
  dsv4 quant --kind fp8-act-128-ue8m0 --in x.npy --out y.npy

What it does: the array is read as rows of its last dimension (rows = product of the other
dimensions); each row is cut into blocks of the kind's block size from element 0, and every
value is replaced by what the official kernel's quantise-then-dequantise gives for it. The
output is float32, same shape as the input: for the fp8/fp4 activation kinds each output value
is exactly code × scale of its block (rounded as the kernel rounds it), so it can be compared
bit for bit with an engine's dequantised tensor. `dsv4 quant --list` shows every kind with its
block size; the last dimension must be a multiple of it.

Input dtypes:
  float32 ('<f4')  used as is.
  float64 ('<f8')  converted to float32 with round-to-nearest-even first (a value beyond the
                   float32 range is refused).
  bfloat16         numpy has no bf16: engines dump bf16 as a uint16 view of the bit patterns
                   ('<u2'). Such a file is read as bf16 when --bf16 is given or when its name
                   ends in .bf16.npy; a '<u2' file otherwise is refused as plain uint16.
NaN or Inf anywhere in the input is refused (the index of the first is named): the official
kernels' result for them is not defined.

Exit status: 0 written; 2 bad input — one line on stderr starting "dsv4 quant: error:", and
no output file is created (the output is written to a temporary file and renamed on success).)";

struct QuantArgs {
  std::string kind, in, out;
  bool list = false;
  bool bf16 = false;
};

// Bad input (exit 2 under run_guarded's contract).
class QuantFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string index_string(const std::vector<std::int64_t>& shape, std::int64_t flat) {
  std::vector<std::int64_t> idx(shape.size());
  std::int64_t r = flat;
  for (std::size_t k = shape.size(); k-- > 0;) {
    idx[k] = shape[k] == 0 ? 0 : r % shape[k];
    r = shape[k] == 0 ? 0 : r / shape[k];
  }
  std::string s = "[";
  for (std::size_t k = 0; k < idx.size(); ++k) {
    if (k) s += ", ";
    s += std::to_string(idx[k]);
  }
  return s + "] (flat index " + std::to_string(flat) + ")";
}

void print_list() {
  std::size_t w = 4;
  for (const auto& k : quant_kinds()) w = std::max(w, k.name.size());
  std::printf("%-*s  %5s  %s\n", static_cast<int>(w), "kind", "block", "description");
  for (const auto& k : quant_kinds()) {
    std::printf("%-*s  %5d  %s\n", static_cast<int>(w), k.name.c_str(), k.block, k.description.c_str());
  }
}

std::string valid_kinds() {
  std::string s;
  for (const auto& k : quant_kinds()) {
    if (!s.empty()) s += ", ";
    s += k.name;
  }
  return s;
}

// The input as float32 values; refuses dtypes we do not quantise and non-finite values.
std::vector<float> input_values(const Tensor& t, const std::string& path) {
  const auto n = static_cast<std::size_t>(t.numel());
  std::vector<float> x(n);
  auto nonfinite = [&](std::size_t i, double v) {
    throw QuantFailure(path + ": " + (std::isnan(v) ? "NaN" : "Inf") + " at index " +
                       index_string(t.shape(), static_cast<std::int64_t>(i)) +
                       "; the kernels' result for non-finite input is not defined");
  };
  switch (t.dtype()) {
    case DType::kF32: {
      const auto v = t.values<float>();
      for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(v[i])) nonfinite(i, v[i]);
        x[i] = v[i];
      }
      break;
    }
    case DType::kF64: {
      const auto v = t.values<double>();
      for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(v[i])) nonfinite(i, v[i]);
        x[i] = static_cast<float>(v[i]);  // round to nearest even (the default rounding mode)
        if (!std::isfinite(x[i])) {
          throw QuantFailure(path + ": float64 value " + std::to_string(v[i]) + " at index " +
                             index_string(t.shape(), static_cast<std::int64_t>(i)) + " overflows float32");
        }
      }
      break;
    }
    case DType::kBF16: {
      const auto v = t.values<std::uint16_t>();
      for (std::size_t i = 0; i < n; ++i) {
        x[i] = std::bit_cast<float>(static_cast<std::uint32_t>(v[i]) << 16);  // bf16 → fp32 is exact
        if (!std::isfinite(x[i])) nonfinite(i, x[i]);
      }
      break;
    }
    case DType::kU16:
      throw QuantFailure(path +
                         ": input is uint16 ('<u2'); if it holds bf16 bit patterns pass --bf16 or name the file "
                         "*.bf16.npy");
    default:
      throw QuantFailure(path + ": unsupported input dtype " + std::string(dtype_name(t.dtype())) +
                         " (quant reads float32, float64, or bf16 as '<u2')");
  }
  return x;
}

void run_quant(const QuantArgs& a) {
  if (a.list) {
    print_list();
    return;
  }
  if (a.kind.empty()) throw QuantFailure("--kind is required (valid kinds: " + valid_kinds() + ")");
  const QuantKind* kind = find_quant_kind(a.kind);
  if (kind == nullptr) throw QuantFailure("unknown kind '" + a.kind + "' (valid kinds: " + valid_kinds() + ")");
  if (a.in.empty()) throw QuantFailure("--in is required");
  if (a.out.empty()) throw QuantFailure("--out is required");
  check_output_paths({{"--out", a.out}}, {});  // --out may replace --in (read whole, then written atomically)

  const Tensor t = read_npy(a.in, NpyReadOptions{a.bf16 ? U2As::kBF16 : U2As::kByFileName});
  if (t.rank() == 0) throw QuantFailure(a.in + ": input is 0-d; quant needs at least one dimension");
  const std::int64_t cols = t.shape().back();
  if (kind->block > 0 && cols % kind->block != 0) {
    throw QuantFailure(a.in + ": shape " + t.shape_string() + " has last dimension " + std::to_string(cols) +
                       ", not a multiple of the " + kind->name + " block " + std::to_string(kind->block));
  }
  std::vector<float> x = input_values(t, a.in);
  if (!x.empty()) {
    try {
      kind->apply(std::span<float>(x), cols);
    } catch (const std::invalid_argument& e) {
      throw QuantFailure(a.in + ": " + e.what());
    }
  }
  Tensor out(DType::kF32, t.shape());
  std::copy(x.begin(), x.end(), out.values<float>().begin());
  write_npy(a.out, out);
}

}  // namespace

void register_quant(CLI::App& app) {
  auto args = std::make_shared<QuantArgs>();
  auto* cmd = app.add_subcommand(
      "quant", "Apply a named quantiser (quant→dequant) along the last dimension of a .npy array; writes float32");
  cmd->add_option("--kind", args->kind, "Quantiser name (see --list)");
  cmd->add_option("--in", args->in, "Input .npy: float32, float64 (rounded to float32), or bf16 (see --bf16)");
  cmd->add_option("--out", args->out, "Output .npy (float32, same shape); written only on success");
  cmd->add_flag("--list", args->list, "Print every kind with its block size and a one-line description");
  cmd->add_flag("--bf16", args->bf16, "Read a '<u2' (uint16) input as raw bf16 bit patterns");
  cmd->footer(kFooter);
  cmd->callback([args]() {  // one line on stderr; 2 bad input, 3 internal error (cli_guard.hpp)
    set_exit_code(run_guarded("quant", [&] {
      run_quant(*args);
      return 0;
    }));
  });
}

}  // namespace dsv4::cli
