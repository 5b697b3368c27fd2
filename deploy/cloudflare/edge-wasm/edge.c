// nimbus edge: the few entry points the Worker needs from llama.cpp, for a single-threaded,
// 32-bit WebAssembly build (build.sh). One model, one context, one generation at a time; the
// Worker's JavaScript does templating of requests, text decoding and stop sequences.
#include <emscripten/emscripten.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "llama.h"

static struct llama_model *model = NULL;
static struct llama_context *ctx = NULL;
static const struct llama_vocab *vocab = NULL;
static struct llama_sampler *sampler = NULL;
static int32_t n_ctx = 0;
static int32_t n_batch = 0;
static int32_t n_past = 0;
static int32_t *prompt = NULL;  // the prompt being evaluated, batch by batch (edge_feed)
static int32_t n_prompt = 0;

static enum ggml_log_level log_level = GGML_LOG_LEVEL_WARN;

static bool log_on = false;  // whether the message being continued (GGML_LOG_LEVEL_CONT) was shown

static void log_text(enum ggml_log_level level, const char *text, void *user_data) {
  (void)user_data;
  if (level != GGML_LOG_LEVEL_CONT) log_on = level >= log_level;
  if (log_on) fputs(text, stderr);
}

// Which of llama.cpp's messages reach the Worker's log: 2 info (buffer sizes), 3 warnings.
EMSCRIPTEN_KEEPALIVE void edge_log_level(int32_t level) { log_level = (enum ggml_log_level)level; }

// The top of the heap in use (the heap itself may be larger): its high-water mark, as a wasm
// heap never shrinks.
EMSCRIPTEN_KEEPALIVE size_t edge_heap_top(void) { return (size_t)sbrk(0); }

// Bytes held by live allocations now (below the top, freed blocks are reused by malloc).
EMSCRIPTEN_KEEPALIVE size_t edge_heap_live(void) { return (size_t)mallinfo().uordblks; }

static void log_heap(const char *when) {
  if (log_level <= GGML_LOG_LEVEL_INFO) {
    fprintf(stderr, "edge: heap after %s: top %zu, live %zu\n", when, edge_heap_top(),
            edge_heap_live());
  }
}

// Options of edge_load, or-ed together.
#define EDGE_FLASH_ATTENTION 1  // fused attention: no n_ctx-wide score matrix in the compute buffer
#define EDGE_KV_Q8_0 2          // the KV cache in 8-bit blocks (half of f16; needs flash attention)

// Loads the GGUF at `path` memory-mapped (the Worker's file system maps it in place from the
// heap), with a context of `context_tokens` and prompt batches of `batch_tokens`. 0 on success.
EMSCRIPTEN_KEEPALIVE int32_t edge_load(const char *path, int32_t context_tokens,
                                       int32_t batch_tokens, int32_t options) {
  llama_log_set(log_text, NULL);
  llama_backend_init();
  struct llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  mp.load_mode = LLAMA_LOAD_MODE_MMAP;
  log_heap("backend init");
  model = llama_model_load_from_file(path, mp);
  if (model == NULL) return -1;
  log_heap("model load");
  vocab = llama_model_get_vocab(model);
  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = (uint32_t)context_tokens;
  cp.n_batch = (uint32_t)batch_tokens;
  cp.n_ubatch = (uint32_t)batch_tokens;
  cp.n_seq_max = 1;
  cp.n_threads = 1;
  cp.n_threads_batch = 1;
  cp.no_perf = true;
  cp.flash_attn_type = (options & EDGE_FLASH_ATTENTION) ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                                                        : LLAMA_FLASH_ATTN_TYPE_DISABLED;
  if (options & EDGE_KV_Q8_0) {
    cp.type_k = GGML_TYPE_Q8_0;
    cp.type_v = GGML_TYPE_Q8_0;
  }
  ctx = llama_init_from_model(model, cp);
  if (ctx == NULL) return -2;
  log_heap("context");
  n_ctx = (int32_t)llama_n_ctx(ctx);
  n_batch = batch_tokens;
  return 0;
}

EMSCRIPTEN_KEEPALIVE int32_t edge_n_ctx(void) { return n_ctx; }

