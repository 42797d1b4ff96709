// The Prometheus registry and its text exposition (see metrics.h).
#include "src/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace fot::metrics {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  const size_t bucket =
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();  // first >= value
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double bound = start;
  for (int i = 0; i < count; ++i, bound *= factor) out.push_back(bound);
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {  // 2^53
    return absl::StrCat(static_cast<int64_t>(value));
  }
  // The shortest form that reads back as the same double.
  char buffer[32];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  return buffer;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// HELP text with \ and newlines escaped.
std::string EscapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="x",b="y"} with `extra` (such as le="0.5") last; "" without labels.
std::string LabelText(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      std::string_view extra = {}) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StrAppend(&out, out.empty() ? "" : ",", names[i], "=\"", EscapeLabelValue(values[i]),
                    "\"");
  }
  if (!extra.empty()) absl::StrAppend(&out, out.empty() ? "" : ",", std::string(extra));
  return out.empty() ? out : absl::StrCat("{", out, "}");
}

template <typename Metric>
void RenderHeader(const Family<Metric>& family, std::string_view type, std::string* out) {
  absl::StrAppend(out, "# HELP ", family.name(), " ", EscapeHelp(family.help()), "\n", "# TYPE ",
                  family.name(), " ", std::string(type), "\n");
}

template <typename Metric>
void RenderScalars(const Family<Metric>& family, std::string_view type, std::string* out) {
  RenderHeader(family, type, out);
  family.ForEach([&](const std::vector<std::string>& labels, const Metric& metric) {
    absl::StrAppend(out, family.name(), LabelText(family.label_names(), labels), " ",
                    FormatValue(metric.value()), "\n");
  });
}

void RenderHistograms(const Family<Histogram>& family, std::string* out) {
  RenderHeader(family, "histogram", out);
  family.ForEach([&](const std::vector<std::string>& labels, const Histogram& h) {
    const std::vector<uint64_t> counts = h.CumulativeCounts();
    for (size_t i = 0; i < counts.size(); ++i) {
      const std::string le =
          i < h.bounds().size() ? FormatValue(h.bounds()[i]) : std::string("+Inf");
      absl::StrAppend(out, family.name(), "_bucket",
                      LabelText(family.label_names(), labels, absl::StrCat("le=\"", le, "\"")), " ",
                      counts[i], "\n");
    }
    const std::string label_text = LabelText(family.label_names(), labels);
    absl::StrAppend(out, family.name(), "_sum", label_text, " ", FormatValue(h.sum()), "\n",
                    family.name(), "_count", label_text, " ", counts.back(), "\n");
  });
}

}  // namespace

Family<Counter>& Registry::AddCounter(std::string name, std::string help,
                                      std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  Entry& e = families_.emplace_back();
  e.type = MetricType::kCounter;
  e.counter =
      std::make_unique<Family<Counter>>(std::move(name), std::move(help), std::move(label_names));
  return *e.counter;
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help,
                                  std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  Entry& e = families_.emplace_back();
  e.type = MetricType::kGauge;
  e.gauge =
      std::make_unique<Family<Gauge>>(std::move(name), std::move(help), std::move(label_names));
  return *e.gauge;
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  std::sort(bounds.begin(), bounds.end());
  absl::MutexLock lock(&mu_);
  Entry& e = families_.emplace_back();
  e.type = MetricType::kHistogram;
  e.histogram = std::make_unique<Family<Histogram>>(std::move(name), std::move(help),
                                                    std::move(label_names), std::move(bounds));
  return *e.histogram;
}

std::string Registry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const Entry& e : families_) {
    switch (e.type) {
      case MetricType::kCounter:
        RenderScalars(*e.counter, "counter", &out);
        break;
      case MetricType::kGauge:
        RenderScalars(*e.gauge, "gauge", &out);
        break;
      case MetricType::kHistogram:
        RenderHistograms(*e.histogram, &out);
        break;
    }
  }
  return out;
}

}  // namespace fot::metrics
