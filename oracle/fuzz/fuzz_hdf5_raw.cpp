// libFuzzer harness: any bytes as an HDF5 file, read through Hdf5File and TensorSource. Only
// InputError may escape dsv4's code. The parsing of the file's internal structures is libhdf5's
// (uninstrumented, not hardened against crafted files: see oracle/README.md): Hdf5File::open first
// reads the file in a child process (oracle/io/src/hdf5_probe.hpp), so a libhdf5 crash or hang on a
// crafted file is an InputError here, and a crash in the parent is a finding of dsv4's own. The
// probe's time limit is 5 s here (DSV4_HDF5_PROBE_SECONDS), under libFuzzer's -timeout. Seeds:
// oracle/fuzz/corpus/hdf5_raw/ (two of them crash libhdf5 itself).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/tensor_source.hpp"

// The probe's time limit under libFuzzer's -timeout of 10 s (.ci/fuzz).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ::setenv("DSV4_HDF5_PROBE_SECONDS", "5", 0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/dsv4_fuzz_hdf5_raw_" + std::to_string(::getpid()) + ".h5";
  }();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    const dsv4::Hdf5File f = dsv4::Hdf5File::open(path);
    for (const auto& n : f.list_datasets()) {
      try {
        f.read(n, {.max_bytes = 1 << 20});
        for (const auto& a : f.attr_names(n)) f.attr_string(n, a);
      } catch (const dsv4::InputError&) {
      }
    }
  } catch (const dsv4::InputError&) {
  }
  std::remove(path.c_str());
  return 0;
}
