// Rotary position embedding in the Hugging Face "rotate_half" layout:
// dimension i is paired with i + head_dim/2 and rotated by pos · inv_freq[i],
// inv_freq[i] = theta^(-2i/head_dim).
#ifndef FOTSERVE_SRC_MODEL_ROPE_H_
#define FOTSERVE_SRC_MODEL_ROPE_H_

#include <vector>

namespace fot {

class Rope {
 public:
  // Precomputes cos/sin for positions [0, max_positions).
  Rope(int head_dim, float theta, int max_positions);

  // Rotates x[n, num_heads, head_dim] in place; row r sits at position
  // first_position + r. Positions must stay below max_positions.
  void Apply(float* x, int n, int num_heads, int first_position) const;

  int max_positions() const { return max_positions_; }

 private:
  int head_dim_;
  int max_positions_;
  std::vector<float> cos_;  // [max_positions, head_dim / 2]
  std::vector<float> sin_;  // [max_positions, head_dim / 2]
};

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_ROPE_H_
