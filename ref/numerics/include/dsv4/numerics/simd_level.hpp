// The SIMD levels the CPU kernels are built for — the deterministic GEMM's GemmKernel and the
// metrics' MetricKernel, both enums { kAuto, kPortable, kAvx2, kAvx512 }: whether this CPU runs a
// level, the best level it runs, and the level's name for reports. One definition for every such
// kernel family.
#pragma once

namespace dsv4::simd {

// Whether the CPU reports the instruction set (false off x86).
#if defined(__x86_64__) || defined(__i386__)
inline bool cpu_has_avx2() { return __builtin_cpu_supports("avx2"); }
inline bool cpu_has_avx512f() { return __builtin_cpu_supports("avx512f"); }
#else
inline bool cpu_has_avx2() { return false; }
inline bool cpu_has_avx512f() { return false; }
#endif

// Whether this CPU runs level `k` (kAuto and kPortable: always).
template <class Level>
bool cpu_runs(Level k) {
  if (k == Level::kAvx2) return cpu_has_avx2();
  if (k == Level::kAvx512) return cpu_has_avx512f();
  return true;
}

// The widest level this CPU runs.
template <class Level>
Level best_level() {
  if (cpu_runs(Level::kAvx512)) return Level::kAvx512;
  if (cpu_runs(Level::kAvx2)) return Level::kAvx2;
  return Level::kPortable;
}

// "auto", "portable", "avx2", "avx512" ("?" for anything else).
template <class Level>
const char* level_name(Level k) {
  if (k == Level::kAuto) return "auto";
  if (k == Level::kPortable) return "portable";
  if (k == Level::kAvx2) return "avx2";
  if (k == Level::kAvx512) return "avx512";
  return "?";
}

}  // namespace dsv4::simd
