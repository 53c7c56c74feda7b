// The contained first reading of an HDF5 file (oracle/README.md §HDF5, "Limits of libhdf5
// itself"). libhdf5 1.10.8 parses a file's internal structures without hardening: crafted files
// make it crash (a null buffer copied from after an unchecked allocation, found by fuzz_hdf5_raw)
// or loop forever (a damaged global heap). Before Hdf5File::open hands a file to libhdf5 in
// dsv4's own process, a child process reads its structure the way dsv4 will; a crash or a hang
// there becomes an InputError here, and a file that passes is then read in-process (libhdf5 is
// deterministic: the same reading of the same bytes takes the same path).
#pragma once

#include <string>

namespace dsv4::detail {

// Forks a child that, through libhdf5's C API only (so that a crash there is libhdf5's, not dsv4's
// reader code, which then runs in-process where sanitizers and fuzzers see it), opens `path`,
// visits every object, reads each dataset's type, shape, layout, attributes (strings included:
// the global heap) and the data of the small ones (at most 1 MiB each, 64 MiB in all), and exits. Throws InputError
// naming the file when the child is killed by a signal, or does not finish within the time limit (60 s, or the
// environment variable DSV4_HDF5_PROBE_SECONDS; the fuzz harnesses use 5) and is killed. Errors the child meets as
// InputErrors are left to the in-process reading, which meets them again. Inside the child it does
// nothing (no probe of the probe); std::runtime_error when no child process can be started.
void probe_hdf5_structure(const std::string& path);

}  // namespace dsv4::detail
