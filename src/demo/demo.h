/* demo — everything `orpo-hpc make-demo --out DIR` writes: a tiny LLaVA-NeXT model directory in the
 * HuggingFace format of llava-hf/llava-v1.6-mistral-7b-hf (config.json, model.safetensors, tokenizer files)
 * and a synthetic preference data set of drawn shapes (PNG files + pairs.jsonl + an RLAIF-V-shaped Parquet
 * file), so that the demo goes through the same import paths as the real 7B model. Deterministic from a
 * seed: two runs with the same options write byte-identical files. Layout and contents: docs/demo.md.
 *
 *   demo_opts_default(&o)                    seed 1, 6000 pairs, scaled init, the default task mix
 *   demo_make(out_dir, &o)                   write DIR/model/ and DIR/data/ (ERR_IO naming the path)
 *   demo_mix_parse(text, mix)                "c,s,n,p,e,d" task weights -> mix[DEMO_NQ] (ERR_ARGS)
 *
 * Tokenizer (demo_tok.c): a small SentencePiece-style BPE (tokenizer.json) whose merges build every word
 * the data set uses, so a word is one token.
 *   demo_tok_json(&json, &n, &info)          tokenizer.json text (malloc'ed) and its ids
 *   demo_tok_write(dir, &info)               tokenizer.json, tokenizer_config.json, special_tokens_map.json
 *
 * Model (demo_model.c):
 *   demo_model_config_json(&info, &s)        config.json text (malloc'ed) for the tokenizer's vocabulary
 *   demo_model_write(dir, seed, init, &info) config.json, model.safetensors (seeded random init, DEMO_INIT_*),
 *                                            generation_config.json, preprocessor_config.json,
 *                                            processor_config.json
 *
 * Scenes and texts (demo_scene.c):
 *   demo_scene_make(seed, i, &scene)         the scene of pair i (image size, background, shapes)
 *   demo_scene_draw(&scene, &px)             RGB8 pixels, h*w*3 (malloc'ed)
 *   demo_pair_make(&scene, &o, i, &pair)     question (kind drawn from o.mix), TRUE chosen answer,
 *                                            HALLUCINATED rejected answer
 *   demo_words(&n)                           every word a question or answer can contain
 *   demo_colour_name(c) / demo_colour_rgb(c, rgb)   palette of shape colours (DEMO_NCOLOURS)
 *   demo_shape_name(s), demo_pos_name(p)     the words of shapes and positions
 *
 * Hallucination benchmark (demo_halluc.c, `orpo-hpc eval --hallucination`):
 *   demo_halluc_item(seed, i, &scene, &pair) held-out scene i (a stream make-demo's pairs never use) and a question
 *                                            about it (a fixed mix, make-demo's former default), with its true and
 *                                            hallucinated answers
 *   demo_halluc_score(&scene, &pair, answer, &r)   parse a generated answer against the scene: object mentions
 *                                            (a shape word with its colour), the ones absent from the scene (CHAIR),
 *                                            and whether it states something false (a wrong colour, shape, count,
 *                                            position or existence verdict — "Green present." / "Green absent.", or
 *                                            yes/no — or an absent object)
 */
#ifndef ORPO_DEMO_H
#define ORPO_DEMO_H

#include <stddef.h>
#include <stdint.h>

/* question kinds */
enum { DEMO_Q_COLOUR, DEMO_Q_SHAPE, DEMO_Q_COUNT, DEMO_Q_POSITION, DEMO_Q_EXIST, DEMO_Q_DESCRIBE, DEMO_NQ };
/* model initialisation (demo_model.c) */
enum { DEMO_INIT_SCALED, DEMO_INIT_HF, DEMO_INIT_BUILT };
/* DEMO_INIT_BUILT's vision features (demo_model.c): channel DEMO_VF_PRESENT + colour is 1 where the tile holds that
 * shape colour, 0 where not; DEMO_VF_COUNT how many shape colours the tile holds */
