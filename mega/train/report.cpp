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
    // Appended piece by piece: the one-expression form trips GCC 12's false -Wrestrict.
    line += '[';
    line.append(filled, '#').append(width - filled, '.') += "] ";
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

// ---------------------------------------------------------------- plots

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (hi < lo) std::swap(lo, hi);
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) lo -= 0.5, hi += 0.5;
  const double raw = (hi - lo) / std::max(1, target);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double m = raw / p;
  const double step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  std::vector<double> t;
  const double first = std::floor(lo / step + 1e-9), last = std::ceil(hi / step - 1e-9);
  for (double k = first; k <= last + 0.5; k += 1) t.push_back(std::fabs(k) < 1e-9 ? 0.0 : k * step);
  return t;
}

namespace {
// A tick label with as many decimals as the tick spacing needs (0.5, not 0.500; 600, not 601).
std::string tick_label(double v, double spacing, const std::string& suffix) {
  const int decimals = std::max(0, -(int)std::floor(std::log10(spacing) + 1e-9));
  return fmt::format("{:.{}f}{}", v, decimals, suffix);
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : c == '"' ? "&quot;" : std::string(1, c);
  return o;
}
}  // namespace

std::vector<std::pair<double, double>> smooth_curve(const std::vector<std::pair<double, double>>& points) {
  const double window = std::clamp((double)points.size() / 10.0, 1.0, 200.0);
  const double beta = 1 - 2 / (window + 1);  // an EMA's "span": the mean age of its weights is ~window/2
  std::vector<std::pair<double, double>> out;
  double ema = 0, weight = 0;
  for (auto [x, y] : points) {
    if (!std::isfinite(y)) continue;
    ema = beta * ema + (1 - beta) * y, weight = beta * weight + (1 - beta);
    out.emplace_back(x, ema / weight);  // debiased: the first points are not pulled towards 0
  }
  return out;
}

