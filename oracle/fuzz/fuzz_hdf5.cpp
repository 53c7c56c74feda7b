// libFuzzer harness, structure-aware: the input is a small program that builds an HDF5 file with
// the C API the way a foreign writer might — datasets of many storage types (big-endian floats,
// half and bfloat16 float layouts, int16, uint32, strings, compounds), rank 0–3 shapes including
// zero dimensions, contiguous/chunked/compact/gzip layouts, written or never written, "dtype"
// attributes with chosen or arbitrary values (fixed- and variable-length), groups, soft, external
// and hard links (cycles included), names with the ".bf16" suffix — and then reads it all back
// through Hdf5File and TensorSource. Only InputError may escape.
//
// It exercises dsv4's checks on top of libhdf5, not libhdf5's parsing of damaged bytes (which
// fuzz_hdf5_raw feeds directly). Hdf5File::open forks its probe (oracle/io/src/hdf5_probe.hpp) on
// every input; its time limit is 5 s here (DSV4_HDF5_PROBE_SECONDS), under libFuzzer's -timeout.
#include <fuzzer/FuzzedDataProvider.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "dsv4/io/hdf5_file.hpp"
#include "dsv4/io/tensor_source.hpp"

namespace {

const std::string& temp_path() {
  static const std::string p = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/dsv4_fuzz_hdf5_" + std::to_string(::getpid()) + ".h5";
  }();
  return p;
}

const char* const kNames[] = {"a", "b", "g/x", "g/y.bf16", "g/h/z", "kv.bf16", "kv", "out", "g", "g/h"};
const char* const kDtypes[] = {
    "bfloat16", "bf16", "torch.bfloat16", "float16", "float8_e4m3fn", "e5m2", "float8_e8m0fnu", "float4_e2m1fn_x2",
    "float32",  "int8", "uint16",         "",        "nonsense"};

// The storage types the program can choose; built fresh (some are copies to modify).
hid_t make_type(int k) {
  switch (k) {
    case 0:
      return H5Tcopy(H5T_IEEE_F64LE);
    case 1:
      return H5Tcopy(H5T_IEEE_F32BE);
    case 2: {  // IEEE half
      const hid_t t = H5Tcopy(H5T_IEEE_F32LE);
      H5Tset_fields(t, 15, 10, 5, 0, 10);
      H5Tset_size(t, 2);
      H5Tset_ebias(t, 15);
      return t;
    }
    case 3: {  // bfloat16 layout
      const hid_t t = H5Tcopy(H5T_IEEE_F32LE);
      H5Tset_fields(t, 15, 7, 8, 0, 7);
      H5Tset_size(t, 2);
      H5Tset_ebias(t, 127);
      return t;
    }
    case 4:
      return H5Tcopy(H5T_STD_U16LE);
    case 5:
      return H5Tcopy(H5T_STD_I16BE);
    case 6:
      return H5Tcopy(H5T_STD_U8LE);
    case 7:
      return H5Tcopy(H5T_STD_I8LE);
    case 8:
      return H5Tcopy(H5T_STD_I32BE);
    case 9:
      return H5Tcopy(H5T_STD_I64LE);
    case 10:
      return H5Tcopy(H5T_STD_U32LE);
    case 11:
      return H5Tcopy(H5T_STD_U64LE);
    case 12: {
      const hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, 5);
      return t;
    }
    default: {
      const hid_t t = H5Tcreate(H5T_COMPOUND, 8);
      H5Tinsert(t, "a", 0, H5T_NATIVE_FLOAT);
      H5Tinsert(t, "b", 4, H5T_NATIVE_FLOAT);
      return t;
    }
  }
}

