#!/usr/bin/env python3
"""Turns llama-perplexity's `--kl-divergence-base` file (full 16-bit log-probabilities, ~2 bytes
per vocabulary entry and position) into tokenfab's reference format (TFKLDv1: per position the
top-K log-probabilities, the rest's mass, the actual next token's log-probability and the
argmax; see src/eval/kld.rs), small enough to commit. `tokenfab perplexity --kl-divergence OUT`
then compares tokenfab's distributions with llama.cpp's.

llama.cpp's file: "_logits_", i32 n_ctx, i32 n_vocab, i32 n_chunk, i32 tokens[n_chunk*n_ctx],
then for each chunk the positions n_ctx/2 .. n_ctx-2, each nv = 2*((n_vocab+1)/2)+4 uint16:
(f32 scale, f32 min_log_prob) then q[n_vocab] with log p = min_log_prob + scale*q
(tools/perplexity/perplexity.cpp, log_softmax).

usage: llama-kld-to-tfkld.py LLAMA_FILE OUT [K]
"""
import struct
import sys

import numpy as np


def fnv(tokens):
    h = 0xCBF29CE484222325
    for b in np.asarray(tokens, dtype="<u4").tobytes():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    src, out = sys.argv[1], sys.argv[2]
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    data = open(src, "rb").read()
    if data[:8] != b"_logits_":
        sys.exit(f"{src}: not a llama-perplexity --kl-divergence-base file")
    n_ctx, n_vocab, n_chunk = struct.unpack_from("<iii", data, 8)
    off = 20
    tokens = np.frombuffer(data, dtype="<i4", count=n_chunk * n_ctx, offset=off).astype(np.uint32)
    off += 4 * n_chunk * n_ctx
    nv = 2 * ((n_vocab + 1) // 2) + 4
    first = n_ctx // 2
    rows = []
    for c in range(n_chunk):
        for j in range(n_ctx - 1 - first):
            rec = np.frombuffer(data, dtype="<u2", count=nv, offset=off)
            off += 2 * nv
            scale, min_lp = struct.unpack("<ff", rec[:4].tobytes())
            q = rec[4 : 4 + n_vocab].astype(np.float64)
            logp = min_lp + scale * q
            target = int(tokens[c * n_ctx + first + 1 + j])
            top = np.argpartition(-q, k - 1)[:k]
            # by log-probability, then id, as tokenfab orders them
            top = sorted(top.tolist(), key=lambda i: (-q[i], i))
            mass = float(np.exp(logp[top]).sum())
            rest = np.log(max(1.0 - mass, 1e-30))
            argmax = int(np.argmax(q))
            rows.append((top, logp, rest, float(logp[target]), argmax))
    if off != len(data):
        sys.exit(f"{src}: {len(data) - off} bytes left over: not the format this reads")
    buf = bytearray(b"TFKLDv1\0")
    buf += struct.pack("<III", n_vocab, n_ctx, k)
    buf += struct.pack("<Q", fnv(tokens))
    buf += struct.pack("<I", len(rows))
    for top, logp, rest, lp_t, argmax in rows:
        for i in top:
            buf += struct.pack("<If", i, float(logp[i]))
        buf += struct.pack("<ffI", rest, lp_t, argmax)
    open(out, "wb").write(bytes(buf))
    print(f"{out}: {len(rows)} positions, top-{k}, vocab {n_vocab}, n_ctx {n_ctx}, {n_chunk} chunks")


if __name__ == "__main__":
    main()
