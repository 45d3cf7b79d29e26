// megagrad gradcheck: runs every registered gradcheck case (autograd/registry.h) and prints one
// row per case. A registered op without any case is a failure too: every differentiable op
// must be checked.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>
#include "autograd/gradcheck.h"
#include "autograd/registry.h"
#include "cli/commands.h"
#include "core/json.h"

namespace megagrad::cli {

namespace {

struct Row {
  std::string op, label, error, tolerance, result, detail;
  Json max_error, tol;  // the numbers behind `error` and `tolerance` (null when there are none)
  bool no_case = false;  // a registered op without any case
};

bool contains(const std::string& s, const std::string& sub) { return s.find(sub) != std::string::npos; }

}  // namespace

int cmd_gradcheck(const std::vector<std::string>& args) {
  Options opts("gradcheck", {{"--filter", "SUBSTR", "only cases whose op name or label contains SUBSTR"},
                             {"--verbose", "", "print the worst element of every case, not only of failures"},
                             {"--json", "", "print the results as one JSON object instead of the table"},
                             threads_option()});
  opts.parse(args);
  if (opts.help()) {
    std::printf("usage: megagrad gradcheck [options]\n\n"
                "Compares every differentiable op's analytic gradient with central finite\n"
                "differences in float64 (the cases of autograd/gradcheck_cases_*.cpp). Registered\n"
                "ops that have no case are listed as FAIL. Exit code 1 when anything fails.\n"
                "--json prints {\"version\", \"passed\", \"cases_run\", \"cases_passed\", \"cases_failed\",\n"
                "\"ops_without_case\", \"seconds\", \"cases\": [{\"op\", \"case\", \"max_error\", \"tolerance\",\n"
                "\"passed\", \"detail\"}]} (max_error null when the case threw; detail the worst element\n"
                "or the error, empty when it passed).\n\n%s",
                opts.options_help().c_str());
    return 0;
  }
  apply_threads(opts);
  const std::string filter = opts.get("--filter").value_or("");
  const bool verbose = opts.has("--verbose"), json = opts.has("--json");

  auto t0 = std::chrono::steady_clock::now();
  std::vector<Row> rows;
  std::set<std::string> ops_with_cases;
  int failed = 0, run = 0;
  for (const GradcheckCase& c : all_gradcheck_cases()) {
    ops_with_cases.insert(c.op);
    if (!filter.empty() && !contains(c.op, filter) && !contains(c.label, filter)) continue;
    ++run;
    Row row{c.op, c.label, "-", fmt::format("{:.0e}", c.tolerance), "FAIL", "", Json(), Json(c.tolerance)};
    try {
      GradcheckResult r = run_gradcheck_case(c);
      row.error = fmt::format("{:.2e}", r.max_error);
      if (std::isfinite(r.max_error)) row.max_error = Json(r.max_error);  // JSON has no NaN/Inf: null
      row.result = r.passed ? "PASS" : "FAIL";
      if (!r.passed || verbose) row.detail = r.report();
    } catch (const std::exception& e) {
      row.detail = std::string("error: ") + e.what();
    }
    failed += row.result != "PASS";
    rows.push_back(std::move(row));
  }
  // Registered ops that no case checks.
  int missing = 0;
  for (std::string_view op : differentiable_ops()) {
    std::string name(op);
    if (ops_with_cases.count(name) || (!filter.empty() && !contains(name, filter))) continue;
    rows.push_back({name, "(none)", "-", "-", "FAIL", "no gradcheck case", Json(), Json(), true});
    ++missing, ++failed;
  }

  if (rows.empty())
    throw UsageError(fmt::format("megagrad gradcheck: --filter '{}' matches no case and no op", filter));

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (json) {
    Json cases = Json::array(), without = Json::array();
    for (const Row& r : rows) {
      if (r.no_case) {
        without.push_back(r.op);
        continue;
      }
      Json j = Json::object();
      j.set("op", r.op), j.set("case", r.label), j.set("max_error", r.max_error), j.set("tolerance", r.tol);
      j.set("passed", r.result == "PASS"), j.set("detail", r.detail);
      cases.push_back(std::move(j));
    }
    Json out = Json::object();
    out.set("version", MEGAGRAD_VERSION), out.set("passed", failed == 0), out.set("cases_run", run);
    out.set("cases_passed", run - (failed - missing)), out.set("cases_failed", failed - missing);
    out.set("ops_without_case", std::move(without)), out.set("seconds", secs), out.set("cases", std::move(cases));
    std::printf("%s\n", out.dump(2).c_str());
    return failed == 0 ? 0 : 1;
  }
  size_t wop = 2, wlabel = 4;
  for (const Row& r : rows) wop = std::max(wop, r.op.size()), wlabel = std::max(wlabel, r.label.size());
  wlabel = std::min<size_t>(wlabel, 64);
  std::string header = fmt::format("{:<{}}  {:<{}}  {:>11}  {:>9}  {}", "op", wop, "case", wlabel,
                                   "worst error", "tolerance", "result");
  std::printf("%s\n%s\n", header.c_str(), std::string(header.size(), '-').c_str());
  for (const Row& r : rows) {
    std::string label = r.label.size() > wlabel ? r.label.substr(0, wlabel - 3) + "..." : r.label;
    std::printf("%s\n", fmt::format("{:<{}}  {:<{}}  {:>11}  {:>9}  {}", r.op, wop, label, wlabel,
                                    r.error, r.tolerance, r.result).c_str());
    if (!r.detail.empty()) std::printf("    %s\n", r.detail.c_str());
  }
  std::printf("\n%d case%s run, %d passed, %d failed; %d registered op%s without a case (%.1f s)\n",
              run, run == 1 ? "" : "s", run - (failed - missing), failed - missing, missing,
              missing == 1 ? "" : "s", secs);
  std::printf("%s\n", failed == 0 ? "gradcheck: PASS" : "gradcheck: FAIL");
  return failed == 0 ? 0 : 1;
}

}  // namespace megagrad::cli
