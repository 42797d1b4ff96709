#!/usr/bin/python3
"""Seeded synthetic long-context retrieval data for the fotserve FoT model.

Two tasks, both built so the answer is only reachable through memory:

* dictionary: a stream of records ``KEY=VALUE;`` (KEY: upper-case letters, VALUE:
  digits, no spaces), later queried as ``?KEY=``; the answer is ``VALUE;`` (the
  ``;`` terminates it).
* passkey: filler sentences with ``the pass key is 12345. remember it. 12345 is the
  pass key.`` somewhere inside; at the end ``what is the pass key? the pass key is``;
  the answer is `` 12345.`` (the ``.`` terminates it).

Every symbol of a record (A-Z, 0-9, ``=``, ``;``, ``?``) is a single SentencePiece
piece (user-defined symbol), so token ids are built directly here and equal what
SentencePiece gives for the text (``check_tokenizer`` verifies it).

Documents of any length (a few thousand to millions of tokens) come from
``dict_eval_doc`` / ``passkey_eval_doc``; training pairs of windows from
``train_dict_example`` / ``train_passkey_example``. Everything is driven by a
``numpy.random.Generator``: the same seed gives the same data. Training uses seeds
< EVAL_SEED_BASE; evaluation uses seeds >= EVAL_SEED_BASE, so evaluation documents
are fresh.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

EVAL_SEED_BASE = 1_000_000

LETTERS = [chr(ord('A') + i) for i in range(26)]
DIGITS = [str(i) for i in range(10)]
PUNCT = ['=', ';', '?']
USER_SYMBOLS = LETTERS + DIGITS + PUNCT

NOUNS = ('grass sky sun moon river tree stone bird house road hill cloud sea field '
         'lamp door book cat dog apple').split()
ADJS = ('green blue yellow red quiet warm cold bright dark old new small big soft '
        'calm wide').split()
VERBS = 'sees finds likes follows passes meets'.split()
FIXED = ['here we go.', 'there and back again.']

PASS_QUESTION = 'what is the pass key? the pass key is'


def filler_sentence(rng):
    r = rng.integers(0, 10)
    if r == 0:
        return FIXED[rng.integers(0, len(FIXED))]
    if r < 6:
        return f'the {NOUNS[rng.integers(len(NOUNS))]} is {ADJS[rng.integers(len(ADJS))]}.'
    return (f'a {ADJS[rng.integers(len(ADJS))]} {NOUNS[rng.integers(len(NOUNS))]} '
            f'{VERBS[rng.integers(len(VERBS))]} the {NOUNS[rng.integers(len(NOUNS))]}.')


def passkey_sentence(pk):
    return f'the pass key is {pk}. remember it. {pk} is the pass key.'


def tokenizer_corpus(seed=0, n_lines=4000):
    """Text the SentencePiece model is trained on (filler, passkey lines, records)."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_lines):
        k = rng.integers(0, 4)
        if k == 0:
            pk = ''.join(DIGITS[d] for d in rng.integers(0, 10, 5))
            lines.append(passkey_sentence(pk) + ' ' + PASS_QUESTION + ' ' + pk + '.')
        elif k == 1:
            recs = []
            for _ in range(5):
                key = ''.join(LETTERS[c] for c in rng.integers(0, 26, 4))
                val = ''.join(DIGITS[c] for c in rng.integers(0, 10, 4))
                recs.append(f'{key}={val};')
            lines.append(''.join(recs) + '?' + recs[0])
        else:
            lines.append(' '.join(filler_sentence(rng) for _ in range(6)))
    return lines


def build_tokenizer(out_prefix, vocab_size=256, seed=0):
    """Train tokenizer.model with Debian's spm_train (deterministic: one thread)."""
    with tempfile.TemporaryDirectory() as td:
        corpus = os.path.join(td, 'corpus.txt')
        with open(corpus, 'w') as f:
            f.write('\n'.join(tokenizer_corpus(seed)) + '\n')
        cmd = ['spm_train', f'--input={corpus}', f'--model_prefix={out_prefix}',
               f'--vocab_size={vocab_size}', '--model_type=unigram',
               '--character_coverage=1.0', '--split_digits=true',
               f'--user_defined_symbols={",".join(USER_SYMBOLS)}',
               '--hard_vocab_limit=false', '--num_threads=1', '--seed_sentencepiece_size=100000',
               '--bos_id=1', '--eos_id=2', '--unk_id=0', '--pad_id=-1']
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if os.path.exists(out_prefix + '.vocab'):
        os.remove(out_prefix + '.vocab')
    return out_prefix + '.model'


