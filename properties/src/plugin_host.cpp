// The plugin's process (plugin.hpp, issue 14): dsv4 forks one child per plugin, the child loads the
// library and serves calls over a socket pair until dsv4 closes it. The parent never runs plugin
// code: it sends a call's inputs, waits for the reply under a wall-clock limit and reads the
// outputs back; a child that dies, exits or does not answer in time is reaped (killed) and
// described, and the next call starts a fresh one (one child serves every case of a run until a
// fault — properties/README.md §Isolation has the measured cost).
//
// Protocol (native byte order, one process pair):
//   child → parent, once: Hello {magic, status (0 loaded, 1 refused), components, text length},
//     then one byte per component (1 = provided), then the text (the table's name, or why the
//     library was refused);
//   parent → child, per call: Request {magic, op, n_in, n_out, n_int, n_float}, then n_in + n_out
//     sizes (uint64), n_int int64, n_float float, then every input's bytes;
//   child → parent, per call: Reply {magic, rc, errno after the call, detail length}, the detail
//     text (writes outside the arrays found by the canaries; empty when none), then every
//     output's bytes — or, from the child's fatal-signal handler, Fault {magic, signal, errno,
//     text length} and the text (which array a faulting address belongs to) before it dies.
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "dsv4/properties/plugin.hpp"

