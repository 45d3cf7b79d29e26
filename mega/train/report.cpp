#include "mega/train/report.h"
#include <sys/ioctl.h>
#include <unistd.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include "core/atomic_file.h"
#include "core/error.h"

namespace megagrad {

// ---------------------------------------------------------------- Progress

std::string format_metric(std::string_view name, double value) {
  if (name == "loss") return fmt::format("{:.4f}", value);
  if (name == "accuracy") return fmt::format("{:.2f}%", value);
  if (name == "bpc") return fmt::format("{:.3f}", value);
  return fmt::format("{:.4g}", value);
}

std::string format_seconds(double seconds) { return fmt::format("{:.1f} s", seconds); }

int terminal_columns(std::FILE* out) {
  winsize ws{};
  if (out && ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {  // e.g. a pty whose size nobody set
    char* end = nullptr;
    long v = std::strtol(c, &end, 10);
    if (end != c && *end == '\0' && v > 0 && v < 100000) return (int)v;
  }
  return 80;
}

std::string progress_bar_line(int64_t step, int64_t total, const std::vector<std::pair<std::string, std::string>>& fields,
                              const std::string& tokens_per_s, const std::string& eta, int columns) {
  const size_t avail = (size_t)std::max(columns - 1, 1);  // the last column would wrap on some terminals
  const std::string count = fmt::format("{}/{}", step, total);
  // The pieces after the count, in display order, each with its rank (lower = dropped later).
  struct Piece {
    std::string text;
    int rank;
  };
  std::vector<Piece> pieces;
  for (size_t i = 0; i < fields.size(); ++i)
    pieces.push_back({fmt::format("  {} {}", fields[i].first, fields[i].second), i < 2 ? (int)i : 3 + (int)i});
  pieces.push_back({fmt::format("  {} tok/s", tokens_per_s), 1000});
  pieces.push_back({"  ETA " + eta, 2});
  constexpr size_t kMinBar = 10, kMaxBar = 30;
  auto length = [&] {
    size_t n = count.size();
    for (const Piece& p : pieces) n += p.text.size();
    return n;
  };
  // Drop the highest rank until the line fits with the smallest bar ("[" bar "] ").
  while (!pieces.empty() && length() + kMinBar + 3 > avail) {
    auto worst = std::max_element(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) { return a.rank < b.rank; });
    pieces.erase(worst);
  }
  std::string line;
  if (length() + kMinBar + 3 <= avail) {
    const size_t width = std::min(kMaxBar, avail - length() - 3);
    const double frac = (double)step / (double)std::max<int64_t>(total, 1);
    const size_t filled = (size_t)std::clamp(frac * (double)width, 0.0, (double)width);
    line = "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
  }
  line += count;
  for (const Piece& p : pieces) line += p.text;
  if (line.size() > avail) line.resize(avail);
  return line;
}

Progress::Progress(int64_t total, int64_t every, std::FILE* out)
    : total_(total), every_(std::max<int64_t>(1, every)), out_(out), tty_(out && isatty(fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

namespace {
std::string clock_str(double s) {
  if (!(s >= 0) || s > 1e7) return "--:--";
  int64_t t = (int64_t)s;
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{}:{:02}", t / 60, t % 60);
}
}  // namespace

void Progress::update(int64_t step, const std::vector<std::pair<std::string, std::string>>& fields, double tok_s) {
  if (!out_) return;
  auto now = std::chrono::steady_clock::now();
  if (start_step_ < 0) start_step_ = step - 1, start_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = (double)(step - start_step_) / std::max(elapsed, 1e-9);
  const double eta = (double)(total_ - step) / std::max(rate, 1e-9);
  const std::string tokens = fmt::format("{:.0f}", tok_s);
  if (tty_) {
    if (step != total_ && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
    last_draw_ = now;
    // The width is read at every redraw, so that a resized window is followed.
    const std::string line = progress_bar_line(step, total_, fields, tokens, clock_str(eta), terminal_columns(out_));
    std::fprintf(out_, "\r\033[K%s", line.c_str());
    bar_open_ = true;
  } else {
    if (step % every_ != 0 && step != total_) return;
    std::string body;
    for (auto& [k, v] : fields) body += fmt::format("  {} {}", k, v);
    std::fprintf(out_, "step %lld/%lld%s  %s tok/s  ETA %s\n", (long long)step, (long long)total_, body.c_str(),
                 tokens.c_str(), clock_str(eta).c_str());
  }
  std::fflush(out_);
}

void Progress::message(const std::string& line) {
  if (!out_) return;
  if (bar_open_) std::fputc('\n', out_), bar_open_ = false;
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

void Progress::finish() {
  if (!out_) return;
  if (bar_open_) std::fputc('\n', out_), bar_open_ = false;
  std::fflush(out_);
}

// ---------------------------------------------------------------- MetricsLog

MetricsLog::MetricsLog(const std::string& path, int64_t keep_until_step) : path_(path) {
  if (keep_until_step >= 0) {
    // Keep the records up to the resumed step; write the rest back atomically.
    std::ifstream in(path);
    std::string line, kept;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      Json j = Json::parse(line, path);
      if (!j.contains("step") || j.at("step").get_int() <= keep_until_step) kept += line + "\n";
    }
    write_file_atomic(path, kept, "metrics");
  }
  f_ = std::fopen(path.c_str(), keep_until_step >= 0 ? "a" : "w");
  MG_CHECK(f_ != nullptr, "metrics", "cannot open {} for writing", path);
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const Json& record) {
  std::string line = record.dump() + "\n";
  MG_CHECK(std::fwrite(line.data(), 1, line.size(), f_) == line.size() && std::fflush(f_) == 0, "metrics",
           "cannot write to {}", path_);
}

// ---------------------------------------------------------------- SVG

void write_svg_plot(const std::string& path, const std::string& title, const std::string& left_label,
                    const std::string& right_label, const std::vector<PlotSeries>& series) {
  const double W = 760, H = 420, ml = 70, mr = 70, mt = 40, mb = 50;
  double x0 = INFINITY, x1 = -INFINITY;
  double l0 = INFINITY, l1 = -INFINITY, r0 = INFINITY, r1 = -INFINITY;
  for (const PlotSeries& s : series)
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x);
      double& lo = s.right_axis ? r0 : l0;
      double& hi = s.right_axis ? r1 : l1;
      lo = std::min(lo, y), hi = std::max(hi, y);
    }
  if (!(x1 > x0)) x0 = 0, x1 = std::max(1.0, x1);
  auto fix = [](double& lo, double& hi) {
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
  };
  fix(l0, l1), fix(r0, r1);
  auto X = [&](double x) { return ml + (x - x0) / (x1 - x0) * (W - ml - mr); };
  auto Y = [&](double y, bool right) {
    double lo = right ? r0 : l0, hi = right ? r1 : l1;
    return mt + (1 - (y - lo) / (hi - lo)) * (H - mt - mb);
  };
  auto esc = [](const std::string& s) {
    std::string o;
    for (char c : s) o += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
    return o;
  };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"24\" font-size=\"15\" text-anchor=\"middle\">{3}</text>\n",
      W, H, W / 2, esc(title));
  // Axes, ticks and labels.
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", ml, mt,
                     W - ml - mr, H - mt - mb);
  for (int i = 0; i <= 5; ++i) {
    double fx = x0 + (x1 - x0) * i / 5, fl = l0 + (l1 - l0) * i / 5, fr = r0 + (r1 - r0) * i / 5;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:.0f}</text>\n", X(fx), H - mb + 18, fx);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:.3g}</text>\n", ml - 6, Y(fl, false) + 4, fl);
    svg += fmt::format("<line x1=\"{0:.1f}\" x2=\"{1:.1f}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>\n", ml, W - mr,
                       Y(fl, false));
    bool any_right = std::any_of(series.begin(), series.end(), [](const PlotSeries& s) { return s.right_axis; });
    if (any_right)
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{:.3g}</text>\n", W - mr + 6, Y(fr, true) + 4, fr);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n", (ml + W - mr) / 2, H - 12);
  svg += fmt::format("<text transform=\"translate(16,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n", (mt + H - mb) / 2,
                     esc(left_label));
  svg += fmt::format("<text transform=\"translate({},{}) rotate(90)\" text-anchor=\"middle\">{}</text>\n", W - 14,
                     (mt + H - mb) / 2, esc(right_label));
  // Curves and legend.
  int li = 0;
  for (const PlotSeries& s : series) {
    std::string pts;
    for (auto [x, y] : s.points)
      if (std::isfinite(y)) pts += fmt::format("{:.1f},{:.1f} ", X(x), Y(y, s.right_axis));
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.6\" points=\"{}\"/>\n", s.color, pts);
    svg += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"3\"/>"
                       "<text x=\"{4}\" y=\"{5}\">{6}</text>\n",
                       ml + 10, ml + 30, mt + 14 + 16 * li, s.color, ml + 36, mt + 18 + 16 * li, esc(s.name));
    ++li;
  }
  svg += "</svg>\n";
  write_file_atomic(path, svg, "plot");
}

void plot_metrics_log(const std::string& log_path, const std::string& svg_path, const std::string& title,
                      const std::string& metric) {
  std::ifstream in(log_path);
  MG_CHECK(in.good(), "plot", "cannot read {}", log_path);
  PlotSeries train{"train loss", {}, "#1f77b4", false}, val_loss{"validation loss", {}, "#ff7f0e", false},
      val_metric{"validation " + metric, {}, "#2ca02c", true};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    Json j = Json::parse(line, log_path);
    if (!j.contains("step") || !j.contains("split")) continue;
    double step = (double)j.at("step").get_int();
    const std::string& split = j.at("split").get_string();
    if (split == "train" && j.contains("loss")) train.points.emplace_back(step, j.at("loss").get_double());
    if (split == "val" && j.contains("loss")) val_loss.points.emplace_back(step, j.at("loss").get_double());
    if (split == "val" && j.contains(metric)) val_metric.points.emplace_back(step, j.at(metric).get_double());
  }
  write_svg_plot(svg_path, title, "loss", metric, {train, val_loss, val_metric});
}

}  // namespace megagrad
