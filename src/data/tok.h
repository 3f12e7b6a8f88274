/* tok — SentencePiece-style BPE tokenizer (Mistral / Llama), loaded from tokenizer.model or tokenizer.json.
 *
 * Two loaders, one encoder:
 *   - tokenizer.model (SentencePiece ModelProto, BPE): pieces with score and type, trainer spec (unk/bos/eos/pad
 *     ids, byte_fallback, unk_surface), normalizer spec (add_dummy_prefix, remove_extra_whitespaces,
 *     escape_whitespaces; precompiled charsmaps are refused). Merges are driven by the piece scores exactly as
 *     sentencepiece does (highest score first, leftmost on ties); symbols left unknown fall back to <0xNN> bytes.
 *   - tokenizer.json (HF tokenizers, model type BPE): vocab, merges (ranked), unk_token, byte_fallback, fuse_unk,
 *     ignore_merges, added_tokens; normalizer Prepend("▁") / Replace(" ", "▁") and pre-tokenizer Metaspace
 *     (split=false). Merges by rank, leftmost on ties, as tokenizers does.
 * Text is first split at the added/special tokens (leftmost-longest; from a .model: its CONTROL and UNKNOWN pieces
 * plus those added with tok_add_special) and every remaining segment is encoded as its own SentencePiece string,
 * with its own dummy "▁" prefix (the segment rule of llava-v1.6-mistral; docs/tokenizer.md). From a tokenizer.json
 * the prefix follows that file as the tokenizers library does, which is what transformers 5.25's
 * LlavaNextProcessor does too: Prepend("▁") puts "▁" before every segment, even one that starts with a space
 * ("<s> a" = 1 28705 264, as sentencepiece); Metaspace puts none before a segment that already starts with a space
 * or "▁", and with prepend_scheme "first" only before a segment at the start of the text. Malformed UTF-8
 * bytes become U+FFFD, one per byte, as in sentencepiece. Decoding follows sentencepiece: "▁" -> " ", the dummy
 * prefix of the first piece is dropped, byte pieces are reassembled (bad sequences -> U+FFFD), control and added
 * special tokens are invisible unless TOK_DECODE_SPECIAL, <unk> reads as the unk surface (" ⁇ ").
 * A loaded tokenizer is read-only: tok_encode/tok_decode may run on many threads at once.
 *
 *   tok_load_file(path, &t)                    load tokenizer.model or tokenizer.json (sniffed from the bytes)
 *   tok_load_from_memory(buf, len, name, &t)   the same from a blob (e.g. stored in model.h5); name is for messages
 *   tok_free(t)                                release
 *   tok_add_special(t, text, id)               add a special token (split out before BPE), e.g. "<image>" = 32000
 *   tok_encode(t, text, len, flags, &ids)      append the ids of text to ids (TOK_ADD_BOS/EOS, TOK_NO_SPECIAL)
 *   tok_decode(t, ids, n, flags, &s, &len)     ids -> malloc'ed NUL-terminated UTF-8 (TOK_DECODE_SPECIAL)
 *   tok_hash(t)                                stable 64-bit FNV-1a hash of pieces, scores/merges, specials, settings
 *   tok_vocab_size(t)                          1 + the largest id (pieces and added tokens)
 *   tok_piece(t, id, &len)                     the piece (or added-token text) of an id, NULL when none
 *   tok_piece_id(t, s, len)                    the id of a piece or added token, -1 when none
 *   tok_bos_id / tok_eos_id / tok_unk_id / tok_pad_id(t)   special ids, -1 when the tokenizer has none
 *   tok_kind(t)                                "sentencepiece" or "tokenizers-bpe"
 *   tok_ids_push(v, id) / tok_ids_free(v)      the growable id array used by tok_encode
 */
#ifndef ORPO_TOK_H
#define ORPO_TOK_H

#include <stddef.h>
#include <stdint.h>

typedef struct tok tok;

/* piece types, numbered as in sentencepiece_model.proto */
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5, TOK_BYTE = 6 };

/* tok_encode flags */
enum {
    TOK_ADD_BOS = 1,
    TOK_ADD_EOS = 2,
    TOK_NO_SPECIAL = 4 /* special-token text is ordinary text */
};
/* tok_decode flags */
enum { TOK_DECODE_SPECIAL = 1 /* write control/added tokens as their text */ };

typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;

int tok_load_file(const char *path, tok **out);
int tok_load_from_memory(const void *buf, size_t len, const char *name, tok **out);
void tok_free(tok *t);
int tok_add_special(tok *t, const char *text, int32_t id);
int tok_encode(const tok *t, const char *text, size_t len, int flags, tok_ids *ids);
int tok_decode(const tok *t, const int32_t *ids, size_t n, int flags, char **out, size_t *out_len);
uint64_t tok_hash(const tok *t);
int32_t tok_vocab_size(const tok *t);
const char *tok_piece(const tok *t, int32_t id, size_t *len);
int32_t tok_piece_id(const tok *t, const char *s, size_t len);
int32_t tok_bos_id(const tok *t);
int32_t tok_eos_id(const tok *t);
int32_t tok_unk_id(const tok *t);
int32_t tok_pad_id(const tok *t);
const char *tok_kind(const tok *t);
int tok_ids_push(tok_ids *v, int32_t id);
void tok_ids_free(tok_ids *v);

#endif
