// The deterministic CUDA kernels (gpu/) at V4 shapes, timed through their device-pointer forms with
// CUDA events — issue 18's performance item; its PyTorch peer is gpu_torch_peer.py and
// gpu_kernel_vs_torch.py runs both in one session and prints the ratios (BENCHMARKS.md, "GPU kernels
// against PyTorch (issue 18)").
//
// The shapes come from the built-in configs (ref/config: v4-flash, v4-pro): the bf16 linear of a
// [dim, dim] weight (bf16, fp8 and fp4 kinds) at M = 1, 16, 64 (decode) and 512, 4096 tokens (prefill); RMSNorm over
// dim; sparse attention with sink (n_heads heads, head_dim, index_topk entries a token, 4096 kv rows); the MoE combine
// (n_activated_experts of 32 bf16 experts [moe_inter_dim, dim] and the shared expert, swiglu_limit) for one decode
// batch. Each case prints one JSON line: op, config, shape and its params, median and min µs of `runs` timed calls
// after `warmup` calls (host recompute of undecided elements excluded: `undecided` counts the flags the last call
// left), bytes (the math's bf16 operands read and written once) and flops. Inputs: bf16 values from normal
// distributions (a pool of 4,194,301 draws a tensor, repeated beyond it), kv lists and expert ids distinct a token,
// drawn uniformly.
//   gpu_kernel_bench [--list] [--runs N] [--warmup W] [--configs a,b] [--ops a,b] [--max-tokens T]
// --list prints the cases (no timing, no GPU needed): gpu_torch_peer.py reads its shapes from them.
// Without a CUDA device it says so and exits 2 (a benchmark that cannot run is not a pass).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dsv4/config/model_config.hpp"
#include "dsv4/gpu/device.hpp"
#include "dsv4/gpu/linear.hpp"
#include "dsv4/gpu/moe_combine.hpp"
#include "dsv4/gpu/rmsnorm.hpp"
#include "dsv4/gpu/sparse_attention.hpp"
#include "dsv4/numerics/formats.hpp"

namespace {

namespace gpu = dsv4::gpu;

// The ops of the cases (make_cases, run_case), for --ops.
constexpr const char* kOps[] = {"linear_bf16", "linear_fp8",       "linear_fp4",
                                "rmsnorm",     "sparse_attention", "moe_combine"};
constexpr std::int64_t kBenchExperts = 32;  // routed experts held on the device (bf16 values as fp32)
constexpr std::int64_t kAttentionKvRows = 4096;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw gpu::CudaError(std::string(what) + ": " + cudaGetErrorString(e));
}

