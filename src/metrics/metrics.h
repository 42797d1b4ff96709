// A small Prometheus registry: counters, gauges and histograms, each a family
// of label sets, rendered in Prometheus' text exposition format (0.0.4).
// Debian bookworm packages no Prometheus client library for C++, so this is
// the least that fot-server needs: no summaries, no exemplars, no push.
//
// Names and labels are the caller's (Prometheus conventions: snake_case, base
// units such as _seconds and _bytes, counters ending in _total); the registry
// checks neither.
//
// Thread safety: every method may be called from any thread. Counters,
// gauges and histograms are lock-free; a family locks only to find or add a
// label set. A reference a family returns stays valid until that family's
// Clear() (or the registry's destruction).
#ifndef FOTSERVE_SRC_METRICS_METRICS_H_
#define FOTSERVE_SRC_METRICS_METRICS_H_

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace fot::metrics {

// A value that only goes up (a restart starts it at zero again).
class Counter {
 public:
  void Increment(double by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  // For a count kept elsewhere and read at each scrape (it grows, except when
  // its source starts again, which Prometheus reads as a counter reset).
  void SetCollected(double value) { value_.store(value, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double by) { value_.fetch_add(by, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into buckets with upper bounds `bounds` (ascending;
// +Inf is implied), with their sum.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  const std::vector<double>& bounds() const { return bounds_; }
  // Observations <= bounds()[i] (cumulative), then the count of all of them.
  std::vector<uint64_t> CumulativeCounts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // [bounds_.size() + 1], not cumulative
  std::atomic<double> sum_{0};
};

// Bucket bounds start, start * factor, ... (`count` of them).
std::vector<double> ExponentialBuckets(double start, double factor, int count);

enum class MetricType { kCounter, kGauge, kHistogram };

// The metrics of one name, one per set of label values.
template <typename Metric>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds = {})
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        bounds_(std::move(bounds)) {}

  // The metric of these label values (in label_names order; missing values
  // are empty, extra ones ignored), created at zero on first use.
  Metric& Labels(std::initializer_list<std::string_view> values) {
    std::vector<std::string> key(label_names_.size());
    size_t i = 0;
    for (std::string_view v : values) {
      if (i == key.size()) break;
      key[i++] = std::string(v);
    }
    absl::MutexLock lock(&mu_);
    std::unique_ptr<Metric>& metric = children_[key];
    if (metric == nullptr) metric = Make();
    return *metric;
  }
  // Drops every label set (for gauges refilled at each scrape).
  void Clear() {
    absl::MutexLock lock(&mu_);
    children_.clear();
  }

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Calls f(label values, metric) for each label set, in label order.
  template <typename F>
  void ForEach(F&& f) const {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, metric] : children_) f(key, *metric);
  }

 private:
  std::unique_ptr<Metric> Make() const {
    if constexpr (std::is_same_v<Metric, Histogram>) {
      return std::make_unique<Histogram>(bounds_);
    } else {
      return std::make_unique<Metric>();
    }
  }

  const std::string name_, help_;
  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;  // histograms only
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_ ABSL_GUARDED_BY(mu_);
};

class Registry {
 public:
  // Each returns the new family, owned by the registry. A family without
  // labels has one metric: Labels({}).
  Family<Counter>& AddCounter(std::string name, std::string help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(std::string name, std::string help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help,
                                  std::vector<std::string> label_names, std::vector<double> bounds);

  // Every family in the order added, as the text exposition format (content
  // type kContentType). A family with no label set yet shows only its HELP
  // and TYPE lines.
  std::string Render() const;

  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct Entry {
    MetricType type;
    std::unique_ptr<Family<Counter>> counter;
    std::unique_ptr<Family<Gauge>> gauge;
    std::unique_ptr<Family<Histogram>> histogram;
  };
  mutable absl::Mutex mu_;
  std::vector<Entry> families_ ABSL_GUARDED_BY(mu_);
};

// A sample value as the exposition format writes it: integers without a
// fraction, "+Inf", "-Inf", "NaN", others with full precision.
std::string FormatValue(double value);

// A label value with \, " and newlines escaped.
std::string EscapeLabelValue(std::string_view value);

}  // namespace fot::metrics

#endif  // FOTSERVE_SRC_METRICS_METRICS_H_
