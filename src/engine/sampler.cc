#include "src/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace fot {
namespace {

// The lowest id with the largest logit, NaNs skipped; 0 if every logit is NaN.
int Argmax(const float* logits, int vocab_size) {
  int best = -1;
  for (int i = 0; i < vocab_size; ++i) {
    if (std::isnan(logits[i])) continue;
    if (best < 0 || logits[i] > logits[best]) best = i;
  }
  return best < 0 ? 0 : best;
}

// Uniform in [0, 1) from the top 53 bits of one draw: the same on every
// platform, unlike std::uniform_real_distribution.
double Uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

}  // namespace

absl::Status ValidateSamplingOptions(const SamplingOptions& options) {
  if (!std::isfinite(options.temperature) || options.temperature < 0) {
    return absl::InvalidArgumentError(
        "sampling temperature must be a finite number >= 0 (0 = "
        "greedy), got " +
        std::to_string(options.temperature));
  }
  if (!(options.top_p > 0 && options.top_p <= 1)) {
    return absl::InvalidArgumentError(
        "sampling top_p must be in (0, 1] (1 = no nucleus cut), got " +
        std::to_string(options.top_p));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {}

int Sampler::Sample(const float* logits, int vocab_size) {
  if (logits == nullptr || vocab_size <= 0) return -1;
  const int argmax = Argmax(logits, vocab_size);
  const float temperature = options_.temperature;
  if (!(std::isfinite(temperature) && temperature > 0)) return argmax;
  const float max_logit = logits[argmax];
  // +inf dominates every other token; with no finite logit there is nothing to
  // weigh. Both cases are decided without randomness.
  if (!std::isfinite(max_logit)) return argmax;

  // Unnormalised softmax(logits / T), in double so tiny tails still add up.
  probs_.resize(vocab_size);
  double total = 0;
  for (int i = 0; i < vocab_size; ++i) {
    const float v = logits[i];
    const double p =
        std::isnan(v) ? 0.0 : std::exp((static_cast<double>(v) - max_logit) / temperature);
    probs_[i] = p;
    total += p;
  }

  const double top_p = std::isnan(options_.top_p) ? 1.0 : std::clamp<double>(options_.top_p, 0, 1);
  if (top_p >= 1) {
    const double u = Uniform01(rng_) * total;
    double cum = 0;
    int last = argmax;
    for (int i = 0; i < vocab_size; ++i) {
      if (probs_[i] <= 0) continue;
      cum += probs_[i];
      last = i;
      if (u < cum) return i;
    }
    return last;  // rounding left u at the very top of the range
  }

  // Nucleus: the smallest head of the tokens ordered most probable first (ties
  // to the lower id: a strict total order) whose mass reaches top_p. Find the
  // last token of that head, the cutoff, by quickselect (expected O(vocab)
  // even when the nucleus is most of the vocabulary), then draw in id order.
  const auto more_probable = [this](int a, int b) {
    return probs_[a] != probs_[b] ? probs_[a] > probs_[b] : a < b;
  };
  order_.resize(vocab_size);
  for (int i = 0; i < vocab_size; ++i) order_[i] = i;
  const double target = top_p * total;
  int lo = 0, hi = vocab_size;  // the cutoff is among order_[lo, hi)
  double mass_above = 0;        // mass of the tokens ranked before order_[lo]
  int cutoff = -1;
  while (cutoff < 0) {
    if (hi - lo <= 64) {
      std::sort(order_.begin() + lo, order_.begin() + hi, more_probable);
      double cum = mass_above;
      for (int j = lo; j < hi && cutoff < 0; ++j) {
        cum += probs_[order_[j]];
        if (cum >= target) cutoff = order_[j];
      }
      if (cutoff < 0) cutoff = order_[hi - 1];  // rounding: keep everything
      break;
    }
    const int mid = lo + (hi - lo) / 2;
    std::nth_element(order_.begin() + lo, order_.begin() + mid, order_.begin() + hi, more_probable);
    double head = 0;
    for (int j = lo; j < mid; ++j) head += probs_[order_[j]];
    if (mass_above + head >= target) {
      hi = mid;
    } else {
      mass_above += head;
      lo = mid;
    }
  }

  const auto kept = [&](int i) { return i == cutoff || more_probable(i, cutoff); };
  double kept_mass = 0;
  for (int i = 0; i < vocab_size; ++i) {
    if (kept(i)) kept_mass += probs_[i];
  }
  const double u = Uniform01(rng_) * kept_mass;
  double cum = 0;
  for (int i = 0; i < vocab_size; ++i) {
    if (!kept(i)) continue;
    cum += probs_[i];
    if (u < cum) return i;
  }
  return cutoff;  // rounding left u at the very top of the range
}

}  // namespace fot
