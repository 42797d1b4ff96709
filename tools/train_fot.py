#!/usr/bin/python3
"""Train, evaluate and export fotserve's small Focused-Transformer model (fot-dict).

The model is a LLaMA decoder (RoPE in the rotate_half layout, RMSNorm, SwiGLU,
multi-query attention) whose memory layers follow DESIGN.md §1 exactly:

* every window's local keys/queries are rotated by their position in the window;
* a memory layer's queries also attend, in ONE softmax with the local keys, to memory
  keys stored unrotated (= rotated as position 0) and their values; scale
  1/sqrt(head_dim) for both.

Training is FoT's cross-batch procedure: each example is two windows of W tokens of
one document; in window 1 a memory layer attends to its local context plus the
(key, value) pairs of window 0 of its own document and of d-1 other documents of the
batch, with d grown during training. Window 0 is processed exactly as a first window
at inference (no memory), so what is learnt is what the engine computes.

Subcommands:
  train   train (builds tokenizer.model first), write a checkpoint (.pt)
  eval    exact-match accuracy on fresh documents with the DESIGN §1 inference
  export  config.json + model.safetensors + tokenizer.model in a Hugging Face folder
  golden  check the inference against tests/golden (the reference's outputs)
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fot_data  # noqa: E402


# ====================================================================== model
class Cfg:
    def __init__(self, **kw):
        self.vocab_size = kw['vocab_size']
        self.hidden_size = kw.get('hidden_size', 128)
        self.intermediate_size = kw.get('intermediate_size', 384)
        self.num_hidden_layers = kw.get('num_hidden_layers', 4)
        self.num_attention_heads = kw.get('num_attention_heads', 2)
        self.num_key_value_heads = kw.get('num_key_value_heads', 1)
        self.max_position_embeddings = kw.get('max_position_embeddings', 128)  # W
        self.last_context_length = kw.get('last_context_length', 64)           # L
        self.mem_layers = list(kw.get('mem_layers', [2]))
        self.mem_positionals = kw.get('mem_positionals', True)
        self.rms_norm_eps = kw.get('rms_norm_eps', 1e-6)
        self.rope_theta = kw.get('rope_theta', 10000.0)
        self.tie_word_embeddings = kw.get('tie_word_embeddings', False)
        self.bos_token_id = kw.get('bos_token_id', 1)
        self.eos_token_id = kw.get('eos_token_id', 2)

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    def hf_dict(self):
        return {
            'architectures': ['LongLlamaForCausalLM'], 'model_type': 'longllama',
            'vocab_size': self.vocab_size, 'hidden_size': self.hidden_size,
            'intermediate_size': self.intermediate_size,
            'num_hidden_layers': self.num_hidden_layers,
            'num_attention_heads': self.num_attention_heads,
            'num_key_value_heads': self.num_key_value_heads,
            'max_position_embeddings': self.max_position_embeddings,
            'last_context_length': self.last_context_length,
            'mem_layers': self.mem_layers, 'mem_positionals': self.mem_positionals,
            'mem_dtype': 'float32', 'rms_norm_eps': self.rms_norm_eps,
            'rope_theta': self.rope_theta, 'tie_word_embeddings': self.tie_word_embeddings,
            'bos_token_id': self.bos_token_id, 'eos_token_id': self.eos_token_id,
            'pad_token_id': 0, 'hidden_act': 'silu', 'torch_dtype': 'float32',
        }

    @staticmethod
    def from_hf(d):
        d = dict(d)
        if d.get('model_type') == 'llama':
            d.setdefault('mem_layers', [])
        d.setdefault('num_key_value_heads', d['num_attention_heads'])
        return Cfg(**d)


def param_shapes(c):
    """Hugging Face tensor names and shapes ([out, in] for projections)."""
    H, I, hd = c.hidden_size, c.intermediate_size, c.head_dim
    kvd = c.num_key_value_heads * hd
    s = {'model.embed_tokens.weight': (c.vocab_size, H)}
    for i in range(c.num_hidden_layers):
        p = f'model.layers.{i}.'
        s[p + 'self_attn.q_proj.weight'] = (H, H)
        s[p + 'self_attn.k_proj.weight'] = (kvd, H)
        s[p + 'self_attn.v_proj.weight'] = (kvd, H)
        s[p + 'self_attn.o_proj.weight'] = (H, H)
        s[p + 'mlp.gate_proj.weight'] = (I, H)
        s[p + 'mlp.up_proj.weight'] = (I, H)
        s[p + 'mlp.down_proj.weight'] = (H, I)
        s[p + 'input_layernorm.weight'] = (H,)
        s[p + 'post_attention_layernorm.weight'] = (H,)
    s['model.norm.weight'] = (H,)
    if not c.tie_word_embeddings:
        s['lm_head.weight'] = (c.vocab_size, H)
    return s


def init_params(c, seed, offset_init=0.0):
    g = torch.Generator().manual_seed(seed)
    P = {}
    for name, shp in param_shapes(c).items():
        if len(shp) == 1:
            t = torch.ones(shp)
        else:
            # unit-variance signal propagation (1/sqrt(fan_in)); residual branch
            # outputs scaled down by the depth; embeddings at unit scale
            std = 1.0 / math.sqrt(shp[1]) if 'embed_tokens' not in name else 1.0
            if name.endswith('o_proj.weight') or name.endswith('down_proj.weight'):
                std /= math.sqrt(2 * c.num_hidden_layers)
            t = torch.randn(shp, generator=g) * std
        P[name] = torch.nn.Parameter(t)
    if offset_init:
        offset_heads_init(c, P, g, offset_init)
    return P


def offset_heads_init(c, P, g, peak):
    """Start the layers below the first memory layer as fixed-offset heads.

    All embeddings get a shared component along a unit vector u, so every normalised
    hidden state has a stable u-part. Adding a u-driven term to q and k whose RoPE
    phases are offset by delta makes query head h of lower layer l attend mostly to
    the token delta = 1 + l*nh + h positions back: at initialisation every position
    already carries its preceding tokens in separate subspaces, so a memory key
    describes the context before it and retrieval (an induction through memory) has
    a gradient from the first step. Only the initial point changes; every weight
    stays trainable and the architecture is the plain LLaMA one."""
    H, hd, nh = c.hidden_size, c.head_dim, c.num_attention_heads
    u = torch.randn(H, generator=g)
    u /= u.norm()
    P['model.embed_tokens.weight'].data += math.sqrt(H) * u[None, :]
    K = 6                                     # highest-frequency rotary pairs used
    a = torch.zeros(hd)
    a[:K] = 1.0
    gamma = math.sqrt(peak * math.sqrt(hd) / ((H / 2) * K))
    lower = [i for i in range(c.num_hidden_layers) if i < min(c.mem_layers)]
    for l in lower:
        pre = f'model.layers.{l}.self_attn.'
        for kvh in range(c.num_key_value_heads):
            P[pre + 'k_proj.weight'].data[kvh * hd:(kvh + 1) * hd] += gamma * a[:, None] * u[None, :]
        for h in range(nh):
            delta = 1 + l * nh + h
            cos, sin = rope_cos_sin(c, torch.tensor([-delta]), torch.float32)
            qa = rotate(a[None], cos, sin)[0]
            P[pre + 'q_proj.weight'].data[h * hd:(h + 1) * hd] += gamma * qa[:, None] * u[None, :]


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_cos_sin(c, positions, dtype):
    hd = c.head_dim
    inv_freq = c.rope_theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    f = positions.to(torch.float64)[:, None] * inv_freq[None, :]
    emb = torch.cat([f, f], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate(x, cos, sin):
    """x [..., T, hd]; rotate_half layout (i pairs with i + hd/2)."""
    h = x.shape[-1] // 2
    rh = torch.cat([-x[..., h:], x[..., :h]], dim=-1)
    return x * cos + rh * sin


class MemoryAttention(torch.autograd.Function):
    """softmax([q k^T causal | q mem_k^T] / sqrt(hd)) [v; mem_v], in blocks of query rows.

    The plain form materialises the scores of every query against every memory key
    and keeps them for backward: with FoT's cross-batch memory at d = 128 that is
    16 x 512 x 16384 floats per tensor, and the step's time went to allocating,
    concatenating and re-reading them. Here a block of rows is done whole (row max,
    then exp in place, a few MB that stay in cache), only the output and the
    log-sum-exp are kept, and backward recomputes a block's probabilities.

    q [B, nkv, R, hd] (R = heads of the group x Tq, head-major); k, v [B or 1, nkv,
    Tk, hd]; mem_k, mem_v [B or 1, nkv, M, hd]; row r is query position q_pos0 + r % Tq.
    """

    @staticmethod
    def forward(ctx, q, k, v, mem_k, mem_v, q_pos0, Tq, block=None):
        B, nkv, R, hd = q.shape
        qs = q * (1.0 / math.sqrt(hd))
        hidden = hidden_keys(k.shape[2], R, Tq, q_pos0)
        if block is None:  # ~16 MB of scores per block, whole multiples of 64 rows
            block = max(64, ((1 << 22) // (k.shape[2] + mem_k.shape[2]) + 32) // 64 * 64)
        o = torch.empty_like(q)
        lse = torch.empty(B, nkv, R, dtype=q.dtype)
        for b, bk, bm, h, r0, r1 in _blocks(B, k.shape[0], mem_k.shape[0], nkv, R, block):
            qb = qs[b, h, r0:r1]
            sl = (qb @ k[bk, h].T).masked_fill_(hidden[r0:r1], float('-inf'))
            sm = qb @ mem_k[bm, h].T
            m = torch.maximum(sl.amax(-1), sm.amax(-1))[:, None]
            sl.sub_(m).exp_()
            sm.sub_(m).exp_()
            l = sl.sum(-1) + sm.sum(-1)
            o[b, h, r0:r1] = (sl @ v[bk, h] + sm @ mem_v[bm, h]) / l[:, None]
            lse[b, h, r0:r1] = m[:, 0] + l.log()
        ctx.save_for_backward(qs, k, v, mem_k, mem_v, o, lse, hidden)
        ctx.block = block
        return o

    @staticmethod
    def backward(ctx, do):
        qs, k, v, mem_k, mem_v, o, lse, hidden = ctx.saved_tensors
        B, nkv, R, hd = qs.shape
        scale = 1.0 / math.sqrt(hd)
        do = do.contiguous()
        delta = (do * o).sum(-1, keepdim=True)
        dq = torch.empty_like(qs)
        dk, dv, dmk, dmv = (torch.zeros_like(t) for t in (k, v, mem_k, mem_v))
        for b, bk, bm, h, r0, r1 in _blocks(B, k.shape[0], mem_k.shape[0], nkv, R, ctx.block):
            qb, dob = qs[b, h, r0:r1], do[b, h, r0:r1]
            lb, db = lse[b, h, r0:r1, None], delta[b, h, r0:r1]
            pl = (qb @ k[bk, h].T).masked_fill_(hidden[r0:r1], float('-inf')).sub_(lb).exp_()
            pm = (qb @ mem_k[bm, h].T).sub_(lb).exp_()
            dv[bk, h] += pl.T @ dob
            dmv[bm, h] += pm.T @ dob
            dsl = (dob @ v[bk, h].T).sub_(db).mul_(pl)
            dsm = (dob @ mem_v[bm, h].T).sub_(db).mul_(pm)
            dq[b, h, r0:r1] = (dsl @ k[bk, h] + dsm @ mem_k[bm, h]) * scale
            dk[bk, h] += dsl.T @ qb
            dmk[bm, h] += dsm.T @ qb
        return dq, dk, dv, dmk, dmv, None, None, None


def hidden_keys(Tk, R, Tq, q_pos0):
    """[R, Tk] True where a local key lies in the future of query row r (position
    q_pos0 + r % Tq: the heads of a kv group are stacked row-wise)."""
    return torch.arange(Tk)[None, :] > (torch.arange(R) % Tq)[:, None] + q_pos0


def _blocks(B, Bk, Bm, nkv, R, block):
    """(batch row, its local-key row, its memory row, kv head, first, end) per block."""
    for b in range(B):
        for h in range(nkv):
            for r0 in range(0, R, block):
                yield b, b if Bk > 1 else 0, b if Bm > 1 else 0, h, r0, min(r0 + block, R)


def attention(q, k, v, q_pos0, mem_k=None, mem_v=None, topk=None):
    """One softmax over local (causal) and memory keys.

    q [B, nh, Tq, hd] rotated; k, v [B or 1, nkv, Tk, hd] (k rotated); query i sits at
    position q_pos0 + i and sees local keys 0 .. q_pos0 + i. mem_k, mem_v
    [B or 1, nkv, M, hd] (mem_k unrotated). topk: knn over memory (per query, per head).
    """
    B, nh, Tq, hd = q.shape
    nkv = k.shape[1]
    qg = q.reshape(B, nkv, nh // nkv * Tq, hd)             # heads of a kv group together
    if mem_k is not None and mem_k.shape[2] == 0:
        mem_k = mem_v = None
    if mem_k is not None and (topk is None or topk >= mem_k.shape[2]):
        out = MemoryAttention.apply(qg, k, v, mem_k, mem_v, q_pos0, Tq)
    else:
        out = plain_attention(qg, k, v, q_pos0, Tq, mem_k, mem_v, topk)
    return out.reshape(B, nh, Tq, hd)


def plain_attention(qg, k, v, q_pos0, Tq, mem_k=None, mem_v=None, topk=None):
    """MemoryAttention's result from materialised scores, which knn's top-k needs;
    also the reference that check_memory_attention holds the blocked form to."""
    scale = 1.0 / math.sqrt(qg.shape[-1])
    s_loc = torch.matmul(qg, k.transpose(-1, -2)) * scale  # [B, nkv, g*Tq, Tk]
    s_loc = s_loc.masked_fill(hidden_keys(k.shape[2], qg.shape[2], Tq, q_pos0), float('-inf'))
    if mem_k is None:
        return torch.matmul(torch.softmax(s_loc, dim=-1), v)
    s_mem = torch.matmul(qg, mem_k.transpose(-1, -2)) * scale
    if topk is not None and topk < s_mem.shape[-1]:
        thr = torch.topk(s_mem, topk, dim=-1).values[..., -1:]
        s_mem = s_mem.masked_fill(s_mem < thr, float('-inf'))
    p = torch.softmax(torch.cat([s_loc, s_mem], dim=-1), dim=-1)
    Tk = k.shape[2]
    return torch.matmul(p[..., :Tk], v) + torch.matmul(p[..., Tk:], mem_v)


def layer_forward(c, P, i, x, cache_k=None, cache_v=None, mem=None, topk=None,
                  want_kv=False):
    """One decoder block over x [B, T, H] appended after a local cache
    (cache_k/v [B or 1, nkv, Tc, hd], unrotated). mem: (mem_k, mem_v) or None.
    Returns (x, k_new, v_new) with k_new unrotated [B, nkv, T, hd]."""
    p = f'model.layers.{i}.'
    B, T, H = x.shape
    hd, nh, nkv = c.head_dim, c.num_attention_heads, c.num_key_value_heads
    h = rmsnorm(x, P[p + 'input_layernorm.weight'], c.rms_norm_eps)
    q = (h @ P[p + 'self_attn.q_proj.weight'].T).view(B, T, nh, hd).transpose(1, 2)
    k = (h @ P[p + 'self_attn.k_proj.weight'].T).view(B, T, nkv, hd).transpose(1, 2)
    v = (h @ P[p + 'self_attn.v_proj.weight'].T).view(B, T, nkv, hd).transpose(1, 2)
    Tc = 0 if cache_k is None else cache_k.shape[2]
    if cache_k is not None:
        kk = torch.cat([cache_k.expand(B, -1, -1, -1), k], dim=2)
        vv = torch.cat([cache_v.expand(B, -1, -1, -1), v], dim=2)
    else:
        kk, vv = k, v
    is_mem = i in c.mem_layers
    if not is_mem or c.mem_positionals:
        cos, sin = rope_cos_sin(c, torch.arange(Tc + T), x.dtype)
        qr = rotate(q, cos[Tc:], sin[Tc:])
        kr = rotate(kk, cos, sin)
    else:
        qr, kr = q, kk
    mk = mv = None
    if is_mem and mem is not None:
        mk, mv = mem
        if mk.shape[0] != B and mk.shape[0] != 1:
            raise ValueError('memory batch mismatch')
    a = attention(qr, kr, vv, Tc, mk, mv, topk)
    a = a.transpose(1, 2).reshape(B, T, H) @ P[p + 'self_attn.o_proj.weight'].T
    x = x + a
    h = rmsnorm(x, P[p + 'post_attention_layernorm.weight'], c.rms_norm_eps)
    m = F.silu(h @ P[p + 'mlp.gate_proj.weight'].T) * (h @ P[p + 'mlp.up_proj.weight'].T)
    x = x + m @ P[p + 'mlp.down_proj.weight'].T
    return x, k, v


def layer_kv(c, P, i, x):
    """The raw (unrotated) keys and values of block i for input x [B, T, H]."""
    p = f'model.layers.{i}.'
    B, T, _ = x.shape
    nkv, hd = c.num_key_value_heads, c.head_dim
    h = rmsnorm(x, P[p + 'input_layernorm.weight'], c.rms_norm_eps)
    k = (h @ P[p + 'self_attn.k_proj.weight'].T).view(B, T, nkv, hd).transpose(1, 2)
    v = (h @ P[p + 'self_attn.v_proj.weight'].T).view(B, T, nkv, hd).transpose(1, 2)
    return k, v


def lm_logits(c, P, x):
    x = rmsnorm(x, P['model.norm.weight'], c.rms_norm_eps)
    w = P['model.embed_tokens.weight'] if c.tie_word_embeddings else P['lm_head.weight']
    return x @ w.T


# ====================================================================== training
def first_window_kv(c, P, x):
    """Run token ids x [n, W] as first windows (no memory) up to the top memory layer;
    return {memory layer: (k, v)} with raw keys [n, nkv, W, hd]."""
    top = max(c.mem_layers)
    # F.embedding, not indexing: indexing's backward adds rows in a thread-dependent
    # order, and those last-bit differences made two runs of one seed diverge.
    h = F.embedding(x, P['model.embed_tokens.weight'])
    out = {}
    for i in range(top + 1):
        if i == top:
            k, v = layer_kv(c, P, i, h)
        else:
            h, k, v = layer_forward(c, P, i, h)
        if i in c.mem_layers:
            out[i] = (k, v)
    return out


def train_forward(c, P, ids, d, extra=None):
    """FoT cross-batch forward. ids [B, 2W]; returns logits of window 1 [B, W, V].

    Window 0 of every document is run as a first window (no memory) up to the top
    memory layer, keeping the memory layers' raw keys/values. Window 1 then runs all
    layers; its memory layers attend to local context + window 0 of the d documents of
    its group (its own and d-1 others), memory keys unrotated. When d > B, every
    document's memory is window 0 of all B documents plus d - B extra first windows
    (`extra` [d - B, W], computed without gradient)."""
    B, T2 = ids.shape
    W = T2 // 2
    kv0 = first_window_kv(c, P, ids[:, :W])
    kvx = None
    if d > B:
        assert extra is not None and extra.shape[0] == d - B
        with torch.no_grad():
            kvx = first_window_kv(c, P, extra)
    else:
        assert B % d == 0
    mems = {}
    for i, (k, v) in kv0.items():
        nkv, hd = k.shape[1], k.shape[3]
        if d > B:
            def grp(t, tx):
                t = torch.cat([t, tx], 0)                     # [d, nkv, W, hd]
                return t.transpose(0, 1).reshape(1, nkv, d * W, hd).expand(B, -1, -1, -1)
            mems[i] = (grp(k, kvx[i][0]), grp(v, kvx[i][1]))
        else:
            # group documents: [B/d, d, nkv, W, hd] -> [B/d, nkv, d*W, hd] -> per doc
            def grp(t):
                t = t.view(B // d, d, nkv, W, hd).transpose(1, 2).reshape(B // d, nkv, d * W, hd)
                return t.repeat_interleave(d, dim=0)
            mems[i] = (grp(k), grp(v))
    x = F.embedding(ids[:, W:], P['model.embed_tokens.weight'])
    for i in range(c.num_hidden_layers):
        x, _, _ = layer_forward(c, P, i, x, mem=mems.get(i))
    return lm_logits(c, P, x)


def d_schedule(step, steps, dmax):
    """Cross-batch group size: 1, 2, 4, ... up to dmax, each stage an equal share
    of the first 80% of training, dmax for the rest."""
    stages = [1]
    while stages[-1] * 2 <= dmax:
        stages.append(stages[-1] * 2)
    frac = step / max(steps, 1)
    n = len(stages)
    if frac >= 0.8 or n == 1:
        return stages[-1]
    return stages[min(int(frac / 0.8 * n), n - 1)]


def cmd_train(a):
    if not 0 < a.decay_frac <= 1:
        sys.exit(f'--decay-frac {a.decay_frac}: must lie in (0, 1]')
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    # Sharp attention over a large memory leaves most probabilities below 2^-126;
    # subnormal arithmetic made a d = 128 step twice as slow, and they add nothing.
    torch.set_flush_denormal(True)
    os.makedirs(a.out, exist_ok=True)
    if a.seed * 1_000_003 + a.data_offset + a.steps + 500_000 >= fot_data.EVAL_SEED_BASE:
        sys.exit('--seed/--data-offset/--steps would reach the evaluation seeds (>= '
                 f'{fot_data.EVAL_SEED_BASE}); use --seed 0 and a smaller --data-offset')
    if a.init:  # the fine-tuned model keeps its tokenizer
        tok_path = os.path.join(a.out, 'tokenizer.model')
        shutil.copyfile(os.path.join(a.init, 'tokenizer.model'), tok_path)
    else:
        tok_path = fot_data.build_tokenizer(os.path.join(a.out, 'tokenizer'), a.vocab)
    tok = fot_data.Tok(tok_path)
    fot_data.check_tokenizer(tok)
    c = Cfg(vocab_size=tok.vocab_size, hidden_size=a.hidden, intermediate_size=a.inter,
            num_hidden_layers=a.layers, num_attention_heads=a.heads,
            num_key_value_heads=1, max_position_embeddings=a.window,
            last_context_length=a.last_context, mem_layers=a.mem_layers,
            rope_theta=a.rope_theta, bos_token_id=tok.bos, eos_token_id=tok.eos)
    P = init_params(c, a.seed, a.offset_init)
    if a.init:
        # Fine-tuning stage: an exported model's weights, fresh optimizer, full
        # dictionaries from the first step, cross-batch d fixed at dmax.
        c0, P0 = load_hf(a.init)
        if c0.hf_dict() != c.hf_dict():
            sys.exit(f'--init {a.init}: its config.json differs from this command\'s model flags')
        for k in P:
            P[k].data.copy_(P0[k])
    params = list(P.values())
    decay = [p for n, p in P.items() if p.dim() == 2]
    nodecay = [p for n, p in P.items() if p.dim() == 1]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': a.wd},
                             {'params': nodecay, 'weight_decay': 0.0}],
                            lr=a.lr, betas=(0.9, 0.98), eps=1e-8)
    t0 = time.time()
    ema = None
    d, d_since, ema_macc = 1, 0, 0.0
    levels = [1, 2, 4, 8, 0] if a.sparse_curriculum else [0]  # records in window 0 (0: full)
    lvl = 0
    start = 0
    if a.init:
        d, lvl = a.dmax, len(levels) - 1
    if a.resume:
        ck = torch.load(a.resume)
        for k in P:
            P[k].data.copy_(ck['params'][k])
        start = ck['step'] if a.resume_step is None else a.resume_step
        if ck.get('opt') is not None:
            opt.load_state_dict(ck['opt'])
        st = ck.get('state') or {}
        d, d_since, ema_macc = st.get('d', a.resume_d), st.get('d_since', 0), st.get('ema_macc', 0.0)
        lvl, ema = st.get('lvl', len(levels) - 1), st.get('ema')
        d = min(d, a.dmax)
        print(f'resumed from {a.resume} at step {start} (optimizer state '
              f'{"restored" if ck.get("opt") is not None else "fresh"}), d {d}')
    log = open(os.path.join(a.out, 'train_log.txt'), 'a' if a.resume else 'w')
    # lr: warmup, constant, then a cosine to 10% over the last decay_frac of the steps
    decay_start = (1.0 - a.decay_frac) * a.steps
    decay_len = max(a.decay_frac * a.steps, 1.0)
    for step in range(start, a.steps):
        lr = a.lr * min(1.0, (step + 1) / a.warmup)
        t = min(max(step - decay_start, 0.0) / decay_len, 1.0)
        lr *= 0.5 * (1 + math.cos(math.pi * t)) * 0.9 + 0.1
        for gp in opt.param_groups:
            gp['lr'] = lr
        if a.d_up > 0:
            # adaptive curriculum: double d once memory answers are mostly right
            if ema_macc > a.d_up and d_since >= a.d_min_steps:
                if lvl < len(levels) - 1:
                    lvl, d_since, ema_macc = lvl + 1, 0, 0.0
                elif d < a.dmax:
                    d, d_since, ema_macc = d * 2, 0, 0.0
            d_since += 1
        else:
            d = d_schedule(step, a.steps, a.dmax)
        data_seed = a.seed * 1_000_003 + a.data_offset + step
        xs, ms = fot_data.train_batch(data_seed, tok, a.window, a.batch,
                                      p_passkey=a.p_passkey, p_copy=a.p_copy,
                                      n_sparse=levels[lvl])
        ids = torch.from_numpy(xs)
        mask = torch.from_numpy(ms)
        W = a.window
        extra = None
        if d > a.batch:
            n_extra = d - a.batch
            keys = fot_data.queried_keys(tok, xs[:, W:]) if a.p_neighbor > 0 else []
            n_nb = int(round(a.p_neighbor * n_extra)) if keys else 0
            windows = []
            if n_extra > n_nb:
                windows.append(fot_data.memory_windows(data_seed + 500_000, tok, W, n_extra - n_nb))
            if n_nb:
                windows.append(fot_data.neighbor_windows(data_seed + 500_000, tok, W, n_nb, keys))
            extra = torch.from_numpy(np.concatenate(windows))
        logits = train_forward(c, P, ids, d, extra)
        tgt = ids[:, W + 1:]
        mk = mask[:, W + 1:]
        m = (mk > 0).float()
        lp = F.cross_entropy(logits[:, :-1].reshape(-1, c.vocab_size), tgt.reshape(-1),
                             reduction='none').view_as(m)
        loss = (lp * m).sum() / m.sum().clamp(min=1)
        with torch.no_grad():
            hit = (logits[:, :-1].argmax(-1) == tgt).float()
            m1, m2 = (mk == 1).float(), (mk == 2).float()
            macc = (hit * m1).sum() / m1.sum().clamp(min=1)
            lacc = (hit * m2).sum() / m2.sum().clamp(min=1)
            m3 = (mk == 3).float()
            cacc = (hit * m3).sum() / m3.sum().clamp(min=1)
            ema_macc = 0.9 * ema_macc + 0.1 * macc.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % a.log_every == 0 or step == a.steps - 1:
            line = (f'step {step} recs {levels[lvl] or "full"} d {d} lr {lr:.2e} loss {loss.item():.4f} ema {ema:.4f} '
                    f'mem-acc {macc.item():.3f} local-acc {lacc.item():.3f} copy-acc {cacc.item():.3f} t {time.time() - t0:.0f}s')
            print(line, flush=True)
            log.write(line + '\n')
            log.flush()
        if a.save_every and step and step % a.save_every == 0:
            save_ckpt(os.path.join(a.out, 'ckpt.pt'), c, P, step + 1, opt,
                      dict(d=d, d_since=d_since, ema_macc=ema_macc, lvl=lvl, ema=ema))
    save_ckpt(os.path.join(a.out, 'ckpt.pt'), c, P, a.steps, opt,
              dict(d=d, d_since=d_since, ema_macc=ema_macc, lvl=lvl, ema=ema))
    line = f'done {a.steps} steps in {time.time() - t0:.0f}s threads {a.threads}'
    print(line)
    log.write(line + '\n')
    log.close()


def save_ckpt(path, c, P, step, opt=None, state=None):
    torch.save({'cfg': c.hf_dict(), 'params': {k: v.detach() for k, v in P.items()},
                'step': step, 'opt': None if opt is None else opt.state_dict(),
                'state': state}, path + '.tmp')
    os.replace(path + '.tmp', path)


def load_ckpt(path):
    ck = torch.load(path)
    return Cfg.from_hf(ck['cfg']), {k: v.float() for k, v in ck['params'].items()}


# ====================================================================== inference (DESIGN §1)
class Inference:
    """DESIGN.md §1 inference: windows of W from the start, the last L tokens as the
    cached last window, memory layers with one softmax over local + memory, greedy
    decoding whose local cache flushes to memory when it would exceed W."""

    def __init__(self, c, P, dtype=torch.float32, use_memory=True, topk=None):
        self.c, self.dtype, self.use_memory, self.topk = c, dtype, use_memory, topk
        self.P = {k: v.to(dtype) for k, v in P.items()}
        nkv, hd = c.num_key_value_heads, c.head_dim
        self.mem = {i: [torch.zeros(1, nkv, 0, hd, dtype=dtype)] * 2 for i in c.mem_layers}
        self.cache = None

    def mem_size(self):
        return self.mem[self.c.mem_layers[0]][0].shape[2] if self.c.mem_layers else 0

    def _run(self, ids, cache=None, upto=None, kv_only_last=False):
        """Run token ids [B, T] after `cache` (list per layer of (k, v)) through
        layers 0..upto. Returns (hidden, new per-layer (k, v))."""
        c, P = self.c, self.P
        x = F.embedding(ids, P['model.embed_tokens.weight'])
        n = c.num_hidden_layers if upto is None else upto + 1
        kv = []
        for i in range(n):
            if kv_only_last and i == n - 1:
                # only this layer's keys/values are needed (a non-last window's top
                # memory layer): its attention output would be discarded
                kv.append(layer_kv(c, P, i, x))
                break
            ck, cv = (None, None) if cache is None else cache[i]
            mem = self.mem.get(i) if self.use_memory else None
            x, k, v = layer_forward(c, P, i, x, ck, cv, mem, self.topk)
            kv.append((k, v))
        return x, kv

    def _append_memory(self, kv):
        for i in self.c.mem_layers:
            k, v = kv[i]
            mk, mv = self.mem[i]
            self.mem[i] = [torch.cat([mk, k[:1]], 2), torch.cat([mv, v[:1]], 2)]

    def prefill_windows(self, ids, want_logits=False):
        """Process ids (1-D) in windows of W as non-last windows: each window's
        memory-layer keys/values go to memory after the window."""
        W = self.c.max_position_embeddings
        out = []
        upto = None if (want_logits or not self.c.mem_layers) else max(self.c.mem_layers)
        if upto is not None and len(self.c.mem_layers) == 1:
            # one memory layer and no logits wanted: the memory layer's keys/values
            # depend only on the layers below it, which have no memory, so windows are
            # independent: batch them and concatenate once
            chunks = [torch.as_tensor(ids[s:s + W]) for s in range(0, len(ids) - len(ids) % W, W)]
            ks, vs = [], []
            for b in range(0, len(chunks), 64):
                _, kv = self._run(torch.stack(chunks[b:b + 64]), upto=upto, kv_only_last=True)
                k, v = kv[upto]
                ks.append(k.transpose(0, 1).reshape(1, k.shape[1], -1, k.shape[3]))
                vs.append(v.transpose(0, 1).reshape(1, v.shape[1], -1, v.shape[3]))
            if len(ids) % W:
                _, kv = self._run(torch.as_tensor(ids[len(ids) - len(ids) % W:])[None],
                                  upto=upto, kv_only_last=True)
                ks.append(kv[upto][0])
                vs.append(kv[upto][1])
            i = upto
            mk, mv = self.mem[i]
            self.mem[i] = [torch.cat([mk] + ks, 2), torch.cat([mv] + vs, 2)]
            return None
        for s in range(0, len(ids), W):
            w = torch.as_tensor(ids[s:s + W])[None]
            x, kv = self._run(w, upto=upto, kv_only_last=upto is not None)
            if want_logits:
                out.append(lm_logits(self.c, self.P, x)[0])
            self._append_memory(kv)
        return torch.cat(out) if out else None

    def forward_long(self, ids, L=None):
        """Logits for every token of ids (the reference's use_cache=False call), then
        the last window stays as the local cache."""
        L = self.c.last_context_length if L is None else L
        T = len(ids)
        split = max(T - L, 0)
        a = self.prefill_windows(ids[:split], want_logits=True)
        b = self.feed(torch.as_tensor(ids[split:])[None])
        return b[0] if a is None else torch.cat([a, b[0]])

    def feed(self, ids):
        """Feed ids [B, T] into the local cache (flushing it first if it would exceed
        W); returns logits [B, T, V]. The cache may be shared (batch 1) by B rows."""
        c = self.c
        W = c.max_position_embeddings
        cur = 0 if self.cache is None else self.cache[0][0].shape[2]
        if self.cache is not None and cur + ids.shape[1] > W:
            if ids.shape[0] != self.cache[0][0].shape[0]:
                raise ValueError('flush of a shared cache with a different batch')
            self._flush()
            cur = 0
        assert ids.shape[1] <= W
        x, kv = self._run(ids, self.cache)
        if self.cache is None:
            self.cache = kv
        else:
            B = ids.shape[0]
            self.cache = [(torch.cat([ck.expand(B, -1, -1, -1), k], 2),
                           torch.cat([cv.expand(B, -1, -1, -1), v], 2))
                          for (ck, cv), (k, v) in zip(self.cache, kv)]
        return lm_logits(c, self.P, x)

    def _flush(self):
        for i in self.c.mem_layers:
            k, v = self.cache[i]
            mk, mv = self.mem[i]
            B = k.shape[0]
            if mk.shape[0] != B:
                mk, mv = mk.expand(B, -1, -1, -1), mv.expand(B, -1, -1, -1)
            self.mem[i] = [torch.cat([mk, k], 2), torch.cat([mv, v], 2)]
        self.cache = None


def greedy(inf, prompt_logits_last, n):
    """Greedy continuation of n tokens from the last logits [B, V]."""
    toks, logits = [], []
    nxt = prompt_logits_last.argmax(-1)
    for _ in range(n):
        toks.append(nxt)
        lg = inf.feed(nxt[:, None])[:, -1]
        logits.append(lg)
        nxt = lg.argmax(-1)
    return torch.stack(toks, 1), torch.stack(logits, 1)


def eval_doc(c, P, d, use_memory=True, topk=None, batch=16):
    """Exact-match of the document's queries. All queries of a document have the same
    length, so the window split is the same for each: memory is built once from
    doc[:mem_len], the doc tail of the last window is prefilled once as the shared
    local cache, then each query (batched) is fed and answered greedily."""
    doc, mem_len = d['doc'], d['mem_len']
    inf = Inference(c, P, use_memory=use_memory, topk=topk)
    with torch.no_grad():
        inf.prefill_windows(doc[:mem_len])
        tail = torch.as_tensor(doc[mem_len:])[None]
        inf.feed(tail)
        base_cache = inf.cache
        hits = []
        qs = d['queries']
        for s in range(0, len(qs), batch):
            chunk = qs[s:s + batch]
            q = torch.as_tensor(np.stack([x[0] for x in chunk]))
            ans = np.stack([x[1] for x in chunk])
            inf.cache = base_cache
            lg = inf.feed(q)[:, -1]
            out, _ = greedy(inf, lg, ans.shape[1])
            hits += list((out.numpy() == ans).all(1))
    # records cut by a window boundary (key and value in different windows)
    W = c.max_position_embeddings
    span = d.get('record_len', 0)
    cut = [span > 0 and p // W != (p + span - 1) // W for p in d.get('record_pos', [])]
    cut += [False] * (len(hits) - len(cut))
    uncut_ok = sum(h for h, k in zip(hits, cut) if not k)
    return sum(hits), len(qs), inf.mem_size(), uncut_ok, len(qs) - sum(cut)


def cmd_eval(a):
    torch.set_num_threads(a.threads)
    c, P = load_ckpt(a.ckpt)
    tok = fot_data.Tok(a.tokenizer or os.path.join(os.path.dirname(a.ckpt), 'tokenizer.model'))
    L = c.last_context_length
    dict_window = c.max_position_embeddings if a.layout == 'aligned' else 0
    rows = []
    for task in a.tasks.split(','):
        for mem in [int(x) for x in a.mem.split(',')]:
            for mode in a.modes.split(','):
                t0 = time.time()
                ok = n = uok = un = 0
                msize = 0
                ndocs = a.docs if task == 'dict' else a.passkey_docs
                for s in range(ndocs):
                    if task == 'dict':
                        d = fot_data.dict_eval_doc(a.seed + s, tok, mem, L, a.queries,
                                                   window=dict_window)
                    else:
                        d = fot_data.passkey_eval_doc(a.seed + s, tok, mem, L)
                    use_mem = mode != 'off'
                    topk = int(mode.split(':')[1]) if mode.startswith('knn:') else None
                    o, k, msize, uo, uk = eval_doc(c, P, d, use_mem, topk)
                    ok += o
                    n += k
                    uok += uo
                    un += uk
                row = (f'{task:8s} mem {mem:>8d} (memory entries {msize:>8d}) {mode:8s} '
                       f'exact-match {ok}/{n} = {100.0 * ok / max(n, 1):.1f}%  '
                       + (f'(records not cut by a window boundary: {uok}/{un} = '
                          f'{100.0 * uok / max(un, 1):.1f}%) ' if task == 'dict' else '')
                       + f'[{time.time() - t0:.0f}s]')
                print(row, flush=True)
                rows.append(row)
    if a.out:
        with open(a.out, 'a') as f:
            f.write('\n'.join(rows) + '\n')


# ====================================================================== export / golden
def write_safetensors(path, tensors):
    """Minimal safetensors writer: u64 header length, JSON header (padded with spaces
    to a multiple of 8 bytes), then the raw little-endian F32 data."""
    header, off, blobs = {}, 0, []
    for name, t in tensors.items():
        b = np.ascontiguousarray(t.detach().cpu().numpy().astype('<f4')).tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, m in h.items():
        if name == '__metadata__':
            continue
        assert m['dtype'] == 'F32'
        s, e = m['data_offsets']
        out[name] = torch.from_numpy(np.frombuffer(data[s:e], dtype='<f4').copy()).view(m['shape'])
    return out


def load_hf(folder):
    with open(os.path.join(folder, 'config.json')) as f:
        c = Cfg.from_hf(json.load(f))
    return c, read_safetensors(os.path.join(folder, 'model.safetensors'))


def cmd_export(a):
    c, P = load_ckpt(a.ckpt)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, 'config.json'), 'w') as f:
        json.dump(c.hf_dict(), f, indent=2, sort_keys=True)
        f.write('\n')
    names = param_shapes(c)
    write_safetensors(os.path.join(a.out, 'model.safetensors'), {n: P[n] for n in names})
    src = a.tokenizer or os.path.join(os.path.dirname(a.ckpt), 'tokenizer.model')
    if os.path.abspath(src) != os.path.abspath(os.path.join(a.out, 'tokenizer.model')):
        shutil.copyfile(src, os.path.join(a.out, 'tokenizer.model'))
    # round trip: the exported folder gives the same logits as the checkpoint
    c2, P2 = load_hf(a.out)
    ids = np.arange(3 * c.max_position_embeddings) % c.vocab_size
    l1 = Inference(c, P).forward_long(ids)
    l2 = Inference(c2, P2).forward_long(ids)
    print('export ok, round-trip max diff', float((l1 - l2).abs().max()))


def check_memory_attention():
    """MemoryAttention's output and gradients, in blocks of 16 rows, against autograd
    through plain_attention, in float64, for a shared and a per-document memory."""
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for Bm in (1, 3):
        B, R, Tq, Tk, M, q_pos0 = 3, 40, 10, 14, 300, 4
        ins = [torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
               for s in ((B, 1, R, 32), (B, 1, Tk, 32), (B, 1, Tk, 32), (Bm, 1, M, 32),
                         (Bm, 1, M, 32))]
        q, k, v, mk, mv = ins
        ref = plain_attention(q, k, v, q_pos0, Tq, mk, mv)
        out = MemoryAttention.apply(q, k, v, mk, mv, q_pos0, Tq, 16)  # 3 blocks per row set
        dout = torch.randn(ref.shape, generator=g, dtype=torch.float64)
        for x, y in zip([ref, *torch.autograd.grad(ref, ins, dout)],
                        [out, *torch.autograd.grad(out, ins, dout)]):
            worst = max(worst, float((x - y).abs().max()))
    print(f'blocked memory attention: output and gradients max|diff| {worst:.2e}')
    if worst > 1e-10:
        sys.exit('blocked memory attention disagrees with the plain softmax')


def cmd_golden(a):
    check_memory_attention()
    root = a.golden
    worst = 0.0
    for name in sorted(os.listdir(root)):
        f = os.path.join(root, name)
        if not os.path.isdir(f):
            continue
        c, P = load_hf(f)
        meta = json.load(open(os.path.join(f, 'meta.json')))
        ids = np.load(os.path.join(f, 'input_ids.npy'))
        dt = torch.float64
        r = {}
        r['nocache'] = Inference(c, P, dt).forward_long(ids, meta['last_context_length_nocache'])
        r['cache'] = Inference(c, P, dt).forward_long(ids, meta['last_context_length_cache'])
        r['nomem'] = Inference(c, P, dt, use_memory=False).forward_long(
            ids, meta['last_context_length_nocache'])
        inf = Inference(c, P, dt)
        lg = inf.forward_long(ids, meta['last_context_length_greedy'])
        toks, glog = greedy(inf, lg[-1:], meta['greedy_steps'])
        r['greedy_logits'] = glog[0]
        line = [name]
        for k, v in r.items():
            ref = torch.from_numpy(np.load(os.path.join(f, f'logits_{k}.npy') if k != 'greedy_logits'
                                           else os.path.join(f, 'greedy_logits.npy'))).to(dt)
            diff = float((v - ref).abs().max())
            worst = max(worst, diff)
            line.append(f'{k} {diff:.2e}')
        same = np.array_equal(toks[0].numpy(), np.load(os.path.join(f, 'greedy.npy')))
        line.append(f'greedy tokens {"same" if same else "DIFFER"}')
        print('  '.join(line))
    print(f'worst max|diff| {worst:.2e}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    t = sub.add_parser('train')
    t.add_argument('--out', required=True)
    t.add_argument('--seed', type=int, default=0)
    t.add_argument('--threads', type=int, default=2)
    t.add_argument('--vocab', type=int, default=256)
    t.add_argument('--hidden', type=int, default=128)
    t.add_argument('--inter', type=int, default=384)
    t.add_argument('--layers', type=int, default=4)
    t.add_argument('--heads', type=int, default=4)
    t.add_argument('--window', type=int, default=128)
    t.add_argument('--last-context', type=int, default=64)
    t.add_argument('--mem-layers', type=int, nargs='+', default=[2])
    t.add_argument('--rope-theta', type=float, default=1e6)
    t.add_argument('--steps', type=int, default=1200)
    t.add_argument('--batch', type=int, default=16)
    t.add_argument('--dmax', type=int, default=32)
    t.add_argument('--d-up', type=float, default=0.85,
                   help='double d when the EMA of memory-answer accuracy exceeds this '
                        '(0: fixed schedule over the steps)')
    t.add_argument('--d-min-steps', type=int, default=50)
    t.add_argument('--lr', type=float, default=2e-3)
    t.add_argument('--wd', type=float, default=0.01)
    t.add_argument('--warmup', type=int, default=100)
    t.add_argument('--decay-frac', type=float, default=0.1,
                   help='the learning rate stays at --lr after warmup, then falls by a cosine '
                        'to 10%% over this last fraction of the steps (1: cosine throughout)')
    t.add_argument('--p-passkey', type=float, default=0.15)
    t.add_argument('--offset-init', type=float, default=16.0,
                   help='initial peak score of the offset heads below the memory layer (0: off)')
    t.add_argument('--sparse-curriculum', type=int, default=1,
                   help='start with 1, 2, 4, 8 records in window 0 before full dictionaries')
    t.add_argument('--p-copy', type=float, default=0.0,
                   help='share of copy examples (dense induction through memory)')
    t.add_argument('--init', help='fine-tune: start from this exported model folder (fresh '
                   'optimizer, full dictionaries, d = dmax throughout)')
    t.add_argument('--data-offset', type=int, default=0,
                   help='added to the data seeds, so a fine-tuning stage sees new documents '
                   '(keep seed offsets + steps + 500000 below the evaluation base 1000000)')
    t.add_argument('--p-neighbor', type=float, default=0.0,
                   help='share of the extra memory windows (d > batch) filled with one- and '
                   'two-letter neighbours of the batch\'s queried keys')
    t.add_argument('--resume', help='continue from this ckpt.pt')
    t.add_argument('--resume-step', type=int, help='step of a checkpoint that lacks it')
    t.add_argument('--resume-d', type=int, default=16, help='d of a checkpoint that lacks it')
    t.add_argument('--log-every', type=int, default=25)
    t.add_argument('--save-every', type=int, default=200)
    e = sub.add_parser('eval')
    e.add_argument('--ckpt', required=True)
    e.add_argument('--tokenizer')
    e.add_argument('--threads', type=int, default=2)
    e.add_argument('--tasks', default='dict')
    e.add_argument('--mem', default='2048,4096')
    e.add_argument('--modes', default='dense,off')
    e.add_argument('--docs', type=int, default=2)
    e.add_argument('--passkey-docs', type=int, default=20)
    e.add_argument('--queries', type=int, default=100)
    e.add_argument('--seed', type=int, default=0)
    e.add_argument('--layout', choices=['aligned', 'stream'], default='aligned',
                   help='dict: no record straddles a window boundary (aligned), or records '
                        'back to back (stream)')
    e.add_argument('--out')
    x = sub.add_parser('export')
    x.add_argument('--ckpt', required=True)
    x.add_argument('--tokenizer')
    x.add_argument('--out', required=True)
    g = sub.add_parser('golden')
    g.add_argument('--golden', default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    '..', 'tests', 'golden'))
    a = ap.parse_args()
    {'train': cmd_train, 'eval': cmd_eval, 'export': cmd_export, 'golden': cmd_golden}[a.cmd](a)


if __name__ == '__main__':
    main()
