// The Prometheus registry: values, label sets and the text exposition.
#include "src/metrics/metrics.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace fot::metrics {
namespace {

TEST(MetricsTest, CountersAndGaugesRenderWithHelpTypeAndLabels) {
  Registry registry;
  Family<Counter>& requests =
      registry.AddCounter("x_requests_total", "Requests", {"method", "code"});
  Family<Gauge>& streams = registry.AddGauge("x_streams", "Streams now");
  requests.Labels({"Generate", "OK"}).Increment();
  requests.Labels({"Generate", "OK"}).Increment(2);
  requests.Labels({"Score", "NOT_FOUND"}).Increment();
  streams.Labels({}).Add(3);
  streams.Labels({}).Add(-1);
  EXPECT_EQ(registry.Render(),
            "# HELP x_requests_total Requests\n"
            "# TYPE x_requests_total counter\n"
            "x_requests_total{method=\"Generate\",code=\"OK\"} 3\n"
            "x_requests_total{method=\"Score\",code=\"NOT_FOUND\"} 1\n"
            "# HELP x_streams Streams now\n"
            "# TYPE x_streams gauge\n"
            "x_streams 2\n");
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithSumAndCount) {
  Registry registry;
  Histogram& h = registry.AddHistogram("x_seconds", "Latency", {}, {0.5, 0.1, 1}).Labels({});
  for (double v : {0.05, 0.1, 0.3, 2.0}) h.Observe(v);
  EXPECT_EQ(registry.Render(),
            "# HELP x_seconds Latency\n"
            "# TYPE x_seconds histogram\n"
            "x_seconds_bucket{le=\"0.1\"} 2\n"  // bounds are inclusive and sorted
            "x_seconds_bucket{le=\"0.5\"} 3\n"
            "x_seconds_bucket{le=\"1\"} 3\n"
            "x_seconds_bucket{le=\"+Inf\"} 4\n"
            "x_seconds_sum 2.45\n"
            "x_seconds_count 4\n");
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  Registry registry;
  registry.AddGauge("x", "a \\ b\nc", {"session"}).Labels({"a\"b\\c\nd"}).Set(1);
  EXPECT_EQ(registry.Render(),
            "# HELP x a \\\\ b\\nc\n"
            "# TYPE x gauge\n"
            "x{session=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsTest, ValuesUseTheShortestExactForm) {
  EXPECT_EQ(FormatValue(3), "3");
  EXPECT_EQ(FormatValue(-2), "-2");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(1e20), "1e+20");
  EXPECT_EQ(FormatValue(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
}

TEST(MetricsTest, ClearDropsLabelSetsAndFamiliesWithoutSamplesShowTheirHeader) {
  Registry registry;
  Family<Gauge>& g = registry.AddGauge("x", "h", {"session"});
  g.Labels({"a"}).Set(1);
  g.Clear();
  EXPECT_EQ(registry.Render(), "# HELP x h\n# TYPE x gauge\n");
}

TEST(MetricsTest, ConcurrentIncrementsAreAllCounted) {
  Registry registry;
  Family<Counter>& c = registry.AddCounter("x_total", "h", {"t"});
  Histogram& h = registry.AddHistogram("y", "h", {}, {1}).Labels({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.Labels({"same"}).Increment();
        h.Observe(0.5);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Labels({"same"}).value(), 40000);
  EXPECT_EQ(h.CumulativeCounts().back(), 40000u);
}

}  // namespace
}  // namespace fot::metrics
