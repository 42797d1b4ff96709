// Choosing the next token from a row of logits: greedy argmax, or temperature
// sampling restricted to the nucleus (top-p).
//
// A Sampler owns its random generator, so one Sampler serves one generation
// stream: it is not thread-safe, and two streams sharing one would change each
// other's draws. A seed and the same logits give the same tokens: the uniform
// variate is built from raw mt19937_64 output (not a library distribution) and
// the tokens are scanned in id order.
#ifndef FOTSERVE_SRC_ENGINE_SAMPLER_H_
#define FOTSERVE_SRC_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"

namespace fot {

struct SamplingOptions {
  // Softmax temperature. 0 means greedy: always the argmax (ties go to the
  // lowest id), and top_p and seed are ignored.
  float temperature = 0;
  // Nucleus: sample only among the smallest set of most-probable tokens whose
  // probability mass is >= top_p. 1 keeps every token.
  float top_p = 1;
  // Seed of the random generator; the same seed and logits give the same tokens.
  uint64_t seed = 0;
};

// OK if temperature is finite and >= 0 and 0 < top_p <= 1; otherwise an
// InvalidArgument error naming the field and the allowed range.
[[nodiscard]] absl::Status ValidateSamplingOptions(const SamplingOptions& options);

class Sampler {
 public:
  // `options` should have passed ValidateSamplingOptions(); out-of-range values
  // are still handled without crashing: a temperature that is not a positive
  // finite number means greedy, and top_p is clamped into (0, 1].
  explicit Sampler(const SamplingOptions& options);

  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // Returns the chosen token id in [0, vocab_size), or -1 if `logits` is null or
  // vocab_size <= 0. `logits` (vocab_size floats, not retained) may hold
  // infinities or NaNs: NaN counts as -infinity; if any logit is +infinity the
  // lowest such id is returned; if none is finite the result is the greedy one.
  int Sample(const float* logits, int vocab_size);

  const SamplingOptions& options() const { return options_; }

 private:
  SamplingOptions options_;
  std::mt19937_64 rng_;
  // Scratch buffers reused across calls to avoid allocating per token.
  std::vector<double> probs_;
  std::vector<int> order_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_ENGINE_SAMPLER_H_