class Tok:
    """Token ids of the symbols and sentences the generators use."""

    def __init__(self, model_path):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=model_path)
        self.vocab_size = self.sp.get_piece_size()
        self.bos = self.sp.bos_id()
        self.eos = self.sp.eos_id()
        pid = self.sp.piece_to_id
        self.letter = np.array([pid(c) for c in LETTERS], dtype=np.int64)
        self.digit = np.array([pid(c) for c in DIGITS], dtype=np.int64)
        self.eq, self.semi, self.qmark = pid('='), pid(';'), pid('?')
        for s in USER_SYMBOLS:
            assert pid(s) != self.sp.unk_id(), s
        self._cache = {}
        # Filler is tokenized one sentence at a time; every sentence starts a new
        # whitespace-separated word, so concatenation equals encoding the joined text.
        self.question = self.enc(PASS_QUESTION)

    def enc(self, text):
        ids = self._cache.get(text)
        if ids is None:
            ids = self.sp.encode(text)
            self._cache[text] = ids
        return ids

    def decode(self, ids):
        return self.sp.decode([int(i) for i in ids])

    def filler(self, rng, n_tokens):
        out = []
        while len(out) < n_tokens:
            out.extend(self.enc(filler_sentence(rng)))
        return out[:n_tokens]

    def passkey_tokens(self, pk):
        return self.enc(passkey_sentence(pk))

    def passkey_answer(self, pk):
        # what follows "... the pass key is": " 12345." -> tokens of the text suffix
        full = self.enc(PASS_QUESTION + ' ' + pk + '.')
        assert full[:len(self.question)] == self.question
        return full[len(self.question):]


# ---------------------------------------------------------------- dictionary records
def random_keys(rng, n, key_len, mutate_frac=0.0):
    """n distinct keys (arrays of letter indices). A fraction are one-letter mutations
    of earlier keys (hard negatives)."""
    space = 26 ** key_len
    keys, seen = [], set()
    while len(keys) < n:
        if keys and mutate_frac > 0 and rng.random() < mutate_frac:
            base = keys[rng.integers(len(keys))].copy()
            base[rng.integers(key_len)] = rng.integers(26)
            k = base
        else:
            k = rng.integers(0, 26, key_len)
        code = int(np.dot(k, 26 ** np.arange(key_len)))
        if code in seen:
            if len(seen) >= space:
                raise ValueError('key space exhausted')
            continue
        seen.add(code)
        keys.append(k)
    return keys


