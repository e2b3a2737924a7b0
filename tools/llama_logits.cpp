// llama.cpp's logits for a prompt given as token ids, every position, written as raw f32
// ([ids][vocab], little-endian): the llama.cpp side of tools/compare_logits.py.
//
// Build against a llama.cpp tree and its build folder (see tools/compare_logits.py):
//   g++ -O2 -std=c++17 tools/llama_logits.cpp -I$SRC/include -I$SRC/ggml/include \
//       -L$BUILD/bin -lllama -lggml -lggml-base -Wl,-rpath,$BUILD/bin -o llama-logits
// Usage: llama-logits MODEL.gguf 1,2,3,... OUT.f32 [threads] [flash-attn: on|off]
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf IDS OUT.f32 [threads] [on|off]\n", argv[0]);
        return 2;
    }
    std::vector<llama_token> ids;
    for (char * p = argv[2]; *p;) {
        ids.push_back((llama_token) strtol(p, &p, 10));
        if (*p == ',') {
            p++;
        }
    }
    const int threads = argc > 4 ? atoi(argv[4]) : 2;
    const bool fa = argc > 5 && strcmp(argv[5], "on") == 0;

    llama_backend_init();
    llama_model * model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = ids.size() + 16;
    cp.n_batch = cp.n_ubatch = ids.size();
    cp.n_threads = cp.n_threads_batch = threads;
    cp.flash_attn_type = fa ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context * ctx = llama_init_from_model(model, cp);
    llama_batch batch = llama_batch_init(ids.size(), 0, 1);
    for (size_t i = 0; i < ids.size(); i++) {
        batch.token[i] = ids[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = ids.size();
    if (llama_decode(ctx, batch) != 0) {
        fprintf(stderr, "llama_decode failed\n");
        return 1;
    }
    const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    FILE * out = fopen(argv[3], "wb");
    for (size_t i = 0; i < ids.size(); i++) {
        fwrite(llama_get_logits_ith(ctx, i), sizeof(float), vocab, out);
    }
    fclose(out);
    fprintf(stderr, "%zu x %d logits written to %s\n", ids.size(), vocab, argv[3]);
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