enum { DEMO_VF_PRESENT = 55, DEMO_VF_COUNT = 61 };

typedef struct demo_opts {
    uint64_t seed;
    int pairs;
    int init;         /* DEMO_INIT_* */
    int mix[DEMO_NQ]; /* relative weights of the question kinds (>= 0, sum >= 1) */
} demo_opts;

typedef struct demo_tok_info {
    int vocab;       /* tokenizer size = 1 + the largest id (model vocab_size) */
    int unk, bos, eos;
    int image_token; /* <image> */
    int pad_token;   /* <pad> */
    int n_merges;
} demo_tok_info;

enum { DEMO_CIRCLE, DEMO_SQUARE, DEMO_TRIANGLE, DEMO_NSHAPES };
enum { DEMO_RED, DEMO_GREEN, DEMO_BLUE, DEMO_YELLOW, DEMO_ORANGE, DEMO_PURPLE, DEMO_NCOLOURS };
enum { DEMO_LEFT, DEMO_RIGHT, DEMO_TOP, DEMO_BOTTOM, DEMO_CENTER, DEMO_NPOS };
enum { DEMO_BG_WHITE, DEMO_BG_GRAY, DEMO_BG_BLACK, DEMO_NBG };
#define DEMO_MAX_OBJ 3

typedef struct demo_obj {
    int shape, colour, pos;
    int big; /* obj[0] is the big one; the others are small */
} demo_obj;

typedef struct demo_scene {
    int h, w;
    int bg[2];  /* background colour(s) */
    int split;  /* 0 plain (bg[0]), 1 left bg[0] | right bg[1], 2 top bg[0] / bottom bg[1] */
    int nobj;   /* 1..DEMO_MAX_OBJ; shapes and colours are all different */
    demo_obj obj[DEMO_MAX_OBJ];
} demo_scene;

typedef struct demo_pair {
    int kind; /* DEMO_Q_* */
    char question[128];
    char chosen[256];
    char rejected[256];
} demo_pair;

void demo_opts_default(demo_opts *o);
int demo_make(const char *out_dir, const demo_opts *o);
int demo_mix_parse(const char *text, int mix[DEMO_NQ]);

int demo_tok_json(char **json, size_t *n, demo_tok_info *info);
int demo_tok_write(const char *dir, demo_tok_info *info);

int demo_model_config_json(const demo_tok_info *info, char **out);
int demo_model_write(const char *dir, uint64_t seed, int init, const demo_tok_info *info);

void demo_scene_make(uint64_t seed, int64_t i, demo_scene *s);
int demo_scene_draw(const demo_scene *s, uint8_t **px);
void demo_pair_make(const demo_scene *s, const demo_opts *o, int64_t i, demo_pair *p);
const char *const *demo_words(int *n);
const char *demo_colour_name(int c);
void demo_colour_rgb(int c, uint8_t rgb[3]);
const char *demo_shape_name(int s);
const char *demo_pos_name(int p);

typedef struct demo_halluc_result {
    int answered;     /* the answer states something parseable about the scene */
    int false_claim;  /* it states something false */
    int mentions;     /* objects it says are there */
    int absent;       /* of those, not in the scene */
    int objects;      /* descriptions: the scene's objects (0 for the other kinds) */
    int covered;      /* descriptions: of those, how many a mention matches */
} demo_halluc_result;

void demo_halluc_item(uint64_t seed, int64_t i, demo_scene *s, demo_pair *p);
void demo_halluc_score(const demo_scene *s, const demo_pair *p, const char *answer, demo_halluc_result *r);

/* internal helpers shared by the demo_*.c files */
uint64_t demo_hash(uint64_t seed, uint64_t a, uint64_t b);
uint64_t demo_next(uint64_t *state);            /* splitmix64 */
int demo_below(uint64_t *state, int n);          /* uniform integer in [0, n) */

#endif