void write_svg_plot(const std::string& path, const std::string& title, const PlotAxis& left, const PlotAxis& right,
                    const std::vector<PlotSeries>& series, const std::vector<PlotReference>& references) {
  double x0 = INFINITY, x1 = -INFINITY;
  double l0 = INFINITY, l1 = -INFINITY, r0 = INFINITY, r1 = -INFINITY;
  bool any_right = false;
  auto include = [&](bool right_axis, double y) {
    (right_axis ? r0 : l0) = std::min(right_axis ? r0 : l0, y);
    (right_axis ? r1 : l1) = std::max(right_axis ? r1 : l1, y);
  };
  for (const PlotSeries& s : series) {
    any_right = any_right || s.right_axis;
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y) || !std::isfinite(x)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x);
      include(s.right_axis, y);
    }
  }
  for (const PlotReference& r : references)
    if (std::isfinite(r.value)) include(r.right_axis, r.value), any_right = any_right || r.right_axis;
  if (!std::isfinite(x0)) x0 = 0, x1 = 1;
  // Round ticks, and axis ranges that end on them.
  auto axis_ticks = [](const PlotAxis& a, double lo, double hi) {
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    if (a.from_zero) lo = std::min(lo, 0.0) < 0 ? lo : 0.0;
    if (std::isfinite(a.max)) hi = std::max(hi, a.max) > a.max ? hi : a.max;
    return nice_ticks(lo, hi, 5);
  };
  const std::vector<double> xt = nice_ticks(std::min(x0, 0.0) < 0 ? x0 : 0.0, x1, 6);
  const std::vector<double> lt = axis_ticks(left, l0, l1), rt = axis_ticks(right, r0, r1);

  size_t longest = 0;
  for (const PlotSeries& s : series)
    if (s.in_legend) longest = std::max(longest, s.name.size());
  for (const PlotReference& r : references) longest = std::max(longest, r.name.size() + 10);
  const double pw = 600, ph = 330, ml = 72, mt = 44, mb = 52, mr = any_right ? 72 : 24;
  const double legend_x = ml + pw + mr + 8, legend_w = 40 + 6.8 * (double)longest;
  const double W = legend_x + legend_w + 12, H = mt + ph + mb;
  const double legend_h = 18.0 * (double)(series.size() + references.size());
  const double Hs = std::max(H, mt + legend_h + 10);
  auto X = [&](double x) { return ml + (x - xt.front()) / (xt.back() - xt.front()) * pw; };
  auto Y = [&](double y, bool r) {
    const std::vector<double>& t = r ? rt : lt;
    return mt + (1 - (y - t.front()) / (t.back() - t.front())) * ph;
  };

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0:.0f}\" height=\"{1:.0f}\" viewBox=\"0 0 {0:.0f} {1:.0f}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2:.1f}\" y=\"26\" font-size=\"15\" text-anchor=\"middle\">{3}</text>\n",
      W, Hs, ml + pw / 2, xml_escape(title));
  // Grid and tick labels: the grid follows the left axis (or the right one when alone).
  const bool grid_right = !std::any_of(series.begin(), series.end(), [](const PlotSeries& s) { return !s.right_axis; });
  for (double v : xt)
    svg += fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#eee\"/>"
                       "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4}</text>\n",
                       X(v), mt, mt + ph, mt + ph + 18, tick_label(v, xt[1] - xt[0], ""));
  for (double v : grid_right ? rt : lt)
    svg += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#eee\"/>\n", ml, ml + pw,
                       Y(v, grid_right));
  if (!grid_right)
    for (double v : lt)
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", ml - 6, Y(v, false) + 4,
                         tick_label(v, lt[1] - lt[0], left.suffix));
  if (any_right)
    for (double v : rt)
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", ml + pw + 6, Y(v, true) + 4,
                         tick_label(v, rt[1] - rt[0], right.suffix));
  svg += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", ml, mt, pw, ph);
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">step</text>\n", ml + pw / 2, mt + ph + 40);
  if (!grid_right)
    svg += fmt::format("<text transform=\"translate(18,{}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n", mt + ph / 2,
                       xml_escape(left.label));
  if (any_right)
    svg += fmt::format("<text transform=\"translate({},{}) rotate(90)\" text-anchor=\"middle\">{}</text>\n",
                       ml + pw + mr - 14, mt + ph / 2, xml_escape(right.label));

  // Reference lines, then the curves (in order: the faint ones first, so drawn underneath).
  auto dash = [](bool d) { return d ? std::string(" stroke-dasharray=\"6,4\"") : std::string(); };
  for (const PlotReference& r : references)
    if (std::isfinite(r.value))
      svg += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"1.4\"{}/>\n", ml,
                         ml + pw, Y(r.value, r.right_axis), Y(r.value, r.right_axis), r.color, dash(true));
  for (const PlotSeries& s : series) {
    std::string pts, dots;
    for (auto [x, y] : s.points) {
      if (!std::isfinite(y) || !std::isfinite(x)) continue;
      pts += fmt::format("{:.1f},{:.1f} ", X(x), Y(y, s.right_axis));
      if (s.markers) dots += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\"/>", X(x), Y(y, s.right_axis));
    }
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-opacity=\"{}\" stroke-width=\"{}\"{} points=\"{}\"/>\n",
                       s.color, s.opacity, s.opacity < 1 ? 1 : 1.8, dash(s.dashed), pts);
    if (!dots.empty()) svg += fmt::format("<g fill=\"{}\">{}</g>\n", s.color, dots);
  }

  // The legend, outside the data area.
  double ly = mt + 8;
  auto sample = [&](const std::string& color, double opacity, bool dashed, bool marker, const std::string& text) {
    svg += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"{3}\" stroke-opacity=\"{4}\" "
                       "stroke-width=\"2.5\"{5}/>",
                       legend_x, legend_x + 28, ly, color, opacity, dash(dashed));
    if (marker) svg += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{}\"/>", legend_x + 14, ly, color);
    svg += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", legend_x + 34, ly + 4, xml_escape(text));
    ly += 18;
  };
  for (const PlotSeries& s : series)
    if (s.in_legend) sample(s.color, s.opacity, s.dashed, s.markers, s.name);
  for (const PlotReference& r : references)
    if (std::isfinite(r.value)) {
      const PlotAxis& a = r.right_axis ? right : left;
      sample(r.color, 1, true, false, fmt::format("{} ({:.3g}{})", r.name, r.value, a.suffix.empty() ? "" : a.suffix));
    }
  svg += "</svg>\n";
  write_file_atomic(path, svg, "plot");
}

