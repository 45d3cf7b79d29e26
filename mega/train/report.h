// What a training run shows and leaves behind: a progress bar (plain log lines when stdout is
// not a terminal), a metrics log (JSON lines), and an SVG plot of the curves.
#pragma once
#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
#include "core/json.h"

namespace megagrad {

// The one number format of what the program prints (the CLI, the progress bar, its log lines):
// a loss with 4 decimals (2.3026), an accuracy (in percent) with 2 decimals and a % sign
// (51.25%), bits per character with 3 decimals (1.875); any other metric with 4 significant digits.
std::string format_metric(std::string_view name, double value);
// Seconds with 1 decimal: "12.3 s".
std::string format_seconds(double seconds);

// The width of the terminal behind `out`: its window size (TIOCGWINSZ), else $COLUMNS, else 80.
int terminal_columns(std::FILE* out);

// One redraw of the progress bar in at most `columns - 1` characters (so that it never wraps):
//   [#####.....] step/total  k1 v1  k2 v2 ...  T tok/s  ETA m:ss
// On a narrow terminal the bar shrinks (to 10 cells), then fields go, least useful first: tok/s,
// the fields after the second, ETA, the second field, the first, then the bar; step/total stays
// (cut only when nothing else is left).
std::string progress_bar_line(int64_t step, int64_t total, const std::vector<std::pair<std::string, std::string>>& fields,
                              const std::string& tokens_per_s, const std::string& eta, int columns);

class Progress {
 public:
  // total: steps of the run; every: log-line interval when not on a terminal. out null: silent
  // (the ranks other than 0 of a data-parallel run).
  Progress(int64_t total, int64_t every, std::FILE* out = stdout);
  // Redraws the bar (at most 10 times a second on a terminal, fitted to its current width) or
  // prints a line every `every` steps.
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
};

// Writes an SVG line chart (atomically): x = step, left axis for the series with right_axis false,
// right axis for the others.
void write_svg_plot(const std::string& path, const std::string& title, const std::string& left_label,
                    const std::string& right_label, const std::vector<PlotSeries>& series);

// Reads the metrics log back and plots train loss and the validation metric (the keys "train_loss"
// and `metric` of records with "split": "train" / "val").
void plot_metrics_log(const std::string& log_path, const std::string& svg_path, const std::string& title,
                      const std::string& metric);

}  // namespace megagrad
