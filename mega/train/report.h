// What a training run shows and leaves behind: a progress bar (plain log lines when stdout is
// not a terminal), a metrics log (JSON lines), and an SVG plot of the curves.
#pragma once
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>
#include "core/json.h"

namespace megagrad {

class Progress {
 public:
  // total: steps of the run; every: log-line interval when not on a terminal. out null: silent
  // (the ranks other than 0 of a data-parallel run).
  Progress(int64_t total, int64_t every, std::FILE* out = stdout);
  // Redraws the bar (at most 10 times a second on a terminal) or prints a line every `every` steps.
  // `fields` are shown in order, e.g. {"loss", "2.301"}, {"acc", "41.0%"}.
  void update(int64_t step, const std::vector<std::pair<std::string, std::string>>& fields, double tokens_per_s);
  // Ends the bar's line and prints `line` on its own.
  void message(const std::string& line);
  void finish();
  bool is_terminal() const { return tty_; }

 private:
  int64_t total_, every_;
  std::FILE* out_;
  bool tty_;
  bool bar_open_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int64_t start_step_ = -1;
};

// Appends one JSON object per line; flushed after each line, so a killed run keeps what it logged.
class MetricsLog {
 public:
  // Opens `path`; with keep_until_step >= 0 (a resumed run) first drops the lines of steps after
  // it, so that the log reads as if the run had never stopped.
  MetricsLog(const std::string& path, int64_t keep_until_step);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const Json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

struct PlotSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (step, value)
  std::string color;                              // e.g. "#1f77b4"
  bool right_axis = false;                        // plotted against the right-hand axis
  double opacity = 1;                             // < 1: faint (the raw curve behind a smoothed one)
  bool markers = false;                           // a dot on every point (evaluations)
  bool dashed = false;
  bool in_legend = true;
};

struct PlotAxis {
  std::string label;
  bool from_zero = false;  // the range starts at 0 (accuracy, bpc), else at the data's nice floor
  double max = NAN;        // a fixed top (100 for accuracy), else the data's nice ceiling
  std::string suffix;      // appended to tick labels, e.g. "%"
};

// A horizontal reference line, e.g. the majority class's accuracy.
struct PlotReference {
  std::string name;
  double value = NAN;
  std::string color = "#777777";
  bool right_axis = false;
};

// Round ("nice") tick positions covering [lo, hi]: multiples of 1, 2 or 5 x 10^k, about `target`
// of them; the first is <= lo and the last >= hi.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

// Debiased exponential moving average (as TensorBoard's smoothing) with a window of about
// points/10 (at least 1, at most 200 points): the trend of a noisy per-step curve.
std::vector<std::pair<double, double>> smooth_curve(const std::vector<std::pair<double, double>>& points);

// Writes an SVG line chart (atomically): x = step with round ticks, the left axis for the series
// with right_axis false, the right axis (shown only when used) for the others; the legend to the
// right of the data area.
void write_svg_plot(const std::string& path, const std::string& title, const PlotAxis& left, const PlotAxis& right,
                    const std::vector<PlotSeries>& series, const std::vector<PlotReference>& references = {});

// The curves of one metrics.jsonl (header lines skipped): train loss per step, and every number
// of the validation records by key ("loss", "accuracy", "bpc", ...).
struct RunCurves {
  std::vector<std::pair<double, double>> train_loss;
  std::vector<std::pair<std::string, std::vector<std::pair<double, double>>>> val;  // in first-seen order
  Json header = Json();  // the last header line (null if none)
  const std::vector<std::pair<double, double>>* val_curve(const std::string& key) const;
};
RunCurves read_run_curves(const std::string& log_path, const std::string& op = "plot");

// The axis of a validation metric: accuracy 0-100 %, bpc from 0 in bits, others from the data.
PlotAxis metric_axis(const std::string& metric);
inline PlotAxis loss_axis() {
  PlotAxis a;
  a.label = "loss";
  return a;
}

// Reads the metrics log back and plots the train loss (faint per step, smoothed over it), the
// validation loss and `metric` with a marker per evaluation, and `baseline` (value, name; NaN:
// none) as a dashed line on the metric's axis.
void plot_metrics_log(const std::string& log_path, const std::string& svg_path, const std::string& title,
                      const std::string& metric,
                      const std::pair<double, std::string>& baseline = {std::nan(""), ""});

}  // namespace megagrad