// Tokens of `text` into `out` (at most `capacity`); negative: -(tokens needed).
EMSCRIPTEN_KEEPALIVE int32_t edge_tokenize(const char *text, int32_t length, int32_t *out,
                                           int32_t capacity, int32_t add_special,
                                           int32_t parse_special) {
  return llama_tokenize(vocab, text, length, out, capacity, add_special != 0, parse_special != 0);
}

// The model's chat template applied to `n` messages (role and content arrays, with the assistant
// prompt added); the length of the result, which is longer than `capacity` if it did not fit.
EMSCRIPTEN_KEEPALIVE int32_t edge_chat(const char **roles, const char **contents, int32_t n,
                                       char *out, int32_t capacity) {
  struct llama_chat_message messages[n > 0 ? n : 1];
  for (int32_t i = 0; i < n; i++) {
    messages[i].role = roles[i];
    messages[i].content = contents[i];
  }
  const char *tmpl = llama_model_chat_template(model, NULL);
  return llama_chat_apply_template(tmpl, messages, (size_t)n, true, out, capacity);
}

// Bytes of one token's text into `out`; special tokens are not rendered.
EMSCRIPTEN_KEEPALIVE int32_t edge_piece(int32_t token, char *out, int32_t capacity) {
  return llama_token_to_piece(vocab, token, out, capacity, 0, false);
}

// Starts a generation: a fresh KV cache and the sampler chain core uses (penalties when asked
// for, top-k, top-p, min-p, temperature, then a seeded draw; greedy at temperature 0). The prompt
// (`tokens`, kept by the caller until evaluated) is then evaluated by edge_feed, one batch per
// call, so the Worker stays responsive in between. 0 on success, -1 when it leaves no room.
EMSCRIPTEN_KEEPALIVE int32_t edge_begin(int32_t *tokens, int32_t n, float temperature,
                                        float top_p, int32_t top_k, float min_p,
                                        float repeat_penalty, float presence_penalty,
                                        float frequency_penalty, uint32_t seed) {
  if (n <= 0 || n >= n_ctx) return -1;
  llama_memory_clear(llama_get_memory(ctx), true);
  n_past = 0;
  prompt = tokens;
  n_prompt = n;
  if (sampler != NULL) llama_sampler_free(sampler);
  sampler = llama_sampler_chain_init(llama_sampler_chain_default_params());
  // Penalties scan the whole vocabulary: only when asked for.
  if (repeat_penalty != 1.0f || frequency_penalty != 0.0f || presence_penalty != 0.0f) {
    llama_sampler_chain_add(
        sampler, llama_sampler_init_penalties(llama_vocab_n_tokens(vocab), 64, repeat_penalty,
                                              frequency_penalty, presence_penalty));
  }
  if (temperature <= 0.0f) {
    llama_sampler_chain_add(sampler, llama_sampler_init_greedy());
  } else {
    if (top_k > 0) llama_sampler_chain_add(sampler, llama_sampler_init_top_k(top_k));
    llama_sampler_chain_add(sampler, llama_sampler_init_top_p(top_p, 1));
    llama_sampler_chain_add(sampler, llama_sampler_init_min_p(min_p, 1));
    llama_sampler_chain_add(sampler, llama_sampler_init_temp(temperature));
    llama_sampler_chain_add(sampler, llama_sampler_init_dist(seed));
  }
  return 0;
}

// Evaluates the next batch of the prompt: the number of prompt tokens still to evaluate (0 when
// done), or -2 when decoding failed.
EMSCRIPTEN_KEEPALIVE int32_t edge_feed(void) {
  if (n_past >= n_prompt) return 0;
  int32_t count = n_prompt - n_past < n_batch ? n_prompt - n_past : n_batch;
  if (llama_decode(ctx, llama_batch_get_one(prompt + n_past, count)) != 0) return -2;
  n_past += count;
  if (n_past >= n_prompt) prompt = NULL;
  return n_prompt - n_past;
}

// Samples the next token and evaluates it. Returns the token, -1 at an end-of-generation token,
// -2 when the context is full, -3 when decoding failed.
EMSCRIPTEN_KEEPALIVE int32_t edge_next(void) {
  llama_token token = llama_sampler_sample(sampler, ctx, -1);
  if (llama_vocab_is_eog(vocab, token)) return -1;
  if (n_past >= n_ctx) return -2;
  if (llama_decode(ctx, llama_batch_get_one(&token, 1)) != 0) return -3;
  n_past += 1;
  return token;
}
