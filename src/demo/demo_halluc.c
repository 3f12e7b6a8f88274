/* demo_halluc — the hallucination benchmark of the demo: held-out scenes whose truth is known, the demo's questions
 * about them, and a parser that scores a generated answer against the scene (see demo.h). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "demo/demo.h"

/* benchmark scenes: another stream than make-demo's pairs (whose indices start at 0), so none is a training image */
#define HALLUC_BASE 1000000000LL

/* the question kinds of the benchmark: colour, shape, count, position, existence, description. Fixed here (make-demo's
 * default mix when the benchmark was written), so that changing the training data's mix does not change what is
 * measured: the same 120 items before and after, and in every version of the demo. */
static const int halluc_mix[DEMO_NQ] = {42, 4, 4, 4, 27, 19};

void demo_halluc_item(uint64_t seed, int64_t i, demo_scene *s, demo_pair *p) {
    demo_opts o;
    demo_opts_default(&o);
    o.seed = seed;
    memcpy(o.mix, halluc_mix, sizeof o.mix);
    demo_scene_make(seed, HALLUC_BASE + i, s);
    demo_pair_make(s, &o, HALLUC_BASE + i, p);
}

static int word_index(const char *w, const char *(*name)(int), int n) {
    for (int i = 0; i < n; i++)
        if (!strcmp(w, name(i))) return i;
    return -1;
}

/* lower-case words of a text, punctuation dropped; returns the count */
static int split_words(const char *text, char words[][16], int cap) {
    int n = 0;
    for (const char *p = text; *p && n < cap;) {
        while (*p && !isalpha((unsigned char)*p)) p++;
        int k = 0;
        while (*p && isalpha((unsigned char)*p)) {
            if (k < 15) words[n][k++] = (char)tolower((unsigned char)*p);
            p++;
        }
        if (k) words[n][k] = 0, n++;
    }
    return n;
}

static const char *pos_word(int p) {
    static const char *w[DEMO_NPOS] = {"left", "right", "top", "bottom", "center"};
    return w[p];
}

static const char *count_word(int c) {
    static const char *w[4] = {"zero", "one", "two", "three"};
    return w[c];
}

/* the scene's objects that match a colour, an outline and a size (-1: any; size 1 big, 0 small), as a bit set */
static unsigned matching(const demo_scene *s, int colour, int shape, int size) {
    unsigned m = 0;
    for (int j = 0; j < s->nobj; j++)
        if ((colour < 0 || s->obj[j].colour == colour) && (shape < 0 || s->obj[j].shape == shape) &&
            (size < 0 || s->obj[j].big == size))
            m |= 1u << j;
    return m;
}

static int has_object(const demo_scene *s, int colour, int shape) { return matching(s, colour, shape, -1) != 0; }

