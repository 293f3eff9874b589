"""Stream a completion through tokenfab's C ABI with ctypes (no build step, no dependency),
then print what the tokens cost: joules per token and dollars per million tokens.

    cargo build --release
    python3 examples/python/tokenfab_ctypes.py [MODEL.gguf] ["prompt"] [MAX_TOKENS]

The library is target/release/libtokenfab.so (.dylib on macOS), or $TOKENFAB_LIB. The structs
below mirror include/tokenfab.h.
"""

import ctypes as C
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = {"darwin": "dylib", "win32": "dll"}.get(sys.platform, "so")
LIB = os.environ.get("TOKENFAB_LIB", str(ROOT / "target" / "release" / f"libtokenfab.{SUFFIX}"))


class EngineOptions(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("threads", C.c_uint32), ("backend", C.c_char_p),
                ("ctx", C.c_uint32), ("batch", C.c_uint32), ("max_sequences", C.c_uint32),
                ("usd_per_kwh", C.c_double)]


class GenerateOptions(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("max_tokens", C.c_uint32),
                ("temperature", C.c_float), ("top_k", C.c_uint32), ("top_p", C.c_float),
                ("min_p", C.c_float), ("repeat_penalty", C.c_float),
                ("repeat_last_n", C.c_uint32), ("seed", C.c_uint64),
                ("stop", C.POINTER(C.c_char_p)), ("n_stop", C.c_size_t),
                ("ignore_eog", C.c_int32), ("max_energy_j", C.c_double),
                ("max_cost_usd", C.c_double)]


class TokenEvent(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("phase", C.c_int32), ("pos", C.c_uint32),
                ("token", C.c_uint32), ("text", C.POINTER(C.c_char)), ("text_len", C.c_size_t),
                ("at_s", C.c_double), ("duration_s", C.c_double),
                ("bytes_read", C.c_uint64), ("bytes_written", C.c_uint64),
                ("flops", C.c_uint64), ("joules", C.c_double), ("usd", C.c_double),
                ("energy_source", C.c_char_p), ("flush", C.c_int32)]


class Summary(C.Structure):
    _fields_ = [("struct_size", C.c_uint32), ("stop_reason", C.c_int32),
                ("n_prompt", C.c_uint32), ("n_reused", C.c_uint32),
                ("n_generated", C.c_uint32), ("decode_steps", C.c_uint32),
                ("prefill_s", C.c_double), ("ttft_s", C.c_double), ("decode_s", C.c_double),
                ("prefill_tok_s", C.c_double), ("decode_tok_s", C.c_double)] + [
                (f"{phase}_{field}", t) for phase in ("prefill", "decode")
                for field, t in (("bytes_read", C.c_uint64), ("bytes_written", C.c_uint64),
                                 ("flops", C.c_uint64), ("joules", C.c_double),
                                 ("usd", C.c_double))] + [("energy_source", C.c_char_p)]


CALLBACK = C.CFUNCTYPE(C.c_int32, C.POINTER(TokenEvent), C.c_void_p)
PHASE_DECODE = 1
TF_ERR_BUFFER = 7


def load(path=LIB):
    lib = C.CDLL(path)
    lib.tf_last_error.restype = C.c_char_p
    lib.tf_engine_open.argtypes = [C.c_char_p, C.POINTER(EngineOptions), C.POINTER(C.c_void_p)]
    lib.tf_engine_close.argtypes = [C.c_void_p]
    lib.tf_tokenize.argtypes = [C.c_void_p, C.c_char_p, C.c_int32, C.POINTER(C.c_uint32),
                                C.c_size_t, C.POINTER(C.c_size_t)]
    lib.tf_sequence_new.argtypes = [C.c_void_p, C.POINTER(C.c_void_p)]
    lib.tf_sequence_free.argtypes = [C.c_void_p]
    lib.tf_sequence_generate.argtypes = [C.c_void_p, C.POINTER(C.c_uint32), C.c_size_t,
                                         C.POINTER(GenerateOptions), CALLBACK, C.c_void_p,
                                         C.POINTER(Summary)]
    for f in ("tf_engine_options_init", "tf_generate_options_init", "tf_summary_init"):
        getattr(lib, f).argtypes = [C.c_void_p]
    return lib


def check(lib, status, what):
    if status != 0:
        raise RuntimeError(f"{what}: {lib.tf_last_error().decode()} (status {status})")


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "models/gemma-3-270m-q4_k_m.gguf")
    prompt = sys.argv[2] if len(sys.argv) > 2 else "The capital of France is"
    max_tokens = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    lib = load()

    opts = EngineOptions()
    check(lib, lib.tf_engine_options_init(C.byref(opts)), "tf_engine_options_init")
    opts.backend = b"cpu"
    engine = C.c_void_p()
    check(lib, lib.tf_engine_open(model.encode(), C.byref(opts), C.byref(engine)), "open")
    try:
        n = C.c_size_t()
        text = prompt.encode()
        # the first call says how many ids there are; the second fills them
        if lib.tf_tokenize(engine, text, 1, None, 0, C.byref(n)) != TF_ERR_BUFFER:
            check(lib, 1, "tf_tokenize")
        ids = (C.c_uint32 * n.value)()
        check(lib, lib.tf_tokenize(engine, text, 1, ids, n, C.byref(n)), "tf_tokenize")

        seq = C.c_void_p()
        check(lib, lib.tf_sequence_new(engine, C.byref(seq)), "tf_sequence_new")
        gen = GenerateOptions()
        check(lib, lib.tf_generate_options_init(C.byref(gen)), "tf_generate_options_init")
        gen.temperature = 0.0
        gen.max_tokens = max_tokens

        @CALLBACK
        def on_token(ev, _user):
            e = ev.contents
            if e.phase == PHASE_DECODE and e.text_len:
                sys.stdout.write(C.string_at(e.text, e.text_len).decode())
                sys.stdout.flush()
            return 0

        s = Summary()
        check(lib, lib.tf_summary_init(C.byref(s)), "tf_summary_init")
        status = lib.tf_sequence_generate(seq, ids, n, C.byref(gen), on_token, None, C.byref(s))
        check(lib, status, "tf_sequence_generate")
        lib.tf_sequence_free(seq)
        print()
        gen_j = s.decode_joules / max(s.n_generated, 1)
        all_usd = s.prefill_usd + s.decode_usd
        all_tokens = s.n_prompt + s.n_generated
        print(f"{s.n_prompt} prompt + {s.n_generated} generated tokens, "
              f"{s.decode_tok_s:.1f} tok/s, {s.decode_bytes_read / max(s.n_generated, 1) / 1e6:.1f}"
              f" MB read per generated token")
        print(f"{gen_j:.4f} J/token generated; ${all_usd / all_tokens * 1e6:.4f}/Mtok "
              f"(prompt and generated, electricity; {s.energy_source.decode()})")
    finally:
        lib.tf_engine_close(engine)


if __name__ == "__main__":
    main()