// A device allocation of `count` T's, freed at scope exit.
template <class T>
struct Dev {
  T* p = nullptr;
  std::size_t n = 0;
  explicit Dev(std::size_t count) : n(count) {
    if (n > 0) check(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)), "cudaMalloc");
  }
  Dev(const std::vector<T>& host) : Dev(host.size()) {
    if (n > 0) check(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  ~Dev() {
    if (p != nullptr) (void)cudaFree(p);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  std::int64_t count_nonzero_bytes() const {  // for the undecided flags (T = uint8_t)
    std::vector<T> h(n);
    if (n > 0) check(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return static_cast<std::int64_t>(std::count_if(h.begin(), h.end(), [](T v) { return v != 0; }));
  }
};

// The pool that fill_bf16_normal repeats: a prime count, so that no row of a matrix repeats another.
constexpr std::size_t kPoolValues = 4194301;

// d's values: bf16 values (held as floats) drawn from N(0, sigma²), deterministic in seed; beyond
// kPoolValues the pool of draws repeats (the experts' weights are billions of values: drawing them
// all would cost the device machine minutes of host time for no change in the kernels' work).
void fill_bf16_normal(Dev<float>& d, double sigma, std::uint64_t seed) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> dist(0.0, sigma);
  std::vector<float> pool(std::min(d.n, kPoolValues));
  for (auto& x : pool) x = dsv4::round_bf16(dist(g));
  for (std::size_t off = 0; off < d.n; off += pool.size()) {
    const std::size_t n = std::min(pool.size(), d.n - off);
    check(cudaMemcpy(d.p + off, pool.data(), n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
}

// A device buffer of count bf16 values from N(0, sigma²) (fill_bf16_normal).
struct DevNormal : Dev<float> {
  DevNormal(std::size_t count, double sigma, std::uint64_t seed) : Dev<float>(count) {
    fill_bf16_normal(*this, sigma, seed);
  }
};

struct Case {
  std::string op, config;
  std::vector<std::pair<std::string, std::int64_t>> params;
  double bytes = 0, flops = 0;
  double scale = 0, eps = 0, limit = 0;  // op-specific reals (sparse_attention tau, rmsnorm eps, moe limit)
  std::string shape() const {
    std::string s;
    for (const auto& [k, v] : params) s += (s.empty() ? "" : " ") + k + "=" + std::to_string(v);
    return s;
  }
  std::int64_t at(const std::string& k) const {
    for (const auto& [name, v] : params)
      if (name == k) return v;
    throw std::logic_error("no param " + k);
  }
};

std::string json_line(const Case& c, const std::string& extra) {
  std::ostringstream o;
  o.precision(17);
  o << "{\"impl\":\"dsv4\",\"op\":\"" << c.op << "\",\"config\":\"" << c.config << "\",\"shape\":\"" << c.shape()
    << "\",\"params\":{";
  for (std::size_t i = 0; i < c.params.size(); ++i)
    o << (i ? "," : "") << "\"" << c.params[i].first << "\":" << c.params[i].second;
  o << "},\"scale\":" << c.scale << ",\"eps\":" << c.eps << ",\"limit\":" << c.limit << ",\"bytes\":" << c.bytes
    << ",\"flops\":" << c.flops << extra << "}";
  return o.str();
}

std::vector<Case> make_cases(const std::vector<std::string>& configs, std::int64_t max_tokens) {
  std::vector<Case> cases;
  for (const std::string& name : configs) {
    const dsv4::ModelConfig cfg = dsv4::builtin_config(name);
    const double d = static_cast<double>(cfg.dim);
    // The linear of a [dim, dim] weight of each kind: bf16 values, fp8 codes (one byte) with a scale a
    // 128×128 tile, fp4 codes (half a byte) with a scale a 1×32 block.
    for (const auto& [op, weight_bytes] :
         {std::pair<const char*, double>{"linear_bf16", 2.0}, {"linear_fp8", 1.0}, {"linear_fp4", 0.5}}) {
      for (std::int64_t m : {1, 16, 64, 512, 4096}) {
        if (m > max_tokens) continue;
        Case c{op, name, {{"M", m}, {"K", cfg.dim}, {"N", cfg.dim}}};
        c.bytes = 2.0 * m * d + weight_bytes * d * d + 2.0 * m * d;
        c.flops = 2.0 * m * d * d;
        cases.push_back(c);
      }
    }
    for (std::int64_t rows : {1, 64, 4096}) {
      if (rows > max_tokens) continue;
      Case c{"rmsnorm", name, {{"rows", rows}, {"dim", cfg.dim}}};
      c.eps = cfg.norm_eps;
      c.bytes = 2.0 * (2.0 * rows * d + d);
      c.flops = 4.0 * rows * d;
      cases.push_back(c);
    }
    for (std::int64_t t : {1, 64, 4096}) {
      if (t > max_tokens) continue;
      const std::int64_t h = cfg.n_heads, cdim = cfg.head_dim, w = cfg.index_topk;
      Case c{"sparse_attention",
             name,
             {{"tokens", t}, {"heads", h}, {"c", cdim}, {"width", w}, {"n_kv", kAttentionKvRows}}};
      c.scale = 1.0 / std::sqrt(static_cast<double>(cdim));  // spec 02: τ = c^(-1/2)
      c.bytes = 2.0 * (2.0 * t * h * cdim + static_cast<double>(t) * w * cdim) + 4.0 * t * w + 4.0 * h;
      c.flops = 4.0 * t * h * w * cdim;
      cases.push_back(c);
    }
    for (std::int64_t t : {1, 64}) {
      if (t > max_tokens) continue;
      const std::int64_t k = cfg.n_activated_experts, inter = cfg.moe_inter_dim;
      Case c{"moe_combine",
             name,
             {{"tokens", t}, {"dim", cfg.dim}, {"inter", inter}, {"experts", kBenchExperts}, {"k", k}}};
      c.limit = cfg.swiglu_limit;
      const double touched = static_cast<double>(std::min(t * k, kBenchExperts)) + 1.0;  // + the shared expert
      c.bytes = 2.0 * (touched * 3.0 * inter * d + 2.0 * t * d) + 12.0 * t * k;
      c.flops = 6.0 * d * inter * static_cast<double>(t * k + t);
      cases.push_back(c);
    }
  }
  return cases;
}

// Median and min µs of `runs` timed calls after `warmup` calls, with CUDA events on `stream`.
std::pair<double, double> time_us(const std::function<void()>& call, cudaStream_t stream, int warmup, int runs) {
  for (int i = 0; i < warmup; ++i) call();
  check(cudaStreamSynchronize(stream), "warm-up");
  cudaEvent_t a = nullptr, b = nullptr;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  std::vector<double> us;
  for (int i = 0; i < runs; ++i) {
    check(cudaEventRecord(a, stream), "cudaEventRecord");
    call();
    check(cudaEventRecord(b, stream), "cudaEventRecord");
    check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    us.push_back(1e3 * ms);
  }
  (void)cudaEventDestroy(a);
  (void)cudaEventDestroy(b);
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us.front()};
}

// Runs one case; returns the JSON fields of its timing and the undecided count of the last call.
std::string run_case(const Case& c, cudaStream_t s, int warmup, int runs) {
  std::pair<double, double> t;
  std::int64_t undecided = 0;
  std::string extra;  // op-specific JSON fields
  if (c.op == "linear_bf16") {
    const std::int64_t m = c.at("M"), k = c.at("K"), n = c.at("N");
    DevNormal x(m * k, 1.0, 1), w(n * k, 1.0 / std::sqrt(double(k)), 2);
    Dev<float> y(m * n);
    Dev<std::uint8_t> und(m * n);
    gpu::LinearWeightView wv{gpu::LinearKind::kBF16, n, k, w.p, nullptr, nullptr};
    t = time_us([&] { gpu::linear_device(x.p, m, wv, gpu::ScaleFormat::kUE8M0, y.p, und.p, nullptr, nullptr, s); }, s,
                warmup, runs);
    undecided = und.count_nonzero_bytes();
  } else if (c.op == "linear_fp8" || c.op == "linear_fp4") {
    // Weight codes drawn uniformly from the finite codes (e4m3: every byte but the NaNs 0x7F, 0xFF;
    // packed e2m1: any byte), scales 2^e for e uniform in [−4, 4] (e8m0 bytes 123..131).
    const bool fp8 = c.op == "linear_fp8";
    const std::int64_t m = c.at("M"), k = c.at("K"), n = c.at("N");
    std::vector<std::uint8_t> codes(fp8 ? n * k : n * k / 2),
        scales(fp8 ? ((n + 127) / 128) * (k / 128) : n * (k / 32));
    std::mt19937_64 g(9);
    for (auto& b : codes) {
      do b = static_cast<std::uint8_t>(g());
      while (fp8 && (b & 0x7F) == 0x7F);
    }
    for (auto& b : scales) b = static_cast<std::uint8_t>(123 + g() % 9);
    DevNormal x(m * k, 1.0, 1);
    Dev<std::uint8_t> dc(codes), ds(scales), und(m * n), act_codes(m * k);
    Dev<float> y(m * n), act_scales(m * (k / 128));
    gpu::LinearWeightView wv{fp8 ? gpu::LinearKind::kFP8 : gpu::LinearKind::kFP4, n, k, nullptr, dc.p, ds.p};
    t = time_us(
        [&] { gpu::linear_device(x.p, m, wv, gpu::ScaleFormat::kUE8M0, y.p, und.p, act_codes.p, act_scales.p, s); }, s,
        warmup, runs);
    undecided = und.count_nonzero_bytes();
  } else if (c.op == "rmsnorm") {
    const std::int64_t rows = c.at("rows"), dim = c.at("dim");
    DevNormal x(rows * dim, 1.0, 3), w(dim, 1.0, 4);
    Dev<float> y(rows * dim);
    Dev<std::uint8_t> und(rows);
    const float eps = static_cast<float>(c.eps);
    t = time_us([&] { gpu::rmsnorm_device(x.p, rows, dim, w.p, eps, y.p, und.p, s); }, s, warmup, runs);
    undecided = und.count_nonzero_bytes();
  } else if (c.op == "sparse_attention") {
    const std::int64_t tok = c.at("tokens"), h = c.at("heads"), cd = c.at("c"), width = c.at("width"),
                       n_kv = c.at("n_kv");
    // Each token's list: `width` distinct kv rows drawn uniformly (a top-k selection's shape).
    std::vector<std::int32_t> lists(tok * width);
    std::vector<std::int32_t> perm(n_kv);
    std::mt19937_64 g(5);
    for (std::int64_t i = 0; i < tok; ++i) {
      for (std::int64_t j = 0; j < n_kv; ++j) perm[j] = static_cast<std::int32_t>(j);
      for (std::int64_t j = 0; j < width; ++j) {
        std::swap(perm[j], perm[j + static_cast<std::int64_t>(g() % static_cast<std::uint64_t>(n_kv - j))]);
        lists[i * width + j] = perm[j];
      }
    }
    std::vector<float> sink(h);
    std::mt19937_64 gs(6);
    std::normal_distribution<float> ds(0.0F, 1.0F);
    for (auto& z : sink) z = ds(gs);
    DevNormal q(tok * h * cd, 1.0, 7), kv(n_kv * cd, 1.0, 8);
    Dev<float> dsink(sink), o(tok * h * cd);
    Dev<std::int32_t> dl(lists);
    Dev<std::uint8_t> und(tok);
    const float tau = static_cast<float>(c.scale);
    t = time_us(
        [&] { gpu::sparse_attention_device(q.p, tok, h, cd, dl.p, width, kv.p, n_kv, dsink.p, tau, o.p, und.p, s); }, s,
        warmup, runs);
    undecided = und.count_nonzero_bytes();
    // One more call counting the dots the bound left to the device's warp recompute (logits, P·V).
    Dev<std::uint64_t> counts(std::vector<std::uint64_t>{0, 0});
    gpu::sparse_attention_device(q.p, tok, h, cd, dl.p, width, kv.p, n_kv, dsink.p, tau, o.p, und.p, s, counts.p);
    check(cudaStreamSynchronize(s), "sparse_attention");
    std::vector<std::uint64_t> n(2);
    check(cudaMemcpy(n.data(), counts.p, 2 * sizeof(std::uint64_t), cudaMemcpyDeviceToHost), "cudaMemcpy");
    extra = ",\"warp_recomputed_logits\":" + std::to_string(n[0]) + ",\"warp_recomputed_pv\":" + std::to_string(n[1]) +
            ",\"logits\":" + std::to_string(tok * h * width) +
            ",\"pv_values\":" + std::to_string(tok * h * cd * ((width + 63) / 64));
  } else if (c.op == "moe_combine") {
    const std::int64_t tok = c.at("tokens"), dim = c.at("dim"), inter = c.at("inter"), e = c.at("experts"),
                       k = c.at("k");
    const double sd = 1.0 / std::sqrt(double(dim)), si = 1.0 / std::sqrt(double(inter));
    DevNormal w1(e * inter * dim, sd, 11), w3(e * inter * dim, sd, 12), w2(e * dim * inter, si, 13),
        s1(inter * dim, sd, 14), s3(inter * dim, sd, 15), s2(dim * inter, si, 16);
    // Routing: k distinct experts a token, weights uniform in [0.1, 1).
    std::vector<std::int64_t> idx(tok * k);
    std::vector<float> rw(tok * k);
    std::mt19937_64 g(17);
    std::uniform_real_distribution<float> du(0.1F, 1.0F);
    for (std::int64_t i = 0; i < tok; ++i) {
      std::vector<std::int64_t> perm(e);
      for (std::int64_t j = 0; j < e; ++j) perm[j] = j;
      for (std::int64_t j = 0; j < k; ++j) {
        std::swap(perm[j], perm[j + static_cast<std::int64_t>(g() % static_cast<std::uint64_t>(e - j))]);
        idx[i * k + j] = perm[j];
        rw[i * k + j] = du(g);
      }
    }
    DevNormal x(tok * dim, 1.0, 18);
    Dev<float> dw(rw), y(tok * dim);
    Dev<std::int64_t> di(idx);
    Dev<std::uint8_t> und(tok);
    Dev<unsigned char> ws(gpu::moe_combine_workspace_bytes(tok, k, dim, inter));
    auto view = [](const float* v, std::int64_t n, std::int64_t kk) {
      return gpu::LinearWeightView{gpu::LinearKind::kBF16, n, kk, v, nullptr, nullptr};
    };
    gpu::MoeExpertsView mv;
    mv.experts = e;
    mv.dim = dim;
    mv.inter = inter;
    mv.w1 = view(w1.p, inter, dim);
    mv.w3 = view(w3.p, inter, dim);
    mv.w2 = view(w2.p, dim, inter);
    mv.shared_w1 = view(s1.p, inter, dim);
    mv.shared_w3 = view(s3.p, inter, dim);
    mv.shared_w2 = view(s2.p, dim, inter);
    const float limit = static_cast<float>(c.limit);
    t = time_us([&] { gpu::moe_combine_device(x.p, tok, dw.p, di.p, k, mv, limit, y.p, und.p, ws.p, s); }, s, warmup,
                runs);
    undecided = und.count_nonzero_bytes();
  } else {
    throw std::logic_error("unknown op " + c.op);
  }
  std::ostringstream o;
  o.precision(6);
  o << std::fixed << ",\"median_us\":" << t.first << ",\"min_us\":" << t.second << ",\"runs\":" << runs
    << ",\"warmup\":" << warmup << ",\"undecided\":" << undecided << extra << ",\"device\":\""
    << gpu::device_description() << "\"";
  return o.str();
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::int64_t positive(const char* flag, const char* text) {
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v < 1 || v > 1000000)
    throw std::invalid_argument(std::string(flag) + " wants an integer in [1, 1000000], got '" + text + "'");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    bool list = false;
    int runs = 10, warmup = 3;
    std::int64_t max_tokens = 4096;
    std::vector<std::string> configs{"v4-flash", "v4-pro"}, ops;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> const char* {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--list") {
        list = true;
      } else if (a == "--runs") {
        runs = static_cast<int>(positive("--runs", value()));
      } else if (a == "--warmup") {
        warmup = static_cast<int>(positive("--warmup", value()));
      } else if (a == "--max-tokens") {
        max_tokens = positive("--max-tokens", value());
      } else if (a == "--configs") {
        configs = split(value());
      } else if (a == "--ops") {
        ops = split(value());
      } else {
        throw std::invalid_argument("unknown argument '" + a +
                                    "' (usage: gpu_kernel_bench [--list] [--runs N] [--warmup W] [--configs a,b] "
                                    "[--ops a,b] [--max-tokens T])");
      }
    }
    for (const std::string& op : ops) {
      if (std::find(std::begin(kOps), std::end(kOps), op) == std::end(kOps)) {
        std::string known;
        for (const char* k : kOps) known += (known.empty() ? "" : ", ") + std::string(k);
        throw std::invalid_argument("unknown op '" + op + "' (" + known + ")");
      }
    }
    std::vector<Case> cases = make_cases(configs, max_tokens);  // builtin_config throws on an unknown name
    if (!ops.empty())
      cases.erase(std::remove_if(cases.begin(), cases.end(),
                                 [&](const Case& c) { return std::find(ops.begin(), ops.end(), c.op) == ops.end(); }),
                  cases.end());
    if (list) {
      for (const Case& c : cases) std::printf("%s\n", json_line(c, "").c_str());
      return 0;
    }
    if (!gpu::gpu_available()) {
      std::fprintf(stderr, "gpu_kernel_bench: no CUDA device (dsv4::gpu::gpu_available() is false); nothing timed\n");
      return 2;
    }
    cudaStream_t stream = nullptr;
    check(cudaStreamCreate(&stream), "cudaStreamCreate");
    for (const Case& c : cases) {
      std::printf("%s\n", json_line(c, run_case(c, stream, warmup, runs)).c_str());
      std::fflush(stdout);
    }
    (void)cudaStreamDestroy(stream);
    return 0;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "gpu_kernel_bench: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_kernel_bench: %s\n", e.what());
    return 1;
  }
}
