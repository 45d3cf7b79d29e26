// megagrad plot: several runs' curves in one SVG (e.g. Mega against the Transformer on a task).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include "cli/commands.h"
#include "core/error.h"
#include "mega/train/report.h"

namespace megagrad::cli {

namespace {
const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

// A run's name in the legend: its folder's name, with the header's model type when the name
// does not already say it.
std::string run_label(const std::filesystem::path& dir, const RunCurves& c) {
  std::string name = dir.filename().string();
  if (name.empty() || name == ".") name = std::filesystem::absolute(dir).lexically_normal().filename().string();
  const Json* config = c.header.is_object() ? c.header.find("config") : nullptr;
  const Json* model = config && config->is_object() ? config->find("model") : nullptr;
  const Json* type = model && model->is_object() ? model->find("type") : nullptr;
  if (type && type->is_string() && name.find(type->get_string()) == std::string::npos)
    name += " (" + type->get_string() + ")";
  return name;
}
}  // namespace

int cmd_plot(const std::vector<std::string>& args) {
  Options opts("plot", {{"--out", "FILE", "the SVG to write (default plot.svg)"},
                        {"--metric", "NAME", "the validation metric to draw: accuracy, bpc, loss, ... (default: the runs' own)"},
                        {"--title", "TEXT", "the plot's title (default: the runs' names)"}});
  opts.positionals(1000, "RUN_DIR");
  opts.parse(args);
  if (opts.help()) {
    std::printf("usage: megagrad plot RUN_DIR... [--out FILE.svg] [--metric NAME]\n\n"
                "Overlays the curves of several training runs (folders written by megagrad train, or\n"
                "their metrics.jsonl) in one SVG: each run's smoothed train loss (solid, left axis)\n"
                "and its validation metric at every evaluation (dashed with dots, right axis),\n"
                "labelled by the run folder's name, and the task's reference line (e.g. the majority\n"
                "class) that the runs' metrics headers record.\n\n%s",
                opts.options_help().c_str());
    return 0;
  }
  if (opts.positional().empty()) throw UsageError("megagrad plot: give at least one RUN_DIR (see: megagrad plot --help)");
  namespace fs = std::filesystem;
  std::vector<std::pair<std::string, RunCurves>> runs;
  for (const std::string& arg : opts.positional()) {
    fs::path dir = arg, log = fs::path(arg) / "metrics.jsonl";
    if (fs::is_regular_file(arg)) log = arg, dir = fs::path(arg).parent_path();
    MG_CHECK(fs::is_regular_file(log), "plot", "{}: no metrics.jsonl there (not a megagrad train run folder)", arg);
    RunCurves c = read_run_curves(log.string(), "plot");
    std::string label = run_label(dir, c);
    runs.emplace_back(std::move(label), std::move(c));
  }
  // The metric: as asked, else the first validation number other than the loss that a run logged.
  std::string metric = opts.get("--metric").value_or("");
  for (const auto& [label, c] : runs)
    for (const auto& [key, pts] : c.val)
      if (metric.empty() && key != "loss") metric = key;
  if (metric.empty()) metric = "loss";
  if (opts.has("--metric")) {
    const bool found = std::any_of(runs.begin(), runs.end(), [&](const auto& r) { return r.second.val_curve(metric); });
    if (!found) {
      std::string known;
      for (const auto& [label, c] : runs)
        for (const auto& [key, pts] : c.val)
          if (known.find(" " + key + ",") == std::string::npos) known += " " + key + ",";
      fail("plot", "no run logged a validation {} (they logged:{})", metric, known.empty() ? " nothing" : known.substr(0, known.size() - 1));
    }
  }
  const bool metric_is_loss = metric == "loss";
  std::vector<PlotSeries> series;
  std::string names;
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& [label, c] = runs[i];
    const std::string color = kColors[i % std::size(kColors)];
    series.push_back(PlotSeries{label + ": train loss, smoothed", smooth_curve(c.train_loss), color});
    if (const auto* v = c.val_curve(metric)) {
      PlotSeries s{label + ": validation " + metric, *v, color, !metric_is_loss};
      s.dashed = s.markers = true;
      series.push_back(s);
    }
    names += (i ? " vs " : "") + label;
  }
  // The runs' reference lines of this metric (metrics header "baseline"), each value once: runs on
  // the same data share one (the majority class of ListOps), runs on other data add theirs.
  std::vector<PlotReference> refs;
  for (const auto& run : runs) {
    const Json* b = run.second.header.is_object() ? run.second.header.find("baseline") : nullptr;
    const Json* bm = b && b->is_object() ? b->find("metric") : nullptr;
    const Json* bv = b && b->is_object() ? b->find("value") : nullptr;
    const Json* bn = b && b->is_object() ? b->find("name") : nullptr;
    if (!bm || !bv || !bm->is_string() || !bv->is_number() || bm->get_string() != metric) continue;
    const double v = bv->get_double();
    const bool seen = std::any_of(refs.begin(), refs.end(), [&](const PlotReference& r) { return std::abs(r.value - v) < 1e-9; });
    if (!seen) refs.push_back(PlotReference{bn && bn->is_string() ? bn->get_string() : "baseline", v, "#777777", !metric_is_loss});
  }
  const std::string out = opts.get("--out").value_or("plot.svg");
  MG_CHECK(!out.empty(), "plot", "--out needs a file name");
  write_svg_plot(out, opts.get("--title").value_or(names), loss_axis(), metric_axis(metric), series, refs);
  std::printf("megagrad plot: wrote %s (%zu run%s, validation %s)\n", out.c_str(), runs.size(), runs.size() == 1 ? "" : "s",
              metric.c_str());
  return 0;
}

}  // namespace megagrad::cli
