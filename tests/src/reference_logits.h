// A float64 LLaMA forward pass written from the equations, sharing no code
// with the engine, that the engine tests compare logits with. Every (query t,
// key s) pair is local, global, memory or hidden by an explicit mask; with
// n_global 0, no memory layers and local_window >= the number of tokens it is
// plain causal attention over one window.
#ifndef FOTSERVE_TESTS_SRC_REFERENCE_LOGITS_H_
#define FOTSERVE_TESTS_SRC_REFERENCE_LOGITS_H_

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "src/checkpoint/model_config.h"
#include "src/checkpoint/model_weights.h"
#include "src/model/attention_options.h"

namespace fot::reference {

// What the reference needs to know of the attention.
struct Spec {
  int n_global;
  int local_window;             // L
  std::set<int> memory_layers;  // layers that attend to memory
  MemoryPositioning positioning = MemoryPositioning::kAsFirst;
  int memory_from = 0;  // memory entries of earlier positions are filtered out
};

enum class Kind { kLocal, kGlobal, kMemory, kHidden };

// The Λ mask, written out: which branch key s is in for the query at t (s ≤ t).
inline Kind MaskOf(int t, int s, const Spec& spec, bool memory_layer) {
  if (s >= t - spec.local_window + 1) return Kind::kLocal;
  if (s < spec.n_global) return Kind::kGlobal;
  return memory_layer && s >= spec.memory_from ? Kind::kMemory : Kind::kHidden;
}

// A float64 LLaMA forward over the whole stream in which every query sees its
// keys through MaskOf, each kind rotated as issue 6 says: local keys at true
// positions (query t, key s), global keys unrotated with the query at L (the
// distance cap), memory keys unrotated with the query at min(t, L−1)
// (as_first), L (fixed_distance) or unrotated (none). Layers that do not
// rotate (LongLLaMA memory layers without mem_positionals) rotate nothing.
inline std::vector<double> LambdaReferenceLogits(const ModelConfig& c, const ModelWeights& w,
                                                 const std::vector<int>& ids, const Spec& spec) {
  const int n = static_cast<int>(ids.size()), hs = c.hidden_size, hd = c.head_dim();
  const int nh = c.num_attention_heads, nkv = c.num_key_value_heads, inter = c.intermediate_size;
  const int L = spec.local_window;
  // (Any weight type: each row decoded to the floats the engine multiplies.)
  auto matvec = [](const WeightMatrix& m, const std::vector<double>& x, int out) {
    std::vector<double> y(out);
    std::vector<float> row(x.size());
    for (int o = 0; o < out; ++o) {
      DecodeRows(m, o, 1, row.data());
      for (size_t i = 0; i < x.size(); ++i) y[o] += row[i] * x[i];
    }
    return y;
  };
  auto norm = [&](const std::vector<double>& x, const float* weight) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double inv = 1 / std::sqrt(ss / x.size() + c.rms_norm_eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * weight[i];
    return y;
  };
  // One head's vector (hd values at v) rotated by pos (rotate_half layout).
  auto rotated = [&](const double* v, int pos) {
    std::vector<double> out(v, v + hd);
    for (int i = 0; i < hd / 2; ++i) {
      const double angle = pos * std::pow(static_cast<double>(c.rope_theta), -2.0 * i / hd);
      out[i] = v[i] * std::cos(angle) - v[i + hd / 2] * std::sin(angle);
      out[i + hd / 2] = v[i + hd / 2] * std::cos(angle) + v[i] * std::sin(angle);
    }
    return out;
  };
  std::vector<std::vector<double>> x(n);
  for (int t = 0; t < n; ++t) {
    std::vector<float> row(hs);
    DecodeRows(w.embed_tokens(), ids[t], 1, row.data());
    x[t].assign(row.begin(), row.end());
  }
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& lw = w.layer(l);
    const bool memory_layer = spec.memory_layers.count(l) > 0;
    const bool rotates = c.mem_positionals || !c.IsMemoryLayer(l);
    std::vector<std::vector<double>> q(n), k(n), v(n);
    for (int t = 0; t < n; ++t) {
      const std::vector<double> h = norm(x[t], lw.input_layernorm);
      q[t] = matvec(lw.q_proj, h, nh * hd);
      k[t] = matvec(lw.k_proj, h, nkv * hd);
      v[t] = matvec(lw.v_proj, h, nkv * hd);
    }
    for (int t = 0; t < n; ++t) {
      std::vector<double> attn(nh * hd);
      for (int head = 0; head < nh; ++head) {
        const int g = head / (nh / nkv);
        const double* qt = &q[t][head * hd];
        std::vector<double> score(t + 1, -INFINITY);
        double mx = -INFINITY;
        for (int s = 0; s <= t; ++s) {
          const Kind kind = MaskOf(t, s, spec, memory_layer);
          if (kind == Kind::kHidden) continue;
          const double* ks = &k[s][g * hd];
          std::vector<double> qr(qt, qt + hd), kr(ks, ks + hd);
          if (rotates && kind == Kind::kLocal) {
            qr = rotated(qt, t);
            kr = rotated(ks, s);
          } else if (rotates && kind == Kind::kGlobal) {
            qr = rotated(qt, L);
          } else if (rotates && kind == Kind::kMemory) {
            if (spec.positioning == MemoryPositioning::kAsFirst) {
              qr = rotated(qt, std::min(t, L - 1));
            } else if (spec.positioning == MemoryPositioning::kFixedDistance) {
              qr = rotated(qt, L);
            }  // kNone: the raw query
          }
          double dot = 0;
          for (int i = 0; i < hd; ++i) dot += qr[i] * kr[i];
          score[s] = dot / std::sqrt(hd);
          mx = std::max(mx, score[s]);
        }
        double sum = 0;
        for (double& e : score) sum += (e = std::exp(e - mx));
        for (int s = 0; s <= t; ++s) {
          for (int i = 0; i < hd; ++i) attn[head * hd + i] += score[s] / sum * v[s][g * hd + i];
        }
      }
      const std::vector<double> o = matvec(lw.o_proj, attn, hs);
      for (int i = 0; i < hs; ++i) x[t][i] += o[i];
      const std::vector<double> h = norm(x[t], lw.post_attention_layernorm);
      std::vector<double> gate = matvec(lw.gate_proj, h, inter), up = matvec(lw.up_proj, h, inter);
      for (int i = 0; i < inter; ++i) gate[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
      const std::vector<double> down = matvec(lw.down_proj, gate, hs);
      for (int i = 0; i < hs; ++i) x[t][i] += down[i];
    }
  }
  std::vector<double> logits;
  for (int t = 0; t < n; ++t) {
    const std::vector<double> row = matvec(w.lm_head(), norm(x[t], w.final_norm()), c.vocab_size);
    logits.insert(logits.end(), row.begin(), row.end());
  }
  return logits;
}

}  // namespace fot::reference

#endif  // FOTSERVE_TESTS_SRC_REFERENCE_LOGITS_H_
