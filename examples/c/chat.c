/*
 * chat.c — a streaming chat over tokenfab's C ABI: each line on stdin is a user message; the
 * reply streams to stdout, then what the turn cost. The whole conversation is passed each
 * turn; the sequence's KV cache keeps the earlier turns, so only the new tokens are run.
 *
 *   cargo build --release
 *   cc -I include examples/c/chat.c -L target/release -ltokenfab \
 *      -Wl,-rpath,"$PWD/target/release" -o chat
 *   ./chat [MODEL.gguf] [MAX_TOKENS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenfab.h"

#define MAX_MESSAGES 64

/* The reply as it streams: printed and kept for the next turn's prompt. */
struct reply {
    char *text;
    size_t len;
};

static int on_token(const tf_token_event *ev, void *user_data) {
    struct reply *r = user_data;
    if (ev->phase != TF_PHASE_DECODE || ev->text_len == 0) return 0;
    fwrite(ev->text, 1, ev->text_len, stdout);
    fflush(stdout);
    char *grown = realloc(r->text, r->len + ev->text_len + 1);
    if (!grown) return 1; /* out of memory: stop generating */
    memcpy(grown + r->len, ev->text, ev->text_len + 1);
    r->text = grown;
    r->len += ev->text_len;
    return 0; /* go on */
}

static char *copy(const char *s) {
    char *c = malloc(strlen(s) + 1);
    if (c) strcpy(c, s);
    return c;
}

static int fail(const char *what, tf_status s) {
    fprintf(stderr, "chat: %s failed: %s (%s)\n", what, tf_last_error(), tf_status_name(s));
    return 1;
}

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : "models/gemma-3-270m-q4_k_m.gguf";
    tf_engine_options eo;
    tf_engine_options_init(&eo);
    eo.backend = "cpu";
    tf_engine *engine = NULL;
    tf_status s = tf_engine_open(model, &eo, &engine);
    if (s != TF_OK) return fail("tf_engine_open", s);
    tf_sequence *seq = NULL;
    if ((s = tf_sequence_new(engine, &seq)) != TF_OK) return fail("tf_sequence_new", s);

    tf_generate_options go;
    tf_generate_options_init(&go);
    go.temperature = 0; /* greedy: the same answer every time */
    go.max_tokens = argc > 2 ? (uint32_t)atoi(argv[2]) : 128;

    tf_message messages[MAX_MESSAGES];
    char *texts[MAX_MESSAGES];
    size_t n = 0, cap = 0, n_ids = 0;
    uint32_t *ids = NULL;
    char line[4096];
    int status = 0;
    while (n + 2 <= MAX_MESSAGES && fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        texts[n] = copy(line);
        if (!texts[n]) { status = 1; break; }
        messages[n] = (tf_message){"user", texts[n]};
        n++;
        /* the prompt: the whole conversation through the model's chat template */
        s = tf_chat_tokenize(engine, messages, n, 1, ids, cap, &n_ids);
        if (s == TF_ERR_BUFFER) {
            uint32_t *grown = realloc(ids, n_ids * sizeof *ids);
            if (!grown) { status = 1; break; }
            ids = grown;
            cap = n_ids;
            s = tf_chat_tokenize(engine, messages, n, 1, ids, cap, &n_ids);
        }
        if (s != TF_OK) { status = fail("tf_chat_tokenize", s); break; }

        struct reply r = {NULL, 0};
        tf_summary sum;
        tf_summary_init(&sum);
        s = tf_sequence_generate(seq, ids, n_ids, &go, on_token, &r, &sum);
        if (s != TF_OK) { free(r.text); status = fail("tf_sequence_generate", s); break; }
        double joules = sum.prefill_joules + sum.decode_joules;
        double usd = sum.prefill_usd + sum.decode_usd;
        printf("\n[%u prompt tokens (%u reused), %u generated | %.1f tok/s | %.1f MB read | "
               "%.3f J, $%.2e (%s)]\n",
               sum.n_prompt, sum.n_reused, sum.n_generated, sum.decode_tok_s,
               (sum.prefill_bytes_read + sum.decode_bytes_read) / 1e6, joules, usd,
               sum.energy_source);
        texts[n] = r.text ? r.text : copy("");
        messages[n] = (tf_message){"assistant", texts[n]};
        n++;
    }
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(ids);
    tf_sequence_free(seq);
    tf_engine_close(engine);
    return status;
}