void demo_halluc_score(const demo_scene *s, const demo_pair *p, const char *answer, demo_halluc_result *r) {
    char w[64][16], q[32][16];
    int n = split_words(answer, w, 64), nq = split_words(p->question, q, 32);
    memset(r, 0, sizeof *r);
    const demo_obj *big = &s->obj[0];
    int negated = n > 0 && !strcmp(w[0], "no");
    /* object mentions: a shape word, with the colour before it ("a red circle") or after "is" ("the circle is
     * red"), or "shape" with a colour before it ("a small blue shape": any outline); a size before the colour
     * ("big" / "small") must match too, so "a big red shape and a small red shape" names a small red object that
     * a scene with one red object lacks */
    int first_colour = -1, first_shape = -1, first_pos = -1, count = -1;
    unsigned named = 0; /* the scene's objects that a mention matches */
    for (int i = 0; i < n; i++) {
        int c = word_index(w[i], demo_colour_name, DEMO_NCOLOURS), sh = word_index(w[i], demo_shape_name, DEMO_NSHAPES);
        if (c >= 0 && first_colour < 0) first_colour = c;
        if (sh >= 0 && first_shape < 0) first_shape = sh;
        if (first_pos < 0)
            for (int k = 0; k < DEMO_NPOS; k++)
                if (!strcmp(w[i], pos_word(k))) first_pos = k;
        if (count < 0)
            for (int k = 1; k <= 3; k++)
                if (!strcmp(w[i], count_word(k)) && i + 1 < n && !strncmp(w[i + 1], "shape", 5)) count = k;
        int j = i - 1, size = -1;
        while (j >= 0 && (!strcmp(w[j], "big") || !strcmp(w[j], "small"))) size = !strcmp(w[j--], "big");
        int colour = j >= 0 ? word_index(w[j], demo_colour_name, DEMO_NCOLOURS) : -1;
        if (colour >= 0 && j > 0 && (!strcmp(w[j - 1], "big") || !strcmp(w[j - 1], "small")))
            size = !strcmp(w[j - 1], "big"); /* "a small blue square": that size too */
        /* "a small blue shape" (make-demo's descriptions): an object of that colour, whatever its outline */
        int generic = sh < 0 && !strcmp(w[i], "shape") && colour >= 0;
        if (sh < 0 && !generic) continue;
        if (colour < 0 && i + 2 < n && !strcmp(w[i + 1], "is")) colour = word_index(w[i + 2], demo_colour_name, DEMO_NCOLOURS);
        if (negated) continue; /* "No, there is no red circle": claims an absence */
        r->mentions++;
        unsigned m = matching(s, colour, sh, size);
        if (!m) r->absent++;
        named |= m;
    }
    if (r->absent) r->false_claim = 1;
    /* the asked fact */
    int asked_colour = -1, asked_shape = -1;
    for (int i = 0; i < nq; i++) {
        int c = word_index(q[i], demo_colour_name, DEMO_NCOLOURS), sh = word_index(q[i], demo_shape_name, DEMO_NSHAPES);
        if (c >= 0) asked_colour = c;
        if (sh >= 0) asked_shape = sh;
    }
    int answered = 0;
    switch (p->kind) {
    case DEMO_Q_COLOUR:
        if (first_colour >= 0) answered = 1, r->false_claim |= first_colour != big->colour;
        break;
    case DEMO_Q_SHAPE:
        if (first_shape >= 0) answered = 1, r->false_claim |= first_shape != big->shape;
        break;
    case DEMO_Q_COUNT:
        if (count > 0) answered = 1, r->false_claim |= count != s->nobj;
        break;
    case DEMO_Q_POSITION:
        if (first_pos >= 0) answered = 1, r->false_claim |= first_pos != big->pos;
        break;
    case DEMO_Q_EXIST:
        /* "Green present." / "Green absent." (make-demo's answers); a claim about another colour than the asked one is
         * judged as that: "Red present." is false when nothing is red. Also "Yes, ..." / "No, ..." (earlier demos). */
        for (int i = 0; i < n && !answered; i++)
            if (!strcmp(w[i], "present") || !strcmp(w[i], "absent")) {
                int said = !strcmp(w[i], "present"), c = i > 0 ? word_index(w[i - 1], demo_colour_name, DEMO_NCOLOURS) : -1;
                answered = 1;
                if (c < 0 || c == asked_colour) r->false_claim |= said != has_object(s, asked_colour, asked_shape);
                else r->false_claim |= said != has_object(s, c, -1);
            }
        if (!answered && n > 0 && (!strcmp(w[0], "yes") || negated)) {
            answered = 1;
            r->false_claim |= (!negated) != has_object(s, asked_colour, asked_shape);
        }
        break;
    default:
        answered = r->mentions > 0;
        /* coverage: how many of the scene's objects the description names (a model that names nothing hallucinates
         * nothing; this shows what it leaves out) */
        r->objects = s->nobj;
        for (int k = 0; k < s->nobj; k++) r->covered += named >> k & 1;
        break;
    }
    r->answered = answered || r->mentions > 0;
}
