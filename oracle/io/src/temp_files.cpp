// temp_files.hpp: a signal-safe registry of temporary files and the stale-file sweep.
#include "dsv4/io/temp_files.hpp"

#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <system_error>

namespace dsv4 {

namespace {

// One slot per registered file. state: 0 free, 1 being written, 2 holds a path. The handler reads
// only slots in state 2 and calls only unlink (async-signal-safe).
struct Slot {
  std::atomic<int> state{0};
  std::array<char, 4096> path{};
};
std::array<Slot, 64> g_slots;

constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};
std::array<struct sigaction, kSignals.size()> g_previous{};

void on_signal(int sig) {
  for (Slot& s : g_slots)
    if (s.state.load() == 2) ::unlink(s.path.data());
  // The previous action: restore it and deliver the signal again.
  for (std::size_t i = 0; i < kSignals.size(); ++i) {
    if (kSignals[i] != sig) continue;
    ::sigaction(sig, &g_previous[i], nullptr);
  }
  ::raise(sig);
}

void install_handlers() {
  for (std::size_t i = 0; i < kSignals.size(); ++i) {
    struct sigaction now {};
    if (::sigaction(kSignals[i], nullptr, &g_previous[i]) != 0) continue;
    // Only over the default action: an ignored signal stays ignored, another handler is left alone.
    if ((g_previous[i].sa_flags & SA_SIGINFO) != 0 || g_previous[i].sa_handler != SIG_DFL) continue;
    now.sa_handler = on_signal;
    sigemptyset(&now.sa_mask);
    now.sa_flags = SA_RESETHAND;
    ::sigaction(kSignals[i], &now, nullptr);
  }
}

}  // namespace

std::string temp_name(const std::string& target, unsigned n) {
  return target + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(n);
}

void register_temp(const std::string& temp) {
  static std::once_flag once;
  std::call_once(once, install_handlers);
  if (temp.size() + 1 > Slot{}.path.size()) return;
  for (Slot& s : g_slots) {
    int expected = 0;
    if (!s.state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(s.path.data(), temp.c_str(), temp.size() + 1);
    s.state.store(2);
    return;
  }
}

void unregister_temp(const std::string& temp) {
  for (Slot& s : g_slots) {
    if (s.state.load() != 2 || temp != s.path.data()) continue;
    int expected = 2;
    if (s.state.compare_exchange_strong(expected, 1)) s.state.store(0);
    return;
  }
}

int remove_stale_temps(const std::string& target) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path t(target);
  const fs::path dir = t.has_parent_path() ? t.parent_path() : fs::path(".");
  const std::string prefix = t.filename().string() + ".tmp.";
  int removed = 0;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    // "<pid>.<n>"
    const char* p = name.data() + prefix.size();
    const char* last = name.data() + name.size();
    long pid = 0;
    unsigned n = 0;
    auto r1 = std::from_chars(p, last, pid);
    if (r1.ec != std::errc() || r1.ptr == last || *r1.ptr != '.' || pid <= 0) continue;
    auto r2 = std::from_chars(r1.ptr + 1, last, n);
    if (r2.ec != std::errc() || r2.ptr != last) continue;
    if (pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // running (or not ours to know)
    std::error_code rm;
    if (it->is_regular_file(rm) && fs::remove(it->path(), rm)) ++removed;
  }
  return removed;
}

}  // namespace dsv4