void build(FuzzedDataProvider& in, const std::string& path) {
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return;
  const hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  const int steps = in.ConsumeIntegralInRange(0, 10);
  for (int s = 0; s < steps && in.remaining_bytes() > 0; ++s) {
    const std::string name = std::string("/") + in.PickValueInArray(kNames);
    switch (in.ConsumeIntegralInRange(0, 7)) {
      case 0:
      case 1: {  // a dataset
        const hid_t t = make_type(in.ConsumeIntegralInRange(0, 13));
        const int rank = in.ConsumeIntegralInRange(0, 3);
        std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
        hsize_t n = 1;
        for (auto& d : dims) {
          d = in.ConsumeIntegralInRange<hsize_t>(0, 5);
          n *= d;
        }
        const hid_t sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims.data(), nullptr);
        const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        const int layout = in.ConsumeIntegralInRange(0, 3);
        bool zero = false;
        for (hsize_t d : dims) zero = zero || d == 0;
        if (layout >= 2 && rank > 0 && !zero) {
          std::vector<hsize_t> chunk(dims.size(), 1);
          H5Pset_chunk(dcpl, rank, chunk.data());
          if (layout == 3) H5Pset_deflate(dcpl, 1);
        } else if (layout == 1) {
          H5Pset_layout(dcpl, H5D_COMPACT);
        }
        const hid_t ds = H5Dcreate2(f, name.c_str(), t, sp, lcpl, dcpl, H5P_DEFAULT);
        if (ds >= 0 && in.ConsumeBool()) {
          const std::size_t bytes = static_cast<std::size_t>(n) * H5Tget_size(t);
          std::vector<std::uint8_t> buf = in.ConsumeBytes<std::uint8_t>(bytes);
          buf.resize(bytes);
          if (bytes) H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());  // raw bits, no conversion
        }
        if (ds >= 0) H5Dclose(ds);
        H5Pclose(dcpl);
        H5Sclose(sp);
        H5Tclose(t);
        break;
      }
      case 2: {  // a "dtype" attribute, fixed or variable length
        const hid_t o = H5Oopen(f, name.c_str(), H5P_DEFAULT);
        if (o < 0) break;
        std::string v = in.ConsumeBool() ? std::string(in.PickValueInArray(kDtypes)) : in.ConsumeRandomLengthString(24);
        H5Adelete(o, "dtype");
        const hid_t t = H5Tcopy(H5T_C_S1);
        const hid_t sp = H5Screate(H5S_SCALAR);
        if (in.ConsumeBool()) {
          H5Tset_size(t, H5T_VARIABLE);
          const hid_t a = H5Acreate2(o, "dtype", t, sp, H5P_DEFAULT, H5P_DEFAULT);
          const char* p = v.c_str();
          if (a >= 0) {
            H5Awrite(a, t, &p);
            H5Aclose(a);
          }
        } else {
          v.resize(std::max<std::size_t>(v.size(), 1));
          H5Tset_size(t, v.size());
          const hid_t a = H5Acreate2(o, "dtype", t, sp, H5P_DEFAULT, H5P_DEFAULT);
          if (a >= 0) {
            H5Awrite(a, t, v.data());
            H5Aclose(a);
          }
        }
        H5Sclose(sp);
        H5Tclose(t);
        H5Oclose(o);
        break;
      }
      case 3: {  // a numeric attribute, maybe a vector
        const hid_t o = H5Oopen(f, name.c_str(), H5P_DEFAULT);
        if (o < 0) break;
        const hsize_t n = in.ConsumeIntegralInRange<hsize_t>(0, 4);
        const hid_t sp = in.ConsumeBool() ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, nullptr);
        const bool integer = in.ConsumeBool();
        const std::string an = in.ConsumeBool() ? "dtype" : "x";
        H5Adelete(o, an.c_str());
        const hid_t a =
            H5Acreate2(o, an.c_str(), integer ? H5T_STD_U64LE : H5T_IEEE_F64BE, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
          std::vector<std::uint64_t> v(4);
          for (auto& x : v) x = in.ConsumeIntegral<std::uint64_t>();
          H5Awrite(a, integer ? H5T_NATIVE_UINT64 : H5T_NATIVE_DOUBLE, v.data());
          H5Aclose(a);
        }
        H5Sclose(sp);
        H5Oclose(o);
        break;
      }
      case 4:
        H5Gclose(H5Gcreate2(f, name.c_str(), lcpl, H5P_DEFAULT, H5P_DEFAULT));
        break;
      case 5:
        H5Lcreate_soft(in.PickValueInArray(kNames), f, name.c_str(), lcpl, H5P_DEFAULT);
        break;
      case 6:
        H5Lcreate_external("elsewhere.h5", "/x", f, name.c_str(), lcpl, H5P_DEFAULT);
        break;
      default:
        H5Lcreate_hard(f, (std::string("/") + in.PickValueInArray(kNames)).c_str(), f, name.c_str(), lcpl, H5P_DEFAULT);
        break;
    }
  }
  H5Pclose(lcpl);
  H5Fclose(f);
}

void read_all(const std::string& path) {
  const dsv4::Hdf5File f = dsv4::Hdf5File::open(path);
  for (const auto& g : {"/", "g", "g/h"}) {
    try {
      f.list_children(g);
    } catch (const dsv4::InputError&) {
    }
  }
  for (const auto& n : f.list_datasets()) {
    try {
      f.info(n);
      f.read(n, {.max_bytes = 1 << 20});
    } catch (const dsv4::InputError&) {
    }
    try {
      for (const auto& a : f.attr_names(n)) {
        try {
          f.attr_string(n, a);
        } catch (const dsv4::InputError&) {
        }
        try {
          f.attr_int64s(n, a);
        } catch (const dsv4::InputError&) {
        }
        try {
          f.attr_double(n, a);
        } catch (const dsv4::InputError&) {
        }
      }
    } catch (const dsv4::InputError&) {
    }
  }
}

}  // namespace

// The probe's time limit under libFuzzer's -timeout of 10 s (.ci/fuzz).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ::setenv("DSV4_HDF5_PROBE_SECONDS", "5", 0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  FuzzedDataProvider in(data, size);
  const std::string& path = temp_path();
  build(in, path);
  try {
    read_all(path);
  } catch (const dsv4::InputError&) {
  }
  try {
    const auto s = dsv4::TensorSource::open(path);
    for (const auto& n : s->names()) {
      try {
        s->read(n);
      } catch (const dsv4::InputError&) {
      }
    }
  } catch (const dsv4::InputError&) {
  }
  std::remove(path.c_str());
  return 0;
}