namespace dsv4::props {

namespace {

constexpr std::uint32_t kHelloMagic = 0x6f6c6568;    // "helo"
constexpr std::uint32_t kRequestMagic = 0x6c6c6163;  // "call"
constexpr std::uint32_t kReplyMagic = 0x656e6f64;    // "done"
constexpr std::uint32_t kFaultMagic = 0x746c6166;    // "falt"

// Every message of the child starts with a Head: hello {kHelloMagic, status, components, text
// length}, reply {kReplyMagic, rc, errno, detail length}, fault {kFaultMagic, signal, errno, text
// length}.
struct Head {
  std::uint32_t magic;
  std::int32_t a, b;
  std::uint32_t len;
};
struct Request {
  std::uint32_t magic, op, n_in, n_out, n_int, n_float;
  std::uint64_t total;  // bytes after this header: sizes, scalars, inputs
};

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// The calls: per component, the names of its arrays (for messages) and how the child invokes the
// table's function from the transported arrays and scalars.

struct OpKind {
  std::vector<const char*> in_names, out_names;
  int (*invoke)(const dsv4_plugin& t, const std::byte* const* in, std::byte* const* out, const std::int64_t* i,
                const float* f);
};

template <class T>
const T* cin(const std::byte* p) {
  return reinterpret_cast<const T*>(p);
}
template <class T>
T* cout(std::byte* p) {
  return reinterpret_cast<T*>(p);
}

const std::vector<OpKind>& op_kinds() {
  static const std::vector<OpKind> kinds = {
      {{"x"},
       {"codes", "scales"},
       [](const dsv4_plugin& t, const std::byte* const* in, std::byte* const* out, const std::int64_t* i,
          const float*) {
         return t.act_quant(cin<float>(in[0]), i[0], i[1], static_cast<std::int32_t>(i[2]),
                            static_cast<std::int32_t>(i[3]), cout<std::uint8_t>(out[0]), cout<float>(out[1]));
       }},
      {{"x"},
       {"packed", "scales"},
       [](const dsv4_plugin& t, const std::byte* const* in, std::byte* const* out, const std::int64_t* i,
          const float*) {
         return t.fp4_act_quant(cin<float>(in[0]), i[0], i[1], cout<std::uint8_t>(out[0]), cout<std::uint8_t>(out[1]));
       }},
      {{"mixes", "base", "scale"},
       {"pre", "post", "comb"},
       [](const dsv4_plugin& t, const std::byte* const* in, std::byte* const* out, const std::int64_t* i,
          const float* f) {
         return t.hc_split_sinkhorn(cin<float>(in[0]), i[0], static_cast<std::int32_t>(i[1]), cin<float>(in[1]),
                                    cin<float>(in[2]), static_cast<std::int32_t>(i[2]), f[0], cout<float>(out[0]),
                                    cout<float>(out[1]), cout<float>(out[2]));
       }},
      {{"q", "kv", "sink", "indices"},
       {"out"},
       [](const dsv4_plugin& t, const std::byte* const* in, std::byte* const* out, const std::int64_t* i,
          const float* f) {
         return t.sparse_attention(cin<float>(in[0]), i[0], i[1], i[2], cin<float>(in[1]), i[3], cin<float>(in[2]),
                                   cin<std::int32_t>(in[3]), i[4], f[0], cout<float>(out[0]));
       }},
      {{"x", "wkv", "wgate", "ape", "norm", "cos", "sin"},
       {"entries"},
       [](const dsv4_plugin& t, const std::byte* const* in, std::byte* const* out, const std::int64_t* i,
          const float* f) {
         return t.compressor_prefill(cin<float>(in[0]), i[0], i[1], static_cast<std::int32_t>(i[2]), i[3], i[4],
                                     static_cast<std::int32_t>(i[5]), f[0], cin<float>(in[1]), cin<float>(in[2]),
                                     cin<float>(in[3]), cin<float>(in[4]), cin<float>(in[5]), cin<float>(in[6]),
                                     cout<float>(out[0]));
       }},
  };
  return kinds;
}

// ---------------------------------------------------------------------------------------------
// Blocking I/O of the child (the parent closing its end ends the child).

bool child_read(int fd, void* p, std::size_t n) {
  auto* b = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = ::read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

bool child_write(int fd, const void* p, std::size_t n) {
  const auto* b = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t r = ::send(fd, b, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    b += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Guarded arrays in the child: [inaccessible page][canary band | array | canary slack][inaccessible
// page]. The array ends 16-aligned at most 15 bytes before the second inaccessible page; inputs
// are read-only. A write into a canary band is found after the call; an access to an inaccessible
// page or a write to an input faults at once (the signal handler names the array).

constexpr unsigned char kCanary = 0xA5;

struct Guarded {
  std::byte* base = nullptr;
  std::size_t map_len = 0, page = 0;
  std::byte* data = nullptr;  // the array
  std::size_t bytes = 0;
  std::byte* lo = nullptr;  // first accessible byte
  std::byte* hi = nullptr;  // one past the last accessible byte
};

Guarded guarded_alloc(std::size_t bytes) {
  Guarded g;
  g.page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t data_len = (std::max<std::size_t>(bytes, 1) + 15) / 16 * 16;
  const std::size_t pages = (data_len + g.page - 1) / g.page;
  g.map_len = (pages + 2) * g.page;
  void* m = ::mmap(nullptr, g.map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return Guarded{};
  g.base = static_cast<std::byte*>(m);
  g.lo = g.base + g.page;
  g.hi = g.lo + pages * g.page;
  if (::mprotect(g.lo, pages * g.page, PROT_READ | PROT_WRITE) != 0) {
    ::munmap(m, g.map_len);
    return Guarded{};
  }
  g.data = g.hi - data_len;
  g.bytes = bytes;
  std::memset(g.lo, kCanary, static_cast<std::size_t>(g.hi - g.lo));
  return g;
}

void guarded_free(Guarded& g) {
  if (g.base != nullptr) ::munmap(g.base, g.map_len);
  g = Guarded{};
}

// `g` made ready for an array of `bytes` (writable, canaries around it): the mapping of the
// previous call is reused when it is large enough (no system call but an mprotect for a former
// input), else replaced by one twice as large as needed (fewer remaps while sizes vary).
bool guarded_fit(Guarded& g, std::size_t bytes) {
  const std::size_t data_len = (std::max<std::size_t>(bytes, 1) + 15) / 16 * 16;
  if (g.base == nullptr || static_cast<std::size_t>(g.hi - g.lo) < data_len) {
    guarded_free(g);
    g = guarded_alloc(2 * data_len);
    if (g.base == nullptr) return false;
  }
  g.data = g.hi - data_len;
  g.bytes = bytes;
  std::memset(g.lo, kCanary, static_cast<std::size_t>(g.data - g.lo));
  std::memset(g.data + bytes, kCanary, data_len - bytes);
  return true;
}

// The bytes of [from, to) that are no longer the canary: {first offset, count} or count 0.
std::pair<std::size_t, std::size_t> damaged(const std::byte* from, const std::byte* to) {
  std::size_t first = 0, count = 0;
  for (const std::byte* p = from; p < to; ++p) {
    if (static_cast<unsigned char>(*p) == kCanary) continue;
    if (count == 0) first = static_cast<std::size_t>(p - from);
    ++count;
  }
  return {first, count};
}

// What the child's fatal-signal handler needs, set before each call (no allocation in the handler).
struct HandlerRegion {
  std::uintptr_t lo, hi;  // [lo, hi)
  const char* what;       // "an access past the end of", … (then kind and name)
  const char* kind;       // "input", "output"
  const char* name;
};
constexpr int kMaxRegions = 64;
HandlerRegion g_regions[kMaxRegions];
volatile sig_atomic_t g_region_count = 0;
int g_handler_fd = -1;

// Appends a NUL-terminated string to buf (async-signal-safe).
std::size_t append(char* buf, std::size_t at, std::size_t cap, const char* s) {
  while (*s != '\0' && at + 1 < cap) buf[at++] = *s++;
  buf[at] = '\0';
  return at;
}

void fatal_signal(int sig, siginfo_t* info, void*) {
  const int err = errno;
  char text[512];
  std::size_t n = 0;
  text[0] = '\0';
  const bool addr_signal = sig == SIGSEGV || sig == SIGBUS;
  if (addr_signal && info != nullptr) {
    const auto a = reinterpret_cast<std::uintptr_t>(info->si_addr);
    for (int r = 0; r < g_region_count; ++r) {
      if (a >= g_regions[r].lo && a < g_regions[r].hi) {
        n = append(text, n, sizeof text, g_regions[r].what);
        n = append(text, n, sizeof text, " ");
        n = append(text, n, sizeof text, g_regions[r].kind);
        n = append(text, n, sizeof text, " ");
        n = append(text, n, sizeof text, g_regions[r].name);
        break;
      }
    }
    if (n == 0 && a < 4096) n = append(text, n, sizeof text, "access to a null pointer");
  }
  if (g_handler_fd >= 0) {
    const Head h{kFaultMagic, sig, err, static_cast<std::uint32_t>(n)};
    (void)!::send(g_handler_fd, &h, sizeof h, MSG_NOSIGNAL);
    if (n > 0) (void)!::send(g_handler_fd, text, n, MSG_NOSIGNAL);
  }
  // Die of the same signal (the default action; the fault recurs or abort re-raises).
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install_fatal_handlers() {
  static char alt_stack[64 * 1024];
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof alt_stack;
  ::sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_sigaction = fatal_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  ::sigemptyset(&sa.sa_mask);
  for (int s : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGTRAP, SIGSYS}) ::sigaction(s, &sa, nullptr);
}

// The address space the process holds now (VmSize of /proc/self/status), in bytes; 0 if unknown.
std::uint64_t address_space_now() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  std::uint64_t kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "VmSize:", 7) == 0) {
      kb = std::strtoull(line + 7, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return kb * 1024;
}

void send_hello(int fd, std::uint32_t status, const std::vector<bool>& provided, const std::string& text) {
  const Head h{kHelloMagic, static_cast<std::int32_t>(status), static_cast<std::int32_t>(provided.size()),
               static_cast<std::uint32_t>(text.size())};
  std::vector<char> bytes(provided.begin(), provided.end());
  if (!child_write(fd, &h, sizeof h) || !child_write(fd, bytes.data(), bytes.size()) ||
      !child_write(fd, text.data(), text.size()))
    ::_exit(0);
}

// The child: loads the plugin, then serves calls until the parent closes the socket.
[[noreturn]] void child_main(int fd, const std::string& path, const PluginLimits& limits) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  ::dup2(STDERR_FILENO, STDOUT_FILENO);  // a plugin's prints never reach dsv4's stdout (--json)
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
  if (limits.memory_mb > 0) {
    const std::uint64_t now = address_space_now();
    const auto cap = static_cast<rlim_t>(now + static_cast<std::uint64_t>(limits.memory_mb) * 1024 * 1024);
    const rlimit as{cap, cap};
    ::setrlimit(RLIMIT_AS, &as);
  }
  g_handler_fd = fd;
  install_fatal_handlers();

  // Load (constructors run here: a crash or exit in one is the child's, reported as the load's).
  const std::vector<PluginComponent>& comps = plugin_components();
  std::vector<bool> provided(comps.size(), false);
  const std::string open_path = path.find('/') == std::string::npos ? "./" + path : path;
  void* handle = ::dlopen(open_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  const auto refuse = [&](const std::string& why) {
    send_hello(fd, 1, provided, why);
    ::_exit(0);
  };
  if (handle == nullptr) {
    const char* err = ::dlerror();
    refuse(path + ": not a loadable shared library (" + (err ? err : "dlopen failed") + ")");
  }
  void* sym = ::dlsym(handle, DSV4_PLUGIN_ENTRY_SYMBOL);
  if (sym == nullptr) refuse(path + ": no symbol " DSV4_PLUGIN_ENTRY_SYMBOL " (not a dsv4 plugin?)");
  const dsv4_plugin* table = reinterpret_cast<dsv4_plugin_entry_fn>(sym)();
  if (table == nullptr) refuse(path + ": " DSV4_PLUGIN_ENTRY_SYMBOL "() returned a null table");
  if (table->abi_version != DSV4_PLUGIN_ABI_VERSION)
    refuse(path + ": plugin ABI version " + std::to_string(table->abi_version) + ", this dsv4 supports version " +
           std::to_string(DSV4_PLUGIN_ABI_VERSION));
  if (table->struct_size < sizeof(dsv4_plugin))
    refuse(path + ": plugin table has " + std::to_string(table->struct_size) + " bytes, ABI version " +
           std::to_string(DSV4_PLUGIN_ABI_VERSION) + " needs " + std::to_string(sizeof(dsv4_plugin)));
  for (std::size_t c = 0; c < comps.size(); ++c) provided[c] = comps[c].provided_by(*table);
  const std::string table_name = table->name != nullptr && table->name[0] != '\0'
                                     ? std::string(table->name)
                                     : std::filesystem::path(path).filename().string();
  send_hello(fd, 0, provided, table_name);

  const std::vector<OpKind>& kinds = op_kinds();
  std::vector<Guarded> bufs;          // one per array of a call, reused by the next calls
  std::vector<std::byte> msg, reply;  // a request after its header; a reply (reused)
  for (;;) {
    Request rq{};
    if (!child_read(fd, &rq, sizeof rq) || rq.magic != kRequestMagic) ::_exit(0);
    if (rq.op >= kinds.size() || rq.n_in != kinds[rq.op].in_names.size() || rq.n_out != kinds[rq.op].out_names.size() ||
        rq.n_int > 16 || rq.n_float > 16 || rq.total > (std::uint64_t{1} << 40))
      ::_exit(3);
    const OpKind& k = kinds[rq.op];
    msg.resize(rq.total);
    if (!child_read(fd, msg.data(), msg.size())) ::_exit(0);
    const std::size_t n_bufs = rq.n_in + rq.n_out;
    std::vector<std::uint64_t> sizes(n_bufs);
    std::vector<std::int64_t> ints(std::max<std::uint32_t>(rq.n_int, 1));
    std::vector<float> floats(std::max<std::uint32_t>(rq.n_float, 1));
    std::size_t at = 0;
    const auto take = [&](void* p, std::size_t n) {
      if (at + n > msg.size()) ::_exit(3);
      std::memcpy(p, msg.data() + at, n);
      at += n;
    };
    take(sizes.data(), n_bufs * sizeof(std::uint64_t));
    take(ints.data(), rq.n_int * sizeof(std::int64_t));
    take(floats.data(), rq.n_float * sizeof(float));
    if (bufs.size() < n_bufs) bufs.resize(n_bufs);
    std::vector<const std::byte*> in(rq.n_in), pristine(rq.n_in);
    std::vector<std::byte*> out(rq.n_out);
    int regions = 0;
    for (std::size_t b = 0; b < n_bufs; ++b) {
      Guarded& g = bufs[b];
      if (!guarded_fit(g, sizes[b])) ::_exit(4);
      const bool is_in = b < rq.n_in;
      const char* name = is_in ? k.in_names[b] : k.out_names[b - rq.n_in];
      if (is_in) {
        pristine[b] = msg.data() + at;
        take(g.data, g.bytes);
        in[b] = g.data;
      } else {
        std::memset(g.data, 0xFF, g.bytes);  // NaN floats, 0xFF codes: never an accidental right answer
        out[b - rq.n_in] = g.data;
      }
      const auto lo = reinterpret_cast<std::uintptr_t>(g.base), page = static_cast<std::uintptr_t>(g.page);
      const auto data_hi = reinterpret_cast<std::uintptr_t>(g.hi);
      const char* kind = is_in ? "input" : "output";
      g_regions[regions++] = {lo, lo + page, "an access before the start of", kind, name};
      g_regions[regions++] = {data_hi, data_hi + page, "an access past the end of", kind, name};
    }
    g_region_count = regions;

    errno = 0;
    const int rc = k.invoke(*table, in.data(), out.data(), ints.data(), floats.data());
    const int err = errno;
    g_region_count = 0;

    // Writes outside the outputs: into the canary bands of any array, or into an input (const in
    // the ABI: compared with the bytes received).
    std::string detail;
    const auto note = [&detail](const std::string& what) { detail += (detail.empty() ? "" : "; ") + what; };
    for (std::size_t b = 0; b < n_bufs; ++b) {
      const Guarded& g = bufs[b];
      const bool is_in = b < rq.n_in;
      const std::string name =
          std::string(is_in ? "input " : "output ") + (is_in ? k.in_names[b] : k.out_names[b - rq.n_in]);
      const auto [fb, nb] = damaged(g.lo, g.data);
      const auto [fa, na] = damaged(g.data + g.bytes, g.hi);
      if (na > 0)
        note("wrote " + std::to_string(na) + " byte(s) past the end of " + name + " (the first at byte " +
             std::to_string(g.bytes + fa) + " of a " + std::to_string(g.bytes) + "-byte array)");
      if (nb > 0) note("wrote " + std::to_string(nb) + " byte(s) before the start of " + name);
      if (is_in && std::memcmp(g.data, pristine[b], g.bytes) != 0)
        note("wrote into " + name + " (inputs are const in the ABI)");
    }
    std::size_t out_bytes_total = 0;
    for (std::size_t b = rq.n_in; b < n_bufs; ++b) out_bytes_total += bufs[b].bytes;
    const Head rp{kReplyMagic, rc, err, static_cast<std::uint32_t>(detail.size())};
    reply.resize(sizeof rp + detail.size() + out_bytes_total);
    std::size_t w = 0;
    const auto put = [&](const void* p, std::size_t n) {
      std::memcpy(reply.data() + w, p, n);
      w += n;
    };
    put(&rp, sizeof rp);
    put(detail.data(), detail.size());
    for (std::size_t b = rq.n_in; b < n_bufs; ++b) put(bufs[b].data, bufs[b].bytes);
    if (!child_write(fd, reply.data(), reply.size())) ::_exit(0);
  }
}

// ---------------------------------------------------------------------------------------------
// The parent's I/O: non-blocking, every wait bounded by the call's deadline.

enum class Io { kOk, kClosed, kTimeout };

int ms_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

Io wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, ms_left(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Io::kClosed;
    if (r == 0) return Io::kTimeout;
    return Io::kOk;
  }
}

Io parent_write(int fd, const void* p, std::size_t n, Clock::time_point deadline) {
  const auto* b = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t r = ::send(fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r > 0) {
      b += r;
      n -= static_cast<std::size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const Io w = wait_fd(fd, POLLOUT, deadline);
      if (w != Io::kOk) return w;
      continue;
    }
    return Io::kClosed;
  }
  return Io::kOk;
}

Io parent_read(int fd, void* p, std::size_t n, Clock::time_point deadline) {
  auto* b = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = ::recv(fd, b, n, MSG_DONTWAIT);
    if (r > 0) {
      b += r;
      n -= static_cast<std::size_t>(r);
      continue;
    }
    if (r == 0) return Io::kClosed;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      const Io w = wait_fd(fd, POLLIN, deadline);
      if (w != Io::kOk) return w;
      continue;
    }
    return Io::kClosed;
  }
  return Io::kOk;
}

std::string signal_text(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  const char* desc = ::strsignal(sig);
  return std::string("signal ") + (abbrev != nullptr ? std::string("SIG") + abbrev : std::to_string(sig)) + " (" +
         (desc != nullptr ? desc : "unknown") + ")";
}

std::string dims(std::initializer_list<std::int64_t> d) {
  std::string s = "[";
  for (const std::int64_t x : d) s += (s.size() > 1 ? ", " : "") + std::to_string(x);
  return s + "]";
}

template <class T>
std::span<const std::byte> in_bytes(const T* p, std::int64_t n) {
  return {reinterpret_cast<const std::byte*>(p), static_cast<std::size_t>(std::max<std::int64_t>(n, 0)) * sizeof(T)};
}
template <class T>
std::span<std::byte> out_bytes(T* p, std::int64_t n) {
  return {reinterpret_cast<std::byte*>(p), static_cast<std::size_t>(std::max<std::int64_t>(n, 0)) * sizeof(T)};
}

// A call's identity: FNV-1a over its operation, scalars and input bytes (for the fault memo).
std::string call_key(const Plugin::Call& c) {
  std::uint64_t h = 1469598103934665603ull;
  const auto mix = [&h](const void* p, std::size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  };
  mix(&c.op, sizeof c.op);
  mix(c.ints.data(), c.ints.size() * sizeof(std::int64_t));
  mix(c.floats.data(), c.floats.size() * sizeof(float));
  for (const auto& b : c.in) {
    const std::uint64_t n = b.size();
    mix(&n, sizeof n);
    mix(b.data(), b.size());
  }
  for (const auto& b : c.out) {
    const std::uint64_t n = b.size();
    mix(&n, sizeof n);
  }
  return std::to_string(h) + ":" + c.shape;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string PluginFault::text() const {
  std::string s = stage + ": the plugin's process " + what;
  if (!shape.empty()) s += "; case " + shape;
  return s;
}

const PluginComponent* find_plugin_component(const std::string& name) {
  for (const auto& c : plugin_components()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

Plugin::Plugin(const std::string& path, PluginLimits limits) : path_(path), limits_(limits) {
  if (!std::filesystem::exists(path)) throw PluginLoadError(path + ": no such file");
  if (limits_.timeout_ms <= 0) throw std::invalid_argument("plugin timeout must be positive");
  if (limits_.memory_mb < 0) throw std::invalid_argument("plugin memory limit must be ≥ 0");
  start();
}

Plugin::~Plugin() { stop(); }

std::string Plugin::name() const { return name_; }

bool Plugin::provides(const std::string& component) const {
  const auto& comps = plugin_components();
  for (std::size_t c = 0; c < comps.size() && c < provided_.size(); ++c)
    if (comps[c].name == component) return provided_[c];
  return false;
}

void Plugin::stop() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (pid_ > 0) {
    ::kill(-pid_, SIGKILL);  // its process group: anything the plugin started too
    ::kill(pid_, SIGKILL);
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
  }
  pid_ = -1;
}

void Plugin::fail(PluginFault f) {
  stop();
  if (!current_key_.empty()) fault_memo_[current_key_] = f;
  faults_.push_back(f);
  throw PluginFaultError(std::move(f));
}

PluginFault Plugin::ended(const std::string& stage, const std::string& context) {
  PluginFault f;
  f.stage = stage;
  // The socket closed: the child is ending. Reap it (bounded: a child that closed the socket but
  // lives on is killed after the call's time limit).
  int st = 0;
  const auto deadline = Clock::now() + std::chrono::milliseconds(limits_.timeout_ms);
  pid_t r = 0;
  while ((r = ::waitpid(pid_, &st, WNOHANG)) == 0 && Clock::now() < deadline) ::usleep(200);
  if (r == 0) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    f.kind = "protocol";
    f.what = "closed its connection without replying (and was killed)";
  } else if (r > 0 && WIFSIGNALED(st)) {
    f.kind = "signal";
    f.what = "was killed by " + signal_text(WTERMSIG(st));
  } else if (r > 0 && WIFEXITED(st)) {
    f.kind = "exit";
    f.what = "exited with status " + std::to_string(WEXITSTATUS(st)) +
             (context.empty() ? " before replying (a plugin's function must return)" : "");
  } else {
    f.kind = "protocol";
    f.what = "ended without replying";
  }
  pid_ = -1;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  f.what += context;
  if (!pending_detail_.empty()) f.what += ": " + pending_detail_;
  if (pending_enomem_) {
    f.kind = "memory";
    f.what += " after a memory request failed (ENOMEM): over the memory limit of " + std::to_string(limits_.memory_mb) +
              " MiB (--memory-mb)";
  }
  pending_detail_.clear();
  pending_enomem_ = false;
  return f;
}

namespace {

// Reads the child's next message head. A fault record (from the child's signal handler) is read
// whole — its text into `fault_text`, whether errno was ENOMEM into `enomem` — and reported as
// kClosed: the child is dying.
Io read_head(int fd, Head& h, Clock::time_point deadline, std::string& fault_text, bool& enomem) {
  const Io io = parent_read(fd, &h, sizeof h, deadline);
  if (io != Io::kOk || h.magic != kFaultMagic) return io;
  std::string text(std::min<std::uint32_t>(h.len, 4096), '\0');
  if (parent_read(fd, text.data(), text.size(), deadline) == Io::kOk) fault_text = text;
  enomem = h.b == ENOMEM;
  return Io::kClosed;
}

}  // namespace

void Plugin::start() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
  std::fflush(nullptr);  // nothing buffered is written twice by a child that ends through exit()
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(sv[0]);
    ::close(sv[1]);
    throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::close(sv[0]);
    ::setpgid(0, 0);
    child_main(sv[1], path_, limits_);
  }
  ::setpgid(pid, pid);  // either side may set it first: the same group
  ::close(sv[1]);
  pid_ = pid;
  fd_ = sv[0];
  ++started_;
  pending_detail_.clear();
  pending_enomem_ = false;