const std::vector<std::pair<double, double>>* RunCurves::val_curve(const std::string& key) const {
  for (const auto& [k, pts] : val)
    if (k == key) return &pts;
  return nullptr;
}

RunCurves read_run_curves(const std::string& log_path, const std::string& op) {
  std::ifstream in(log_path);
  MG_CHECK(in.good(), op, "cannot read {}", log_path);
  RunCurves c;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    Json j = Json::parse(line, fmt::format("{} line {}", log_path, n));
    if (const Json* h = j.find("header")) {  // one per start or resume: not a data point
      c.header = *h;
      continue;
    }
    const Json* step = j.find("step");
    const Json* split = j.find("split");
    if (!step || !step->is_number() || !split || !split->is_string()) continue;
    const double x = step->get_double();
    if (split->get_string() == "train") {
      if (const Json* loss = j.find("loss"); loss && loss->is_number()) c.train_loss.emplace_back(x, loss->get_double());
    } else if (split->get_string() == "val") {
      for (const auto& item : j.items()) {  // no structured binding: clang 14 (the fuzz build) cannot capture one
        const auto& key = item.first;
        const auto& v = item.second;
        if (!v.is_number() || key == "step" || key == "elapsed_s") continue;
        auto it = std::find_if(c.val.begin(), c.val.end(), [&](const auto& kv) { return kv.first == key; });
        if (it == c.val.end()) it = c.val.insert(c.val.end(), {key, {}});
        it->second.emplace_back(x, v.get_double());
      }
    }
  }
  return c;
}

PlotAxis metric_axis(const std::string& metric) {
  const bool acc = metric == "accuracy", bpc = metric == "bpc";
  // Built in one go: assigning the label to a default-constructed axis draws a false -Wrestrict from GCC 12.
  return PlotAxis{.label = bpc ? std::string("bits per character") : metric,
                  .from_zero = acc || bpc,
                  .max = acc ? 100.0 : std::nan(""),
                  .suffix = acc ? "%" : ""};
}

void plot_metrics_log(const std::string& log_path, const std::string& svg_path, const std::string& title,
                      const std::string& metric, const std::pair<double, std::string>& baseline) {
  const RunCurves c = read_run_curves(log_path);
  PlotSeries raw{"train loss, per step", c.train_loss, "#1f77b4"};
  raw.opacity = 0.25;
  PlotSeries smooth{"train loss, smoothed", smooth_curve(c.train_loss), "#1f77b4"};
  std::vector<PlotSeries> series{raw, smooth};
  if (const auto* v = c.val_curve("loss")) {
    PlotSeries s{"validation loss", *v, "#ff7f0e"};
    s.markers = true;
    series.push_back(s);
  }
  if (const auto* v = metric != "loss" ? c.val_curve(metric) : nullptr) {
    PlotSeries s{"validation " + metric, *v, "#2ca02c", true};
    s.markers = true;
    series.push_back(s);
  }
  std::vector<PlotReference> refs;
  if (std::isfinite(baseline.first)) refs.push_back({baseline.second.empty() ? "baseline" : baseline.second,
                                                    baseline.first, "#2ca02c", true});
  write_svg_plot(svg_path, title, loss_axis(), metric_axis(metric), series, refs);
}

}  // namespace megagrad
