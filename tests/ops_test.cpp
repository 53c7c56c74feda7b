// The op registry's one harness (gpu/ops, dsv4/ops/harness.hpp) over every registered op and every
// case of its generator: the CUDA kernel against the reference bit for bit, batch invariance and 20
// reruns (skipped without a GPU), the same invariance and reruns of the CPU reference itself (run
// everywhere), and the harness's own ability to fail (implementations with a wrong bit, a
// batch-dependent row, a nondeterministic rerun are caught and the first mismatch is named).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "dsv4/numerics/formats.hpp"
#include "dsv4/ops/harness.hpp"
#include "dsv4/ops/registry.hpp"
#include "dsv4/ops/resident.hpp"

namespace dsv4::ops {
namespace {

std::string describe(const std::vector<SelfCheckLine>& lines) {
  std::string s;
  for (const SelfCheckLine& l : lines) {
    s += l.what + ": " + std::to_string(l.cases) + " cases, " + std::to_string(l.failures) + " failures" +
         (l.first_failure.empty() ? "" : "; first: " + l.first_failure) + "\n";
  }
  return s;
}

void expect_clean(const std::vector<SelfCheckLine>& lines) {
  for (const SelfCheckLine& l : lines) {
    EXPECT_GT(l.cases, 0) << l.what;
    EXPECT_EQ(l.failures, 0) << l.what << ": " << l.first_failure;
  }
  std::printf("%s", describe(lines).c_str());
}

class EveryOp : public ::testing::TestWithParam<std::string> {
 protected:
  const Op& op() const { return *find_op(GetParam()); }
};

TEST_P(EveryOp, RegistrationIsComplete) {
  const Op& o = op();
  EXPECT_FALSE(o.spec.empty());
  EXPECT_FALSE(o.summary.empty());
  ASSERT_TRUE(o.reference) << o.stem << " has no reference";
  ASSERT_TRUE(o.cases) << o.stem << " has no case generator";
  // Labels and shapes depend on the op alone; the seed changes the values.
  const std::vector<Case> a = o.cases(1), b = o.cases(2);
  ASSERT_FALSE(a.empty());
  ASSERT_EQ(a.size(), b.size());
  std::set<std::string> labels;
  bool some_value_differs = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(labels.insert(a[i].label).second) << "duplicate case label " << a[i].label;
    EXPECT_EQ(a[i].label, b[i].label);
    EXPECT_EQ(a[i].call.ints, b[i].call.ints) << a[i].label;
    EXPECT_EQ(a[i].call.ints.size(), o.int_params.size()) << a[i].label;
    EXPECT_EQ(a[i].call.reals.size(), o.real_params.size()) << a[i].label;
    ASSERT_EQ(a[i].call.inputs.size(), b[i].call.inputs.size());
    for (std::size_t k = 0; k < a[i].call.inputs.size(); ++k) {
      EXPECT_EQ(a[i].call.inputs[k].rows, b[i].call.inputs[k].rows) << a[i].label;
      EXPECT_EQ(a[i].call.inputs[k].cols, b[i].call.inputs[k].cols) << a[i].label;
      some_value_differs = some_value_differs || a[i].call.inputs[k].f32 != b[i].call.inputs[k].f32;
    }
  }
  EXPECT_TRUE(some_value_differs) << "the seed changes no input value";
}

// The CPU reference, on every case: a row alone == in batches; 20 reruns identical. Batches are
// capped at 2^18 input elements here (the reference quantisers take ~40 ns an element: the device
// run's 2^21 would cost this test half a minute); rows of up to 512 elements still reach 512-row
// batches.
TEST_P(EveryOp, ReferenceIsBatchInvariantAndDeterministic) {
  HarnessOptions opt;
  opt.max_batch_elements = std::int64_t{1} << 18;
  expect_clean(check_op(op(), op().reference, "reference", false, opt));
}

// The CUDA kernel: bits == reference on every case, batch invariance, 20 reruns.
TEST_P(EveryOp, DeviceMatchesReferenceBitForBit) {
  if (!op().device) GTEST_SKIP() << op().stem << ": no device function (" << device_unavailable_reason() << ")";
  if (!device_available()) GTEST_SKIP() << device_unavailable_reason();
  std::printf("GPU: %s\n", device_text().c_str());
  expect_clean(check_op(op(), op().device, "device", true, HarnessOptions{}));
}

// Resident inputs (issue 18): for the ops whose device function takes resident shared inputs from
// their device copy, every case with its shared inputs marked resident — the first call makes the
// copies, the second reuses them — gives the reference's bits.
TEST_P(EveryOp, DeviceWithResidentInputsMatchesReference) {
  if (!op().resident_inputs) GTEST_SKIP() << op().stem << ": its device function copies every input in";
  if (!op().device) GTEST_SKIP() << op().stem << ": no device function (" << device_unavailable_reason() << ")";
  if (!device_available()) GTEST_SKIP() << device_unavailable_reason();
  for (const Case& c : op().cases(1)) {
    for (const Array& a : c.call.inputs)
      if (!a.per_row) a.make_resident();
    const Outputs want = op().reference(c.call);
    for (int use = 1; use <= 2; ++use) {
      const std::optional<Mismatch> m = first_mismatch(op().device(c.call), want);
      EXPECT_FALSE(m) << op().stem << " " << c.label << " (use " << use << " of the resident copies): " << m->text();
    }
    EXPECT_GT(call_bytes(op(), c.call).resident, 0) << c.label;
  }
}

std::vector<std::string> stems() {
  std::vector<std::string> s;
  for (const Op& o : all_ops()) s.push_back(o.stem);
  return s;
}
INSTANTIATE_TEST_SUITE_P(Registry, EveryOp, ::testing::ValuesIn(stems()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// ---- arrays share their values (copy on write) ----

TEST(OpsArray, CopiesShareTheirValuesUntilOneIsWritten) {
  const Array a = Array::floats("w", 2, 3, {1, 2, 3, 4, 5, 6});
  a.make_resident();
  Array b = a;
  EXPECT_TRUE(b.f32.shares(a.f32));
  EXPECT_TRUE(b.resident());
  const std::int64_t before = array_bytes_copied();
  const float read = std::as_const(b).f32[4];
  EXPECT_EQ(read, 5.0f);
  EXPECT_EQ(array_bytes_copied(), before) << "a read copied";
  b.f32[4] = 50.0f;  // the write copies b's values first: a is unchanged
  EXPECT_EQ(array_bytes_copied() - before, 6 * static_cast<std::int64_t>(sizeof(float)));
  EXPECT_FALSE(b.f32.shares(a.f32));
  EXPECT_FALSE(b.resident()) << "a written copy is a new buffer, without the resident copies";
  EXPECT_EQ(a.f32[4], 5.0f);
  EXPECT_EQ(b.f32[4], 50.0f);
  // call_bytes: shared resident inputs count as resident for an op that takes them so, else copied
  Call c{{0, 0, 0}, {}, {Array::floats("x", 1, 3, {1, 2, 3}), a}};
  c.inputs[1].per_row = false;
  const Op* linear = find_op("linear");
  ASSERT_TRUE(linear != nullptr && linear->resident_inputs);
  EXPECT_EQ(call_bytes(*linear, c).resident, a.bytes());
  EXPECT_EQ(call_bytes(*linear, c).copied, 3 * static_cast<std::int64_t>(sizeof(float)));
  EXPECT_EQ(call_bytes(*find_op("rmsnorm"), c).resident, 0);
}

// ---- the harness can fail ----

// hc_split_sinkhorn's smallest cases (fast), as a test bed for broken implementations.
std::vector<Case> few_cases(std::uint64_t seed = 1) {
  std::vector<Case> all = find_op("hc_split_sinkhorn")->cases(seed);
  return {all[0], all[9]};
}

TEST(OpsHarness, FirstMismatchNamesOutputCoordinateAndBothValues) {
  const Op& op = *find_op("hc_split_sinkhorn");
  const Case c = few_cases()[1];
  const Outputs want = op.reference(c.call);
  Outputs got = want;
  got[2].f32[static_cast<std::size_t>(3 * got[2].cols + 1)] = std::nextafter(got[2].f32[3 * got[2].cols + 1], 2.0f);
  const auto m = first_mismatch(got, want);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->output, "comb");
  EXPECT_EQ(m->row, 3);
  EXPECT_EQ(m->col, 1);
  EXPECT_EQ(m->differing, 1);
  EXPECT_NE(m->text().find("got 0x"), std::string::npos) << m->text();
  EXPECT_NE(m->text().find("want 0x"), std::string::npos) << m->text();
  // −0 and +0 are different bits.
  Outputs zero = want, negzero = want;
  zero[0].f32[0] = 0.0f;
  negzero[0].f32[0] = -0.0f;
  EXPECT_TRUE(first_mismatch(negzero, zero).has_value());
  // A missing output is a structural mismatch.
  Outputs fewer = want;
  fewer.pop_back();
  const auto s = first_mismatch(fewer, want);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->row, -1);
  EXPECT_FALSE(first_mismatch(want, want).has_value());
}

TEST(OpsHarness, CatchesAWrongBit) {
  const Op& op = *find_op("hc_split_sinkhorn");
  const Fn off_by_one_ulp = [&op](const Call& c) {
    Outputs o = op.reference(c);
    o[1].f32.back() = std::nextafter(o[1].f32.back(), 0.0f);
    return o;
  };
  const SelfCheckLine l = check_matches_reference(op, off_by_one_ulp, few_cases());
  EXPECT_EQ(l.failures, 2);
  EXPECT_NE(l.first_failure.find("post[row 99, col 0]"), std::string::npos) << l.first_failure;
}

TEST(OpsHarness, CatchesABatchDependentRow) {
  const Op& op = *find_op("hc_split_sinkhorn");
  // A kernel whose last output row depends on the batch size (a split chosen by the batch).
  const Fn batch_dependent = [&op](const Call& c) {
    Outputs o = op.reference(c);
    if (c.rows() > 64) o[0].f32.back() = std::nextafter(o[0].f32.back(), 2.0f);
    return o;
  };
  const std::vector<Case> cases = few_cases();
  const SelfCheckLine l = check_batch_invariance(op, batch_dependent, cases, few_cases(2), HarnessOptions{});
  EXPECT_GT(l.failures, 0);
  EXPECT_NE(l.first_failure.find("batch of 512"), std::string::npos) << l.first_failure;
  // Rows depending on their neighbours' contents are caught too (the companions change).
  const Fn neighbour_dependent = [&op](const Call& c) {
    Outputs o = op.reference(c);
    const auto& mixes = c.inputs[0].f32;
    if (c.rows() > 1 && mixes[0] > mixes[static_cast<std::size_t>(c.inputs[0].cols)]) {
      o[0].f32[static_cast<std::size_t>(o[0].cols)] = 0.0f;
    }
    return o;
  };
  EXPECT_GT(check_batch_invariance(op, neighbour_dependent, cases, few_cases(2), HarnessOptions{}).failures, 0);
}

TEST(OpsHarness, CatchesANondeterministicRerun) {
  const Op& op = *find_op("hc_split_sinkhorn");
  auto calls = std::make_shared<std::atomic<int>>(0);
  const Fn racy = [&op, calls](const Call& c) {
    Outputs o = op.reference(c);
    if (++*calls % 7 == 0) o[2].f32[0] = std::nextafter(o[2].f32[0], 2.0f);  // every 7th run differs
    return o;
  };
  const SelfCheckLine l = check_reruns(op, racy, few_cases(), HarnessOptions{});
  EXPECT_GT(l.failures, 0);
  EXPECT_NE(l.first_failure.find("rerun"), std::string::npos) << l.first_failure;
}

TEST(OpsHarness, AnExceptionIsAFailureNotACrash) {
  const Op& op = *find_op("hc_split_sinkhorn");
  const Fn throws = [](const Call&) -> Outputs { throw std::invalid_argument("refused"); };
  const SelfCheckLine l = check_matches_reference(op, throws, few_cases());
  EXPECT_EQ(l.failures, 2);
  EXPECT_NE(l.first_failure.find("refused"), std::string::npos);
}

// ---- the case generators cover the edges they are meant to ----

TEST(OpsCases, QuantiserInputsCoverFloorClampZeroBlocksAndSubnormals) {
  const Op& op = *find_op("act_quant");
  std::int64_t floor_blocks = 0, zero_codes_of_nonzero = 0, subnormal_inputs = 0, zero_blocks = 0, ties = 0;
  for (const Case& c : op.cases(1)) {
    if (c.call.ints[0] != 128 || c.call.ints[1] != 1) continue;  // block 128, ue8m0
    const Outputs o = op.reference(c.call);
    const std::vector<float>& x = c.call.inputs[0].f32;
    for (const float s : o[1].f32) floor_blocks += s == 0x1p-22f ? 1 : 0;
    for (std::size_t b = 0; b < x.size() / 128; ++b) {
      bool all_zero = true;
      for (std::size_t i = b * 128; i < (b + 1) * 128; ++i) all_zero = all_zero && x[i] == 0.0f;
      zero_blocks += all_zero ? 1 : 0;
    }
    for (std::size_t i = 0; i < x.size(); ++i) {
      zero_codes_of_nonzero += (x[i] != 0 && (o[0].u8[i] & 0x7F) == 0) ? 1 : 0;
      subnormal_inputs += std::fpclassify(x[i]) == FP_SUBNORMAL ? 1 : 0;
      // an e4m3 tie: x / s exactly halfway between two codes (the scale is a power of two here)
      const double q = std::fabs(static_cast<double>(x[i]) / o[1].f32[i / 128]);
      int e = 0;
      std::frexp(q, &e);                      // q = m·2^e, m ∈ [0.5, 1): e4m3 spacing 2^(e−4)
      const double t = std::ldexp(q, 4 - e);  // q in units of its e4m3 spacing (normals: 3 mantissa bits)
      ties += q >= 0x1p-6 && q < 448.0 && t - std::floor(t) == 0.5 ? 1 : 0;
    }
  }
  EXPECT_GT(floor_blocks, 100);
  EXPECT_GT(zero_codes_of_nonzero, 1000);
  EXPECT_GT(subnormal_inputs, 1000);
  EXPECT_GT(zero_blocks, 10);
  EXPECT_GT(ties, 100);
}

// linear's cases, per weight kind (bf16, fp32, fp8, fp4): subnormal and outlier inputs, zero
// 128-blocks of x; for fp8 / fp4 both act scale formats, blocks whose scale act_quant's amax floor
// clamps, zero weight blocks and the smallest weight scale 2^-127; bf16 ties of the C1 sums (the
// bf16 kind's fp32 result, from the same case with the fp32 kind, on a bf16 midpoint) and inf
// outputs.
TEST(OpsCases, LinearCasesCoverEveryWeightKindAndTheEdges) {
  const Op& op = *find_op("linear");
  struct Count {
    std::int64_t cases = 0, subnormal = 0, outliers = 0, zero_blocks = 0, floor_blocks = 0, zero_weight_blocks = 0,
                 tiny_scales = 0, ties = 0, infinite = 0, fp32_scale_cases = 0;
  };
  Count n[4];
  for (const Case& c : op.cases(1)) {
    Count& k = n[c.call.ints[1]];
    const int kind = static_cast<int>(c.call.ints[1]);
    ++k.cases;
    const std::vector<float>& x = c.call.inputs[0].f32;
    const std::int64_t cols = c.call.inputs[0].cols;
    for (const float v : x) {
      k.subnormal += std::fpclassify(v) == FP_SUBNORMAL ? 1 : 0;
      k.outliers += std::fabs(v) >= 0x1p20f ? 1 : 0;
    }
    for (std::size_t b = 0; b + 128 <= x.size(); b += 128) {
      if (static_cast<std::int64_t>(b) % cols + 128 > cols) continue;
      bool zero = true;
      for (std::size_t i = b; i < b + 128; ++i) zero = zero && x[i] == 0.0f;
      k.zero_blocks += zero ? 1 : 0;
    }
    for (const float y : op.reference(c.call)[0].f32) k.infinite += std::isinf(y) ? 1 : 0;
    if (kind <= 1) {
      for (const float v : c.call.inputs[1].f32) k.subnormal += std::fpclassify(v) == FP_SUBNORMAL ? 1 : 0;
      if (kind == 0 && c.call.ints[0] == 0) {
        Call as_fp32 = c.call;
        as_fp32.ints[1] = 1;
        for (const float y : op.reference(as_fp32)[0].f32) {
          k.ties += std::isfinite(y) && (std::bit_cast<std::uint32_t>(y) & 0xFFFFu) == 0x8000u ? 1 : 0;
        }
      }
      continue;
    }
    k.fp32_scale_cases += c.call.ints[2] != 0 ? 1 : 0;
    for (std::size_t b = 0; b + 128 <= x.size(); b += 128) {  // K is a multiple of 128 here
      float amax = 0.0f;
      for (std::size_t i = b; i < b + 128; ++i) amax = std::max(amax, std::fabs(x[i]));
      k.floor_blocks += amax > 0.0f && amax < 1e-4f ? 1 : 0;  // act_quant's amax floor clamps the scale
    }
    const std::vector<std::uint8_t>& codes = c.call.inputs[1].u8;
    const std::size_t block = kind == 2 ? 128 : 16;  // 128 fp8 codes, 32 fp4 codes (16 bytes)
    for (std::size_t b = 0; b + block <= codes.size(); b += block) {
      bool zero = true;
      for (std::size_t i = b; i < b + block; ++i) zero = zero && (codes[i] & (kind == 2 ? 0x7Fu : 0x77u)) == 0;
      k.zero_weight_blocks += zero ? 1 : 0;
    }
    for (const std::uint8_t s : c.call.inputs[2].u8) k.tiny_scales += s == 0 ? 1 : 0;
  }
  for (int kind = 0; kind < 4; ++kind) {
    const Count& k = n[kind];
    EXPECT_GE(k.cases, 3) << kind;
    EXPECT_GT(k.subnormal, 10) << kind;
    EXPECT_GT(k.outliers, 10) << kind;
    EXPECT_GT(k.zero_blocks, 0) << kind;
    if (kind <= 1) continue;
    EXPECT_GE(k.fp32_scale_cases, 1) << kind;
    EXPECT_GT(k.floor_blocks, 2) << kind;
    EXPECT_GT(k.zero_weight_blocks, 2) << kind;
    EXPECT_GT(k.tiny_scales, 1) << kind;
  }
  EXPECT_GT(n[0].ties, 50);
  EXPECT_GT(n[0].infinite + n[1].infinite, 0);
}

// The quantised expert cases (expert: ints {weight_kind, act_scale_fp32}; moe_combine: ints
// {n_experts, routed_kind, shared_kind, act_scale_fp32}) are not degenerate: every output finite,
// most nonzero, many distinct values, every expert weight kind with both activation scale formats
// (V4's fp4 routed + fp8 shared among them), and the format reaches the arithmetic (the other
// format changes some bits).
TEST(OpsCases, QuantisedExpertCasesCoverTheKindsAndAreNotDegenerate) {
  std::set<std::vector<std::int64_t>> kinds;  // {op, kind(s), format}
  for (const char* stem : {"expert", "moe_combine"}) {
    const Op& op = *find_op(stem);
    const bool moe = std::string(stem) == "moe_combine";
    const std::size_t fmt_at = moe ? 3 : 1;
    for (const Case& c : op.cases(1)) {
      const bool quantised = moe ? (c.call.ints[1] != 0 || c.call.ints[2] != 0) : c.call.ints[0] != 0;
      if (!quantised) continue;
      kinds.insert(moe ? std::vector<std::int64_t>{1, c.call.ints[1], c.call.ints[2], c.call.ints[fmt_at]}
                       : std::vector<std::int64_t>{0, c.call.ints[0], c.call.ints[fmt_at]});
      const std::vector<float> y = op.reference(c.call)[0].f32;
      std::int64_t finite = 0, nonzero = 0;
      std::set<std::uint32_t> distinct;
      for (const float v : y) {
        finite += std::isfinite(v) ? 1 : 0;
        nonzero += v != 0.0f ? 1 : 0;
        distinct.insert(std::bit_cast<std::uint32_t>(v));
      }
      const auto n = static_cast<std::int64_t>(y.size());
      std::printf("%s %s: %lld outputs, %lld nonzero, %zu distinct\n", stem, c.label.c_str(), static_cast<long long>(n),
                  static_cast<long long>(nonzero), distinct.size());
      EXPECT_EQ(finite, n) << c.label;
      // The edge cases zero whole rows (zero and subnormal routing weights, zero token rows).
      const bool edges = c.label.find("edge values") != std::string::npos;
      EXPECT_GT(nonzero * (edges ? 5 : 2), n) << c.label;
      EXPECT_GT(distinct.size() * (edges ? 8 : 4), static_cast<std::size_t>(n)) << c.label;
      Call other = c.call;
      other.ints[fmt_at] = 1 - other.ints[fmt_at];
      const std::vector<float> z = op.reference(other)[0].f32;
      std::int64_t differ = 0;
      for (std::size_t i = 0; i < y.size(); ++i)
        differ += std::bit_cast<std::uint32_t>(y[i]) != std::bit_cast<std::uint32_t>(z[i]) ? 1 : 0;
      EXPECT_GT(differ, 0) << c.label << ": the activation scale format changes nothing";
    }
  }
  for (const std::vector<std::int64_t>& k : std::vector<std::vector<std::int64_t>>{
           {0, 2, 0}, {0, 2, 1}, {0, 3, 0}, {0, 3, 1}, {1, 3, 2, 0}, {1, 2, 2, 1}, {1, 3, 0, 0}}) {
    EXPECT_EQ(kinds.count(k), 1u) << k[0] << " " << k[1] << " " << k[2];
  }
}

// moe_combine's official arithmetic as its kernel computes it (gpu/src/moe_combine.cu), on the CPU:
// every (token, slot) pair's expert output and the shared expert's from the expert op's reference
// (route weight 1 for the shared expert: fl(1·h) = h), then acc = +0, acc = fl32(acc + pair) in
// ascending (expert id, slot) order, acc = fl32(acc + shared), bf16 — equal bit for bit to the
// reference's Moe::combine on every case. The cases make that order matter (the gate's slot order,
// the plausible wrong one, differs in the bf16 result on some elements) and meet fp32 midpoints in the additions and
// bf16 midpoints at the end.
TEST(OpsCases, MoeCombineIsTheAscendingFp32SumAndItsCasesMeetTies) {
  const Op& op = *find_op("moe_combine");
  const Op& expert = *find_op("expert");
  std::int64_t elements = 0, mismatches = 0, order_matters = 0, fp32_ties = 0, bf16_ties = 0, repeated = 0,
               subnormal_weights = 0;
  for (const Case& c : op.cases(1)) {
    // The bf16 experts' cases (ints: n_experts, routed_kind, shared_kind, act_scale_fp32): the
    // combine's order is the same code whatever the weights' kind; the ties are built with bf16 values.
    if (c.call.ints[1] != 0 || c.call.ints[2] != 0) continue;
    const std::vector<Array>& in = c.call.inputs;
    const std::int64_t T = in[0].rows, d = in[0].cols, k = in[1].cols, de = in[6].rows;
    const auto run_expert = [&](const float* x, float w, const std::vector<float>& w1, const std::vector<float>& w3,
                                const std::vector<float>& w2) {
      Call e;
      e.ints = {0, 0};  // bf16 weights
      e.reals = {c.call.reals[0]};
      e.inputs = {Array::floats("x", 1, d, std::vector<float>(x, x + d)), Array::floats("route_weight", 1, 1, {w}),
                  Array::floats("w1", de, d, w1), Array::floats("w3", de, d, w3), Array::floats("w2", d, de, w2)};
      for (std::size_t i = 2; i < 5; ++i) e.inputs[i].per_row = false;  // the weights are shared inputs
      return expert.reference(e)[0].f32;
    };
    const auto block = [&](const Array& a, std::int64_t e, std::int64_t rows) {
      return std::vector<float>(a.f32.begin() + e * rows * a.cols, a.f32.begin() + (e + 1) * rows * a.cols);
    };
    const std::vector<float> want = op.reference(c.call)[0].f32;
    for (std::int64_t t = 0; t < T; ++t) {
      const float* xt = in[0].f32.data() + t * d;
      std::vector<std::pair<std::int64_t, std::int64_t>> slots;  // (expert id, slot)
      std::vector<std::vector<float>> pair(static_cast<std::size_t>(k));
      for (std::int64_t j = 0; j < k; ++j) {
        const auto e = static_cast<std::int64_t>(in[2].f32[static_cast<std::size_t>(t * k + j)]);
        const float w = in[1].f32[static_cast<std::size_t>(t * k + j)];
        subnormal_weights += std::fpclassify(w) == FP_SUBNORMAL ? 1 : 0;
        slots.emplace_back(e, j);
        pair[static_cast<std::size_t>(j)] =
            run_expert(xt, w, block(in[3], e, de), block(in[4], e, de), block(in[5], e, d));
      }
      std::sort(slots.begin(), slots.end());
      for (std::size_t j = 1; j < slots.size(); ++j) repeated += slots[j].first == slots[j - 1].first ? 1 : 0;
      const std::vector<float> shared = run_expert(xt, 1.0f, in[6].f32, in[7].f32, in[8].f32);
      for (std::int64_t i = 0; i < d; ++i) {
        const auto add = [&](float acc, float v) {
          const double s = static_cast<double>(acc) + static_cast<double>(v);
          const float f = static_cast<float>(s);
          if (static_cast<double>(f) != s && std::isfinite(f)) {
            const double other = std::nextafter(f, s > f ? INFINITY : -INFINITY);
            fp32_ties += (s - f) == (other - s) ? 1 : 0;
          }
          return acc + v;
        };
        float up = 0.0f, down = 0.0f;
        for (const auto& sl : slots)
          up = add(up, pair[static_cast<std::size_t>(sl.second)][static_cast<std::size_t>(i)]);
        for (std::int64_t j = 0; j < k; ++j) down += pair[static_cast<std::size_t>(j)][static_cast<std::size_t>(i)];
        up = add(up, shared[static_cast<std::size_t>(i)]);
        down += shared[static_cast<std::size_t>(i)];
        bf16_ties += (std::bit_cast<std::uint32_t>(up) & 0xFFFFu) == 0x8000u ? 1 : 0;
        const float got = round_bf16(up);
        order_matters += std::bit_cast<std::uint32_t>(round_bf16(down)) != std::bit_cast<std::uint32_t>(got) ? 1 : 0;
        ++elements;
        if (std::bit_cast<std::uint32_t>(got) !=
            std::bit_cast<std::uint32_t>(want[static_cast<std::size_t>(t * d + i)])) {
          if (mismatches++ == 0) ADD_FAILURE() << c.label << ": token " << t << ", element " << i;
        }
      }
    }
  }
  std::printf(
      "moe_combine: %lld elements, %lld mismatches, %lld depend on the order, %lld fp32 ties, %lld bf16 ties, "
      "%lld repeated ids, %lld subnormal routing weights\n",
      static_cast<long long>(elements), static_cast<long long>(mismatches), static_cast<long long>(order_matters),
      static_cast<long long>(fp32_ties), static_cast<long long>(bf16_ties), static_cast<long long>(repeated),
      static_cast<long long>(subnormal_weights));
  EXPECT_EQ(mismatches, 0);
  EXPECT_GT(order_matters, 10);
  EXPECT_GT(fp32_ties, 10);
  EXPECT_GT(bf16_ties, 10);
  EXPECT_GT(repeated, 2);
  EXPECT_GT(subnormal_weights, 2);
}

}  // namespace
}  // namespace dsv4::ops