def distinct_keys_fast(rng, n, key_len):
    """n distinct keys for large documents (sampling without replacement)."""
    codes = rng.choice(26 ** key_len, size=n, replace=False)
    return [(codes // 26 ** np.arange(key_len)) % 26 for codes in codes]


def record_tokens(tok, key, val):
    return np.concatenate([tok.letter[key], [tok.eq], tok.digit[val], [tok.semi]])


def query_tokens(tok, key):
    return np.concatenate([[tok.qmark], tok.letter[key], [tok.eq]])


def answer_tokens(tok, val):
    return np.concatenate([tok.digit[val], [tok.semi]])


def record_text(key, val):
    return ''.join(LETTERS[c] for c in key) + '=' + ''.join(DIGITS[c] for c in val) + ';'


# ---------------------------------------------------------------- training examples
def train_dict_example(rng, tok, W, key_len=4, val_len=4, p_query=0.5, p_local=0.15,
                       mutate_frac=0.3):
    """Two windows of W tokens: window 0 is a cut of a record stream; window 1
    continues it with new records, queries for records wholly inside window 0 (answer
    only in memory) and a few queries for records earlier in window 1 (local).
    Returns (ids[2W], loss_mask[2W]): 1 on answers of memory queries, 2 on answers
    of local queries, 0 elsewhere."""
    rec_len = key_len + val_len + 2
    n_rec = W // rec_len + 3
    keys = random_keys(rng, n_rec + W // rec_len + 2, key_len, mutate_frac)
    vals = [rng.integers(0, 10, val_len) for _ in keys]
    phase = int(rng.integers(0, rec_len))
    stream, starts = [], []
    pos = -phase
    for i in range(n_rec):
        starts.append(pos)
        stream.append(record_tokens(tok, keys[i], vals[i]))
        pos += rec_len
    stream = np.concatenate(stream)[phase:]
    w0 = stream[:W]
    full = [i for i, s in enumerate(starts) if s >= 0 and s + rec_len <= W]
    rest = list(stream[W:pos])           # the record straddling the boundary, completed
    ids = list(w0) + rest
    mask = [0] * len(ids)
    order = list(rng.permutation(full))
    nxt = n_rec
    local = []                            # records written in window 1
    while len(ids) < 2 * W:
        r = rng.random()
        if order and r < p_query:
            i = order.pop()
            q, a = query_tokens(tok, keys[i]), answer_tokens(tok, vals[i])
            ids += list(q) + list(a)
            mask += [0] * len(q) + [1] * len(a)
        elif local and r < p_query + p_local:
            i = local.pop(int(rng.integers(len(local))))
            q, a = query_tokens(tok, keys[i]), answer_tokens(tok, vals[i])
            ids += list(q) + list(a)
            mask += [0] * len(q) + [2] * len(a)
        else:
            if nxt >= len(keys):
                keys.append(random_keys(rng, 1, key_len)[0])
                vals.append(rng.integers(0, 10, val_len))
            r = record_tokens(tok, keys[nxt], vals[nxt])
            local.append(nxt)
            nxt += 1
            ids += list(r)
            mask += [0] * len(r)
    return np.array(ids[:2 * W], dtype=np.int64), np.array(mask[:2 * W], dtype=np.int64)


def train_passkey_example(rng, tok, W):
    """Window 0: filler with the passkey sentence wholly inside; window 1: filler,
    the question, the answer, filler. The mask covers the answer."""
    pk = ''.join(DIGITS[d] for d in rng.integers(0, 10, 5))
    pks = tok.passkey_tokens(pk)
    at = int(rng.integers(0, W - len(pks) + 1))
    w0 = tok.filler(rng, at) + pks
    w0 = w0 + tok.filler(rng, W - len(w0))
    ans = tok.passkey_answer(pk)
    q = tok.question
    at1 = int(rng.integers(0, W - len(q) - len(ans) + 1))
    w1 = tok.filler(rng, at1) + q + ans
    m1 = [0] * (at1 + len(q)) + [1] * len(ans)
    w1 = w1 + tok.filler(rng, W - len(w1))
    m1 = m1 + [0] * (W - len(m1))
    return (np.array(w0 + w1, dtype=np.int64),
            np.array([0] * W + m1, dtype=np.int64))


def train_sparse_dict_example(rng, tok, W, n, key_len=4, val_len=4):
    """Curriculum: window 0 is filler with n records wholly inside it; window 1 is
    filler with queries for all n records (answers masked 1). With few records the
    values present in memory are few, so copying from memory pays off at once."""
    keys = random_keys(rng, n, key_len)
    vals = [rng.integers(0, 10, val_len) for _ in range(n)]
    recs = [list(record_tokens(tok, k, v)) for k, v in zip(keys, vals)]
    free = W - sum(len(r) for r in recs)
    cuts = np.sort(rng.integers(0, free + 1, n))
    fill = tok.filler(rng, free)
    w0, prev = [], 0
    for c, r in zip(cuts, recs):
        w0 += fill[prev:c] + r
        prev = c
    w0 += fill[prev:]
    ids, mask = list(w0), [0] * W
    for i in rng.permutation(n):
        gap = tok.filler(rng, int(rng.integers(0, 8)))
        q, a = query_tokens(tok, keys[i]), answer_tokens(tok, vals[i])
        ids += gap + list(q) + list(a)
        mask += [0] * (len(gap) + len(q)) + [1] * len(a)
    ids += tok.filler(rng, max(2 * W - len(ids), 0))
    mask += [0] * max(2 * W - len(mask), 0)
    return np.array(ids[:2 * W], dtype=np.int64), np.array(mask[:2 * W], dtype=np.int64)


def train_copy_example(rng, tok, W, key_len=4, val_len=4, ctx=4):
    """Dense induction through memory: window 0 is a cut of a record stream; window 1
    is made of random spans of window 0 copied verbatim. Every token of a span after
    its first `ctx` tokens is predictable only from memory (mask 3)."""
    rec_len = key_len + val_len + 2
    keys = random_keys(rng, W // rec_len + 2, key_len, 0.3)
    stream = np.concatenate([record_tokens(tok, k, rng.integers(0, 10, val_len)) for k in keys])
    phase = int(rng.integers(0, rec_len))
    w0 = stream[phase:phase + W]
    ids, mask = list(w0), [0] * W
    while len(ids) < 2 * W:
        n = int(rng.integers(ctx + 4, 4 * rec_len))
        s = int(rng.integers(0, W - n))
        ids += list(w0[s:s + n])
        mask += [0] * ctx + [3] * (n - ctx)
    return np.array(ids[:2 * W], dtype=np.int64), np.array(mask[:2 * W], dtype=np.int64)


def memory_windows(seed, tok, W, n, p_passkey=0.15):
    """n extra first windows (record-stream cuts or passkey filler) used only as
    memory: the distractor contexts of cross-batch training when d exceeds the batch."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        if rng.random() < p_passkey:
            x, _ = train_passkey_example(rng, tok, W)
        else:
            x, _ = train_dict_example(rng, tok, W)
        out.append(x[:W])
    return np.stack(out)


def queried_keys(tok, ids):
    """The keys asked for ("?KEY=") in token rows `ids` [n, T], as letter-index arrays."""
    letter_index = {int(t): i for i, t in enumerate(tok.letter)}
    keys = []
    for row in np.asarray(ids):
        for j in np.flatnonzero(row[:-5] == tok.qmark):
            key = [letter_index.get(int(t)) for t in row[j + 1:j + 5]]
            if None not in key and row[j + 5] == tok.eq:
                keys.append(np.array(key))
    return keys


def neighbor_windows(seed, tok, W, n, keys, key_len=4, val_len=4, p_two=0.7):
    """n memory-only windows of records whose keys differ from one of `keys` in one
    letter or (with probability p_two) two, with random values. A 64k-token memory
    holds ~1.4 one-letter and ~50 two-letter neighbours of every key; spread over a
    cross-batch memory of a few thousand tokens there are almost none, so the
    fine-tuning stage puts them there on purpose."""
    rng = np.random.default_rng(seed)
    rec_len = key_len + val_len + 2
    out = []
    for _ in range(n):
        recs = []
        for _ in range(W // rec_len + 2):
            key = keys[rng.integers(len(keys))].copy()
            changes = 2 if rng.random() < p_two else 1
            for pos in rng.choice(key_len, changes, replace=False):
                key[pos] = (key[pos] + 1 + rng.integers(25)) % 26  # a different letter
            recs.append(record_tokens(tok, key, rng.integers(0, 10, val_len)))
        stream = np.concatenate(recs)
        phase = int(rng.integers(0, rec_len))
        out.append(stream[phase:phase + W])
    return np.stack(out)


def train_batch(seed, tok, W, batch, p_passkey=0.2, p_copy=0.0, n_sparse=0, **kw):
    """A batch of `batch` two-window examples from one seed (< EVAL_SEED_BASE)."""
    assert seed < EVAL_SEED_BASE
    rng = np.random.default_rng(seed)
    xs, ms = [], []
    for _ in range(batch):
        r = rng.random()
        if r < p_passkey:
            x, m = train_passkey_example(rng, tok, W)
        elif r < p_passkey + p_copy:
            x, m = train_copy_example(rng, tok, W)
        elif n_sparse:
            x, m = train_sparse_dict_example(rng, tok, W, n_sparse)
        else:
            x, m = train_dict_example(rng, tok, W, **kw)
        xs.append(x)
        ms.append(m)
    return np.stack(xs), np.stack(ms)


# ---------------------------------------------------------------- evaluation documents
def dict_eval_doc(seed, tok, mem_tokens, L, n_queries, key_len=4, val_len=4, window=0):
    """A dictionary document for evaluation with a fresh seed.

    The document is a BOS followed by records, long enough that, with a question of
    len(query) tokens appended, the first T - L tokens (what goes to memory) hold at
    least `mem_tokens` tokens. Queries ask for records lying wholly inside the memory
    part, so the answer is not in the last window. With `window` = W > 0 the layout is
    window-aligned (as tools/dict_corpus.h's): a record that would straddle a multiple
    of W starts there instead, the gap filled with filler, since a record cut by a
    window boundary cannot be answered from memory. Returns dict with 'doc' (int64
    array), 'queries' [(prompt, answer)], 'mem_len' (= T - L), and the record texts."""
    rng = np.random.default_rng(EVAL_SEED_BASE + seed)
    rec_len = key_len + val_len + 2
    qlen = key_len + 2

    def start(length):
        if window and length // window != (length + rec_len - 1) // window:
            return (length // window + 1) * window
        return length

    min_len = 1 + ((mem_tokens + L) // rec_len + 2) * rec_len  # the stream layout's length
    n_rec, length = 0, 1
    while length < min_len:
        length = start(length) + rec_len
        n_rec += 1
    keys = distinct_keys_fast(rng, n_rec, key_len)
    vals = [rng.integers(0, 10, val_len) for _ in range(n_rec)]
    filler_rng = np.random.default_rng([EVAL_SEED_BASE + seed, 1])
    doc, pos = [tok.bos], []
    for k, v in zip(keys, vals):
        doc += tok.filler(filler_rng, start(len(doc)) - len(doc))
        pos.append(len(doc))
        doc += list(record_tokens(tok, k, v))
    T = len(doc) + qlen
    mem_len = max(T - L, 0)
    inside = [i for i in range(n_rec) if pos[i] + rec_len <= mem_len]
    pick = rng.choice(len(inside), size=min(n_queries, len(inside)), replace=False)
    queries = [(query_tokens(tok, keys[inside[j]]), answer_tokens(tok, vals[inside[j]]))
               for j in pick]
    return {'doc': np.array(doc, dtype=np.int64), 'queries': queries, 'mem_len': mem_len,
            'record_pos': [pos[inside[j]] for j in pick], 'record_len': rec_len}


def passkey_eval_doc(seed, tok, mem_tokens, L, depth=None):
    """Filler of about mem_tokens tokens with the passkey at relative depth `depth`
    (random if None) of the memory part, then the question. Returns dict with 'doc'
    (BOS + filler, int64), 'queries' [(question, answer)], 'mem_len'."""
    rng = np.random.default_rng(EVAL_SEED_BASE + seed)
    pk = ''.join(DIGITS[d] for d in rng.integers(0, 10, 5))
    pks = tok.passkey_tokens(pk)
    q = np.array(tok.question, dtype=np.int64)
    body = mem_tokens + L - len(q) - 1
    if depth is None:
        depth = rng.random()
    at = int(depth * max(mem_tokens - len(pks) - 1, 0))
    doc = [tok.bos] + tok.filler(rng, at) + pks
    doc = doc + tok.filler(rng, body - len(doc) + 1)
    T = len(doc) + len(q)
    mem_len = max(T - L, 0)
    assert 1 + at + len(pks) <= mem_len
    return {'doc': np.array(doc, dtype=np.int64),
            'queries': [(q, np.array(tok.passkey_answer(pk), dtype=np.int64))],
            'mem_len': mem_len, 'passkey': pk, 'record_pos': [1 + at]}


def check_tokenizer(tok, seed=0):
    """Token ids built here equal SentencePiece's encoding of the same text."""
    rng = np.random.default_rng(seed)
    keys = random_keys(rng, 50, 4)
    vals = [rng.integers(0, 10, 4) for _ in keys]
    text = ''.join(record_text(k, v) for k, v in zip(keys, vals))
    ids = np.concatenate([record_tokens(tok, k, v) for k, v in zip(keys, vals)])
    got = tok.sp.encode(text)
    # SentencePiece prefixes a lone "▁" piece for the leading space (dummy prefix)
    assert got[-len(ids):] == list(ids), (got[:20], list(ids[:20]))
    sents = [filler_sentence(rng) for _ in range(50)] + [passkey_sentence('12345')]
    joined = tok.sp.encode(' '.join(sents))
    assert joined == sum((tok.enc(s) for s in sents), []), 'filler not concatenable'
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--tokenizer', required=True, help='tokenizer.model')
    ap.add_argument('--task', choices=['dict', 'passkey'], default='dict')
    ap.add_argument('--mem-tokens', type=int, default=4096)
    ap.add_argument('--last-context', type=int, default=128, help='L of the model')
    ap.add_argument('--queries', type=int, default=10)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--window', type=int, default=0,
                    help='dict: W of the model for the window-aligned layout; 0: records '
                         'back to back')
    ap.add_argument('--out', help='write JSON here (doc ids, queries) instead of stdout')
    a = ap.parse_args()
    tok = Tok(a.tokenizer)
    if a.task == 'dict':
        d = dict_eval_doc(a.seed, tok, a.mem_tokens, a.last_context, a.queries,
                          window=a.window)
    else:
        d = passkey_eval_doc(a.seed, tok, a.mem_tokens, a.last_context)
    out = {'task': a.task, 'seed': a.seed, 'doc_ids': d['doc'].tolist(),
           'mem_len': d['mem_len'],
           'queries': [{'prompt_ids': q.tolist(), 'answer_ids': ans.tolist(),
                        'answer_text': tok.decode(ans)} for q, ans in d['queries']]}
    s = json.dumps(out)
    if a.out:
        with open(a.out, 'w') as f:
            f.write(s)
    else:
        sys.stdout.write(s + '\n')


if __name__ == '__main__':
    main()
