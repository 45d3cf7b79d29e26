// cli/args.h: the option parser of the megagrad program ("--" ends the options; exit-2 errors).
#include <catch2/catch.hpp>
#include "cli/args.h"

using megagrad::cli::Options;
using megagrad::cli::UsageError;
using Catch::Matchers::Contains;

namespace {
Options eval_like() {
  Options o("eval", {{"--split", "S", "val or test"}, {"--quiet", "", "a flag"}});
  o.positionals(1, "CHECKPOINT");
  return o;
}
}  // namespace

TEST_CASE("cli args: -- ends the options", "[cli]") {
  Options a = eval_like();
  a.parse({"--split", "test", "--", "-x.safetensors"});
  REQUIRE(a.positional() == std::vector<std::string>{"-x.safetensors"});
  REQUIRE(a.get("--split") == "test");
  // After --, even --help and a second -- are arguments, not options.
  Options b = eval_like();
  b.positionals(3, "FILES");
  b.parse({"--", "--help", "--", "--quiet"});
  REQUIRE(b.positional() == std::vector<std::string>{"--help", "--", "--quiet"});
  REQUIRE_FALSE(b.help());
  REQUIRE_FALSE(b.has("--quiet"));
  // An option after -- is a stray argument once the positionals are full (exit 2 in main).
  Options c = eval_like();
  REQUIRE_THROWS_WITH(c.parse({"--", "a.safetensors", "--split"}),
                      Contains("megagrad eval: unexpected argument '--split'"));
  // Without --, a name that starts with '-' is an unknown option, and the error says what to do.
  Options d = eval_like();
  REQUIRE_THROWS_AS(d.parse({"-x.safetensors"}), UsageError);
  Options e = eval_like();
  REQUIRE_THROWS_WITH(e.parse({"-x.safetensors"}),
                      Contains("unknown option '-x.safetensors'") && Contains("put -- before it"));
  // A command without positionals gives no such hint.
  Options f("info", {});
  REQUIRE_THROWS_WITH(f.parse({"-x"}), !Contains("put --") && Contains("unknown option '-x'"));
  REQUIRE_THROWS_WITH(f.parse({"--", "x"}), Contains("unexpected argument 'x'"));
  // An option's value may start with '-' (it is taken whole).
  Options g = eval_like();
  g.parse({"--split", "-1"});
  REQUIRE(g.get("--split") == "-1");
  REQUIRE(eval_like().options_help().find("end of options: what follows is CHECKPOINT") != std::string::npos);
}
