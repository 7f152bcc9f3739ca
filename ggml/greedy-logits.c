/* greedy-logits -- greedy generation through llama.cpp's public API on one chosen device, printing
 * at every step the chosen token, the runner-up and the gap between their logits.
 *
 *   greedy-logits MODEL DEVICE N_TOKENS PROMPT [fa]
 *
 * DEVICE is a ggml device name (KQCL0, CUDA0, ...) that takes every layer, or "cpu" for none.
 * Without "fa" the KV cache and attention stay on the host (flash attention off, llama.cpp's
 * -nkvo); with it the cache lives on DEVICE and attention is flash attention there (-fa on).
 * Backends load as llama.cpp's own tools load them (GGML_BACKEND_PATH names the kqcl module).
 * Two runs' outputs side by side show whether two backends give the same tokens, and where they
 * part, whether the step was a near-tie (scripts/ggml-greedy.sh compares them).
 *
 * Output, one line a step, tab-separated: step, token, its logit, runner-up token, its logit,
 * the gap, the token's text (escaped). It is a measuring tool, built against the pinned
 * llama.cpp by the script, not part of the module. */
#include <llama.h>
#include <ggml-backend.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct top_two {
    llama_token first, second;
    float first_logit, second_logit;
};

static struct top_two top_two_of(const float *logits, int n_vocab)
{
    struct top_two t = { 0, 1, logits[0], logits[1] };
    if (t.second_logit > t.first_logit) {
        t = (struct top_two){ 1, 0, logits[1], logits[0] };
    }
    for (int i = 2; i < n_vocab; i++) {
        if (logits[i] > t.first_logit) {
            t.second = t.first;
            t.second_logit = t.first_logit;
            t.first = i;
            t.first_logit = logits[i];
        } else if (logits[i] > t.second_logit) {
            t.second = i;
            t.second_logit = logits[i];
        }
    }
    return t;
}

/* The token's text with tabs, newlines and backslashes escaped, so one step stays one line. */
static void print_piece(const struct llama_vocab *vocab, llama_token token)
{
    char piece[256];
    int n = llama_token_to_piece(vocab, token, piece, (int)sizeof piece, 0, 1);
    for (int i = 0; i < n; i++) {
        switch (piece[i]) {
        case '\n': fputs("\\n", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        default: putchar(piece[i]);
        }
    }
}

static int tokenize_prompt(const struct llama_vocab *vocab, const char *prompt, llama_token **out)
{
    int len = (int)strlen(prompt);
    int n = -llama_tokenize(vocab, prompt, len, NULL, 0, 1, 1);
    if (n <= 0) {
        return -1;
    }
    *out = malloc((size_t)n * sizeof **out);
    if (*out == NULL || llama_tokenize(vocab, prompt, len, *out, n, 1, 1) != n) {
        return -1;
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 5 && !(argc == 6 && strcmp(argv[5], "fa") == 0)) {
        fprintf(stderr, "usage: greedy-logits MODEL DEVICE|cpu N_TOKENS PROMPT [fa]\n");
        return 2;
    }
    bool on_device = argc == 6;
    const char *device_name = argv[2];
    int n_tokens = atoi(argv[3]);

    ggml_backend_load_all();
    llama_backend_init();

    ggml_backend_dev_t devices[2] = { NULL, NULL };
    struct llama_model_params mp = llama_model_default_params();
    /* No repacked CPU weights (llama-perplexity's -nr): that path died with SIGILL on a Xeon's
     * AMX (2026-12-06), and the perplexity figures beside these runs are taken without it. */
    mp.use_extra_bufts = 0;
    if (strcmp(device_name, "cpu") == 0) {
        mp.n_gpu_layers = 0;
        mp.devices = devices; /* an empty list: no GPU device at all */
    } else {
        devices[0] = ggml_backend_dev_by_name(device_name);
        if (devices[0] == NULL) {
            fprintf(stderr, "greedy-logits: no device %s\n", device_name);
            return 1;
        }
        mp.n_gpu_layers = 999;
        mp.devices = devices;
    }
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (model == NULL) {
        fprintf(stderr, "greedy-logits: cannot load %s\n", argv[1]);
        return 1;
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);

    llama_token *prompt = NULL;
    int n_prompt = tokenize_prompt(vocab, argv[4], &prompt);
    if (n_prompt <= 0) {
        fprintf(stderr, "greedy-logits: cannot tokenize the prompt\n");
        return 1;
    }

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(n_prompt + n_tokens + 8);
    cp.n_batch = cp.n_ctx;
    cp.flash_attn_type = on_device ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.offload_kqv = on_device;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (ctx == NULL) {
        fprintf(stderr, "greedy-logits: cannot create a context\n");
        return 1;
    }

    int n_vocab = llama_vocab_n_tokens(vocab);
    struct llama_batch batch = llama_batch_get_one(prompt, n_prompt);
    llama_token next;
    for (int step = 0; step < n_tokens; step++) {
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "greedy-logits: decode failed at step %d\n", step);
            return 1;
        }
        struct top_two t = top_two_of(llama_get_logits_ith(ctx, -1), n_vocab);
        printf("%d\t%d\t%.6f\t%d\t%.6f\t%.6f\t", step, t.first, t.first_logit, t.second,
               t.second_logit, t.first_logit - t.second_logit);
        print_piece(vocab, t.first);
        putchar('\n');
        if (llama_vocab_is_eog(vocab, t.first)) {
            break;
        }
        next = t.first;
        batch = llama_batch_get_one(&next, 1);
    }

    llama_free(ctx);
    llama_model_free(model);
    free(prompt);
    llama_backend_free();
    return 0;
}
