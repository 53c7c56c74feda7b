// The temporary files of atomic writes (AtomicFile, Hdf5File::create): "<target>.tmp.<pid>.<n>" next
// to the target, renamed over it on commit (issue 14 item 4).
//
// - While one exists it is registered; SIGINT, SIGTERM and SIGHUP remove every registered temporary
//   file, then the signal takes its previous action (the default: the process ends by it). The
//   handlers are installed at the first registration (a signal the process ignores stays ignored).
// - A run killed by SIGKILL cannot clean up: its temporary files stay. They are ignored (nothing
//   reads them) and removed by the next write to the same target — any "<target>.tmp.<pid>.<n>"
//   whose process no longer exists.
#pragma once

#include <string>

namespace dsv4 {

// "<target>.tmp.<this process's pid>.<n>".
std::string temp_name(const std::string& target, unsigned n);

// Registers / unregisters a temporary file for removal on a signal (at most 64 at once; beyond
// that a file is not registered and only the stale-file rule covers it).
void register_temp(const std::string& temp);
void unregister_temp(const std::string& temp);

// Removes the stale temporary files of `target` (those of processes that no longer exist); returns
// how many were removed. Never throws.
int remove_stale_temps(const std::string& target);

}  // namespace dsv4
