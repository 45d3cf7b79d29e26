// The command line's small option parser. Each subcommand lists its options; anything else (an
// unknown option, a stray argument, a missing or malformed value) is a UsageError, which main()
// prints on stderr and turns into exit code 2. "--" ends the options: every argument after it is
// positional, even one that starts with '-' (a checkpoint named -x.safetensors).
//
//   Options opts("demo", {{"--steps", "N", "training steps (default 800)"}, ...});
//   opts.parse(args);                 // "--steps 50" and "--steps=50" both work
//   int steps = opts.get_int("--steps", 800, 1, 1000000);
#pragma once
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>
#include <fmt/format.h>

namespace megagrad::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct OptionSpec {
  std::string name;   // "--steps"
  std::string value;  // "N" for an option that takes a value, "" for a flag
  std::string help;
};

// "megagrad demo: " for a subcommand, "megagrad: " for the program's own options.
inline std::string prefix(const std::string& command) {
  return command.empty() ? "megagrad: " : "megagrad " + command + ": ";
}

// "(see: megagrad demo --help)"
inline std::string see_help(const std::string& command) {
  return command.empty() ? "(see: megagrad --help)" : "(see: megagrad " + command + " --help)";
}

// Parses a strict integer in [lo, hi]; `what` names it in the error ("--steps").
inline int64_t parse_int(const std::string& command, const std::string& what, const std::string& text,
                         int64_t lo, int64_t hi) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
    throw UsageError(fmt::format("{}{} expects an integer in [{}, {}], got '{}'", prefix(command),
                                 what, lo, hi, text));
  return v;
}

class Options {
 public:
  Options(std::string command, std::vector<OptionSpec> specs)
      : command_(std::move(command)), specs_(std::move(specs)) {}

  // Accepts up to n positional arguments (e.g. a checkpoint path); by default none.
  Options& positionals(size_t n, std::string what) {
    max_positionals_ = n, positional_name_ = std::move(what);
    return *this;
  }
  const std::vector<std::string>& positional() const { return positional_; }

  // Fills the values; "--help" / "-h" sets help().
  void parse(const std::vector<std::string>& args) {
    bool options_ended = false;
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (!options_ended && a == "--") {
        options_ended = true;
        continue;
      }
      if (!options_ended && (a == "--help" || a == "-h")) {
        help_ = true;
        continue;
      }
      if (options_ended || a.rfind("-", 0) != 0) {
        if (positional_.size() < max_positionals_) {
          positional_.push_back(a);
          continue;
        }
        throw UsageError(fmt::format("{}unexpected argument '{}' {}", prefix(command_), a, see_help(command_)));
      }
      std::string name = a, value;
      bool inline_value = false;
      if (auto eq = a.find('='); eq != std::string::npos) {
        name = a.substr(0, eq), value = a.substr(eq + 1), inline_value = true;
      }
      const OptionSpec* spec = find(name);
      if (!spec)
        throw UsageError(fmt::format("{}unknown option '{}'{} {}", prefix(command_), name,
                                     max_positionals_ > 0 ? fmt::format(" (for a {} that starts with '-', put -- before it)",
                                                                        positional_name_)
                                                          : "",
                                     see_help(command_)));
      if (spec->value.empty()) {
        if (inline_value)
          throw UsageError(fmt::format("{}option {} takes no value", prefix(command_), name));
        values_[name] = "";
      } else {
        if (!inline_value) {
          if (i + 1 >= args.size())
            throw UsageError(fmt::format("{}option {} needs a value ({})", prefix(command_),
                                         name, spec->value));
          value = args[++i];
        }
        values_[name] = value;
      }
    }
  }

  bool help() const { return help_; }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    return it->second;
  }
  int64_t get_int(const std::string& name, int64_t fallback, int64_t lo, int64_t hi) const {
    auto v = get(name);
    return v ? parse_int(command_, name, *v, lo, hi) : fallback;
  }

  // The "options:" block of a --help text.
  std::string options_help() const {
    std::string out = "options:\n";
    for (const OptionSpec& s : specs_) {
      std::string left = s.value.empty() ? s.name : s.name + " " + s.value;
      out += fmt::format("  {:<20} {}\n", left, s.help);
    }
    out += fmt::format("  {:<20} {}\n", "-h, --help", "show this help");
    if (max_positionals_ > 0)
      out += fmt::format("  {:<20} {}\n", "--", "end of options: what follows is " + positional_name_);
    return out;
  }

 private:
  const OptionSpec* find(const std::string& name) const {
    for (const OptionSpec& s : specs_)
      if (s.name == name) return &s;
    return nullptr;
  }

  std::string command_;
  std::vector<OptionSpec> specs_;
  std::map<std::string, std::string> values_;
  bool help_ = false;
  size_t max_positionals_ = 0;
  std::string positional_name_;
  std::vector<std::string> positional_;
};

}  // namespace megagrad::cli