  const auto deadline = Clock::now() + std::chrono::milliseconds(limits_.timeout_ms);
  Head h{};
  const Io io = read_head(fd_, h, deadline, pending_detail_, pending_enomem_);
  if (io == Io::kTimeout)
    fail({"load", "timeout",
          "timed out after " + std::to_string(limits_.timeout_ms) + " ms while loading (killed; --timeout-ms)", ""});
  if (io == Io::kClosed) {
    PluginFault f = ended("load", " while loading (dlopen, its constructors, the table check)");
    fail(std::move(f));
  }
  if (h.magic != kHelloMagic || h.b < 0 || h.b > 64 || h.len > (1u << 20))
    fail({"load", "protocol", "sent a malformed reply while loading", ""});
  std::vector<char> prov(static_cast<std::size_t>(h.b));
  std::string text(h.len, '\0');
  if (parent_read(fd_, prov.data(), prov.size(), deadline) != Io::kOk ||
      parent_read(fd_, text.data(), text.size(), deadline) != Io::kOk)
    fail({"load", "protocol", "sent a truncated reply while loading", ""});
  if (h.a != 0) {
    stop();
    throw PluginLoadError(text);
  }
  name_ = text;
  provided_.assign(prov.begin(), prov.end());
}

int Plugin::call(const Call& c) {
  const std::vector<PluginComponent>& comps = plugin_components();
  if (c.op < 0 || static_cast<std::size_t>(c.op) >= comps.size() ||
      c.in.size() != op_kinds()[static_cast<std::size_t>(c.op)].in_names.size() ||
      c.out.size() != op_kinds()[static_cast<std::size_t>(c.op)].out_names.size() || c.ints.size() > 16 ||
      c.floats.size() > 16)
    throw std::logic_error("Plugin::call: malformed call");
  const std::string& stage = comps[static_cast<std::size_t>(c.op)].name;
  current_key_.clear();
  if (limit_retries_) {
    current_key_ = call_key(c);
    const bool spent = timed_out_ || (pid_ < 0 && restart_budget_ >= 0 && restarts_ >= restart_budget_);
    if (spent) {
      // The same call as one that faulted (RapidCheck re-runs the reported case): its fault again,
      // without a process; any other call is not made.
      if (const auto it = fault_memo_.find(current_key_); it != fault_memo_.end()) throw PluginFaultError(it->second);
      RC_DISCARD("not called: after a timeout, or once the restarts allowed after faults are spent");
    }
  }
  if (pid_ < 0) {
    if (started_ > 0) ++restarts_;
    try {
      start();
    } catch (PluginFaultError& e) {  // a restart that fails to load: the fault of this case
      PluginFault f = e.fault;
      f.shape = c.shape;
      f.what += " (restarting after an earlier fault)";
      faults_.back() = f;
      if (!current_key_.empty()) fault_memo_[current_key_] = f;
      throw PluginFaultError(f);
    }
  }
  ++calls_;
  const auto deadline = Clock::now() + std::chrono::milliseconds(limits_.timeout_ms);
  const auto timeout = [&] {
    timed_out_ = true;
    fail({stage, "timeout", "timed out after " + std::to_string(limits_.timeout_ms) + " ms (killed; --timeout-ms)",
          c.shape});
  };
  const auto died = [&] {
    PluginFault f = ended(stage, "");
    f.shape = c.shape;
    fail(std::move(f));
  };

  // The request, in one buffer (one system call).
  std::size_t total = (c.in.size() + c.out.size()) * sizeof(std::uint64_t) + c.ints.size() * sizeof(std::int64_t) +
                      c.floats.size() * sizeof(float);
  for (const auto& b : c.in) total += b.size();
  std::vector<char> head;
  head.reserve(sizeof(Request) + total);
  const auto put = [&head](const void* p, std::size_t n) {
    head.insert(head.end(), static_cast<const char*>(p), static_cast<const char*>(p) + n);
  };
  const Request rq{kRequestMagic,
                   static_cast<std::uint32_t>(c.op),
                   static_cast<std::uint32_t>(c.in.size()),
                   static_cast<std::uint32_t>(c.out.size()),
                   static_cast<std::uint32_t>(c.ints.size()),
                   static_cast<std::uint32_t>(c.floats.size()),
                   total};
  put(&rq, sizeof rq);
  for (const auto& b : c.in) {
    const std::uint64_t n = b.size();
    put(&n, sizeof n);
  }
  for (const auto& b : c.out) {
    const std::uint64_t n = b.size();
    put(&n, sizeof n);
  }
  put(c.ints.data(), c.ints.size() * sizeof(std::int64_t));
  put(c.floats.data(), c.floats.size() * sizeof(float));
  for (const auto& b : c.in) put(b.data(), b.size());
  Io io = parent_write(fd_, head.data(), head.size(), deadline);
  if (io == Io::kTimeout) timeout();
  if (io == Io::kClosed) died();

  // The reply.
  Head h{};
  io = read_head(fd_, h, deadline, pending_detail_, pending_enomem_);
  if (io == Io::kTimeout) timeout();
  if (io == Io::kClosed) died();
  if (h.magic != kReplyMagic || h.len > (1u << 20)) fail({stage, "protocol", "sent a malformed reply", c.shape});
  std::size_t rest = h.len;
  for (const auto& b : c.out) rest += b.size();
  std::vector<char> body(rest);
  io = parent_read(fd_, body.data(), body.size(), deadline);
  const std::string detail(body.data(), io == Io::kOk ? h.len : 0);
  if (io == Io::kOk) {
    std::size_t at = h.len;
    for (const auto& b : c.out) {
      std::memcpy(b.data(), body.data() + at, b.size());
      at += b.size();
    }
  }
  if (io == Io::kTimeout) timeout();
  if (io == Io::kClosed) died();
  if (!detail.empty()) fail({stage, "out_of_bounds", "returned after it " + detail, c.shape});
  if (h.a != 0 && h.b == ENOMEM)
    fail({stage, "memory",
          "returned " + std::to_string(h.a) + " after a memory request failed (ENOMEM): over the memory limit of " +
              std::to_string(limits_.memory_mb) + " MiB (--memory-mb)?",
          c.shape});
  return h.a;
}

int Plugin::act_quant(const float* x, std::int64_t rows, std::int64_t cols, std::int32_t block,
                      std::int32_t scale_format, std::uint8_t* codes, float* scales) {
  const std::int64_t nb = block > 0 ? cols / block : 0;
  Call c;
  c.op = 0;
  c.in = {in_bytes(x, rows * cols)};
  c.out = {out_bytes(codes, rows * cols), out_bytes(scales, rows * nb)};
  c.ints = {rows, cols, block, scale_format};
  c.shape = "x " + dims({rows, cols}) + ", block " + std::to_string(block) + ", scale " +
            (scale_format == DSV4_SCALE_UE8M0 ? "ue8m0" : "fp32");
  return call(c);
}

int Plugin::fp4_act_quant(const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* packed,
                          std::uint8_t* scales) {
  Call c;
  c.op = 1;
  c.in = {in_bytes(x, rows * cols)};
  c.out = {out_bytes(packed, rows * cols / 2), out_bytes(scales, rows * (cols / 32))};
  c.ints = {rows, cols};
  c.shape = "x " + dims({rows, cols});
  return call(c);
}

int Plugin::hc_split_sinkhorn(const float* mixes, std::int64_t tokens, std::int32_t n, const float* base,
                              const float* scale, std::int32_t iters, float eps, float* pre, float* post, float* comb) {
  const std::int64_t m = (2 + std::int64_t{n}) * n;
  Call c;
  c.op = 2;
  c.in = {in_bytes(mixes, tokens * m), in_bytes(base, m), in_bytes(scale, 3)};
  c.out = {out_bytes(pre, tokens * n), out_bytes(post, tokens * n), out_bytes(comb, tokens * n * n)};
  c.ints = {tokens, n, iters};
  c.floats = {eps};
  char e[32];
  std::snprintf(e, sizeof e, "%g", static_cast<double>(eps));
  c.shape =
      "mixes " + dims({tokens, m}) + ", n " + std::to_string(n) + ", iters " + std::to_string(iters) + ", eps " + e;
  return call(c);
}

int Plugin::sparse_attention(const float* q, std::int64_t m, std::int64_t h, std::int64_t c_dim, const float* kv,
                             std::int64_t n, const float* sink, const std::int32_t* indices, std::int64_t k,
                             float scale, float* out) {
  Call c;
  c.op = 3;
  c.in = {in_bytes(q, m * h * c_dim), in_bytes(kv, n * c_dim), in_bytes(sink, h), in_bytes(indices, m * k)};
  c.out = {out_bytes(out, m * h * c_dim)};
  c.ints = {m, h, c_dim, n, k};
  c.floats = {scale};
  c.shape = "q " + dims({m, h, c_dim}) + ", kv " + dims({n, c_dim}) + ", indices " + dims({m, k});
  return call(c);
}

int Plugin::compressor_prefill(const float* x, std::int64_t s, std::int64_t d, std::int32_t ratio,
                               std::int64_t head_dim, std::int64_t rope_dim, std::int32_t rotate, float eps,
                               const float* wkv, const float* wgate, const float* ape, const float* norm,
                               const float* cos, const float* sin, float* entries) {
  const std::int64_t kappa = ratio == 4 ? 2 : 1;
  const std::int64_t e = ratio > 0 ? s / ratio : 0;
  Call c;
  c.op = 4;
  c.in = {in_bytes(x, s * d),
          in_bytes(wkv, kappa * head_dim * d),
          in_bytes(wgate, kappa * head_dim * d),
          in_bytes(ape, std::int64_t{ratio} * kappa * head_dim),
          in_bytes(norm, head_dim),
          in_bytes(cos, e * (rope_dim / 2)),
          in_bytes(sin, e * (rope_dim / 2))};
  c.out = {out_bytes(entries, e * head_dim)};
  c.ints = {s, d, ratio, head_dim, rope_dim, rotate};
  c.floats = {eps};
  c.shape = "x " + dims({s, d}) + ", ratio " + std::to_string(ratio) + ", head_dim " + std::to_string(head_dim) +
            ", rope_dim " + std::to_string(rope_dim) + (rotate != 0 ? ", indexer (rotate)" : ", main");
  return call(c);
}

}  // namespace dsv4::props
