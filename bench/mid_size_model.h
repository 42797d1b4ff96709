// The mid-size random LongLLaMA model every benchmark measures (hidden 512,
// 8 layers, 8 heads, intermediate 1376, vocab 32000, W 512, memory layers 3
// and 6), written once to a temporary folder and loaded from it.
#ifndef FOTSERVE_BENCH_MID_SIZE_MODEL_H_
#define FOTSERVE_BENCH_MID_SIZE_MODEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "src/engine/engine.h"

namespace fot {

ModelConfig MidSizeConfig();

// Where the model lives (a folder of the temporary directory).
std::string MidSizeModelDir();

// Writes the model (seed 1) unless it is already there, then loads it.
absl::StatusOr<std::unique_ptr<Engine>> LoadMidSizeModel(const WeightsOptions& weights = {});

}  // namespace fot

#endif  // FOTSERVE_BENCH_MID_SIZE_MODEL_H_
