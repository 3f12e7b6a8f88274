/* demo_scene — synthetic scenes (coloured shapes on plain or two-colour backgrounds) and their
 * question / true answer / hallucinated answer. Everything is a pure function of (seed, pair index). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo/demo.h"
#include "io/err.h"
#include "io/mem.h"

/* ---- random numbers: splitmix64 streams keyed by (seed, a, b) ------------------------------------- */

uint64_t demo_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t demo_hash(uint64_t seed, uint64_t a, uint64_t b) {
    uint64_t s = seed ^ 0x6A09E667F3BCC909ull;
    uint64_t h = demo_next(&s);
    s = h ^ (a * 0xD6E8FEB86659FD93ull);
    h = demo_next(&s);
    s = h ^ (b * 0xA0761D6478BD642Full);
    return demo_next(&s);
}

int demo_below(uint64_t *s, int n) { return n <= 1 ? 0 : (int)(demo_next(s) % (uint64_t)n); }

/* ---- vocabulary ------------------------------------------------------------------------------------ */

static const char *colour_names[DEMO_NCOLOURS] = {"red", "green", "blue", "yellow", "orange", "purple"};
static const char *colour_caps[DEMO_NCOLOURS] = {"Red", "Green", "Blue", "Yellow", "Orange", "Purple"};
static const uint8_t colour_rgb[DEMO_NCOLOURS][3] = {
    {220, 30, 30}, {30, 160, 50}, {40, 70, 220}, {240, 210, 20}, {245, 135, 20}, {140, 50, 180}};
static const char *bg_names[DEMO_NBG] = {"white", "gray", "black"};
static const uint8_t bg_rgb[DEMO_NBG][3] = {{255, 255, 255}, {128, 128, 128}, {0, 0, 0}};
static const char *shape_names[DEMO_NSHAPES] = {"circle", "square", "triangle"};
/* position phrases, as they follow "is" */
static const char *pos_names[DEMO_NPOS] = {"left", "right", "top", "bottom", "center"};
static const char *pos_phrase[DEMO_NPOS] = {"on the left", "on the right", "at the top", "at the bottom",
                                            "in the center"};
static const char *numbers[4] = {"", "one", "two", "three"};

static const char *const words[] = {
    /* prompt template */
    "[INST]", "[/INST]",
    /* questions */
    "What", "color", "is", "the", "big", "shape", "object", "How", "many", "shapes", "are", "there", "Where",
    "Is", "a", "an", "Describe", "image",
    /* answers */
    "A", "The", "It", "There", "small", "and", "on", "at", "in", "background", "present", "absent",
    "left", "right", "top", "bottom", "center",
    "one", "two", "three",
    "circle", "square", "triangle",
    "red", "green", "blue", "yellow", "orange", "purple", "white", "gray", "black",
    "Red", "Green", "Blue", "Yellow", "Orange", "Purple", /* an existence answer starts with the colour */
};

const char *const *demo_words(int *n) {
    *n = (int)(sizeof words / sizeof words[0]);
    return words;
}

const char *demo_colour_name(int c) { return c >= 0 && c < DEMO_NCOLOURS ? colour_names[c] : "?"; }
void demo_colour_rgb(int c, uint8_t rgb[3]) { memcpy(rgb, colour_rgb[c >= 0 && c < DEMO_NCOLOURS ? c : 0], 3); }
const char *demo_shape_name(int s) { return s >= 0 && s < DEMO_NSHAPES ? shape_names[s] : "?"; }
const char *demo_pos_name(int p) { return p >= 0 && p < DEMO_NPOS ? pos_names[p] : "?"; }

/* ---- scenes ---------------------------------------------------------------------------------------- */

/* (height, width): squares, wide and tall images, so that anyres picks 1x2, 2x1, 2x2, 1x3 and 3x1 grids
 * with the demo's 56-pixel tiles */
static const int sizes[][2] = {{48, 48},  {56, 56},  {64, 64},   {96, 96},  {112, 112}, {56, 112},
                               {48, 128}, {64, 176}, {112, 56}, {128, 48}, {176, 64},  {80, 120}};

void demo_scene_make(uint64_t seed, int64_t i, demo_scene *s) {
    uint64_t st = demo_hash(seed, 1, (uint64_t)i);
    memset(s, 0, sizeof *s);
    int k = demo_below(&st, (int)(sizeof sizes / sizeof sizes[0]));
    s->h = sizes[k][0];
    s->w = sizes[k][1];
    s->bg[0] = demo_below(&st, DEMO_NBG);
    if (demo_below(&st, 10) < 3) { /* two-colour background */
        s->split = 1 + demo_below(&st, 2);
        s->bg[1] = (s->bg[0] + 1 + demo_below(&st, DEMO_NBG - 1)) % DEMO_NBG;
    } else {
        s->bg[1] = s->bg[0];
    }
    int r = demo_below(&st, 10);
    s->nobj = r < 5 ? 1 : r < 8 ? 2 : 3;
    int shape_used = 0, colour_used = 0, pos_used = 0;
    for (int j = 0; j < s->nobj; j++) {
        demo_obj *o = &s->obj[j];
        do o->shape = demo_below(&st, DEMO_NSHAPES); while (shape_used >> o->shape & 1);
        do o->colour = demo_below(&st, DEMO_NCOLOURS); while (colour_used >> o->colour & 1);
        do o->pos = demo_below(&st, DEMO_NPOS); while (pos_used >> o->pos & 1);
        shape_used |= 1 << o->shape;
        colour_used |= 1 << o->colour;
        pos_used |= 1 << o->pos;
        o->big = j == 0;
    }
}

/* is the pixel centre (px, py) inside the shape of o (centre cx, cy, radius r)? */
static int inside(const demo_obj *o, double px, double py, double cx, double cy, double r) {
    double dx = px - cx, dy = py - cy;
    switch (o->shape) {
    case DEMO_CIRCLE: return dx * dx + dy * dy <= r * r;
    case DEMO_SQUARE: return dx >= -0.8 * r && dx <= 0.8 * r && dy >= -0.8 * r && dy <= 0.8 * r;
    default: { /* triangle, apex up: from cy - r to cy + 0.75 r */
        double top = cy - r, bottom = cy + 0.75 * r;
        if (py < top || py > bottom) return 0;
        double half = 0.95 * r * (py - top) / (bottom - top);
        return dx >= -half && dx <= half;
    }
    }
}

static void obj_geometry(const demo_scene *s, const demo_obj *o, double *cx, double *cy, double *r) {
    static const double fx[DEMO_NPOS] = {0.2, 0.8, 0.5, 0.5, 0.5}, fy[DEMO_NPOS] = {0.5, 0.5, 0.2, 0.8, 0.5};
    double m = s->h < s->w ? s->h : s->w;
    *cx = fx[o->pos] * s->w;
    *cy = fy[o->pos] * s->h;
    *r = (o->big ? 0.33 : 0.2) * m;
}

int demo_scene_draw(const demo_scene *s, uint8_t **px) {
    uint8_t *p = mem_alloc((size_t)s->h * (size_t)s->w * 3, "a demo image");
    *px = p;
    double cx[DEMO_MAX_OBJ], cy[DEMO_MAX_OBJ], r[DEMO_MAX_OBJ];
    for (int j = 0; j < s->nobj; j++) obj_geometry(s, &s->obj[j], &cx[j], &cy[j], &r[j]);
    for (int y = 0; y < s->h; y++) {
        for (int x = 0; x < s->w; x++) {
            uint8_t *q = p + ((size_t)y * (size_t)s->w + (size_t)x) * 3;
            int second = (s->split == 1 && 2 * x >= s->w) || (s->split == 2 && 2 * y >= s->h);
            const uint8_t *c = bg_rgb[s->bg[second]];
            for (int j = 0; j < s->nobj; j++)
                if (inside(&s->obj[j], x + 0.5, y + 0.5, cx[j], cy[j], r[j])) c = colour_rgb[s->obj[j].colour];
            q[0] = c[0], q[1] = c[1], q[2] = c[2];
        }
    }
    return ERR_OK;
}

/* ---- questions and answers ------------------------------------------------------------------------- */

static int other(uint64_t *st, int n, int not) { return (not + 1 + demo_below(st, n - 1)) % n; }

/* "A big red shape and a small blue shape on a white background.": each object by its size and colour; an outline
 * (shape >= 0) only where a rejected answer names one */
static void describe(const demo_scene *s, const demo_obj *objs, int n, char *out, size_t cap) {
    size_t k = 0;
    for (int j = 0; j < n && k < cap; j++)
        k += (size_t)snprintf(out + k, cap - k, "%s %s %s %s", j ? " and a" : "A", objs[j].big ? "big" : "small",
                              colour_names[objs[j].colour], objs[j].shape >= 0 ? shape_names[objs[j].shape] : "shape");
    if (k >= cap) return;
    if (s->split) snprintf(out + k, cap - k, " on a %s and %s background.", bg_names[s->bg[0]], bg_names[s->bg[1]]);
    else snprintf(out + k, cap - k, " on a %s background.", bg_names[s->bg[0]]);
}

static void count_answer(int n, char *out, size_t cap) {
    if (n == 1) snprintf(out, cap, "There is one shape.");
    else snprintf(out, cap, "There are %s shapes.", numbers[n]);
}

/* "a" or "an" before a colour name */
static const char *article(int colour) { return colour_names[colour][0] == 'o' ? "an" : "a"; }

void demo_pair_make(const demo_scene *s, const demo_opts *opt, int64_t i, demo_pair *p) {
    uint64_t st = demo_hash(opt->seed, 2, (uint64_t)i);
    memset(p, 0, sizeof *p);
    /* the kind, drawn with the weights of opt->mix (the default favours what a tiny model learns fast) */
    int total = 0;
    for (int k = 0; k < DEMO_NQ; k++) total += opt->mix[k] > 0 ? opt->mix[k] : 0;
    int v = demo_below(&st, total > 0 ? total : 1);
    p->kind = 0;
    while (p->kind < DEMO_NQ - 1 && v >= (opt->mix[p->kind] > 0 ? opt->mix[p->kind] : 0))
        v -= opt->mix[p->kind] > 0 ? opt->mix[p->kind] : 0, p->kind++;
    const demo_obj *big = &s->obj[0];
    const demo_obj *o = &s->obj[demo_below(&st, s->nobj)];
    switch (p->kind) {
    case DEMO_Q_COLOUR: {
        int wrong = other(&st, DEMO_NCOLOURS, big->colour);
        if (demo_below(&st, 2)) {
            snprintf(p->question, sizeof p->question, "What color is the big shape?");
            snprintf(p->chosen, sizeof p->chosen, "The big shape is %s.", colour_names[big->colour]);
            snprintf(p->rejected, sizeof p->rejected, "The big shape is %s.", colour_names[wrong]);
        } else {
            snprintf(p->question, sizeof p->question, "What color is the %s?", shape_names[big->shape]);
            snprintf(p->chosen, sizeof p->chosen, "The %s is %s.", shape_names[big->shape], colour_names[big->colour]);
            snprintf(p->rejected, sizeof p->rejected, "The %s is %s.", shape_names[big->shape], colour_names[wrong]);
        }
        break;
    }
    case DEMO_Q_SHAPE: { /* about the big object: the small ones are a patch or two of a 14-pixel grid */
        o = big;
        int wrong = other(&st, DEMO_NSHAPES, o->shape);
        snprintf(p->question, sizeof p->question, "What shape is the %s object?", colour_names[o->colour]);
        snprintf(p->chosen, sizeof p->chosen, "It is a %s.", shape_names[o->shape]);
        snprintf(p->rejected, sizeof p->rejected, "It is a %s.", shape_names[wrong]);
        break;
    }
    case DEMO_Q_COUNT: {
        int wrong = 1 + other(&st, DEMO_MAX_OBJ, s->nobj - 1);
        snprintf(p->question, sizeof p->question, "How many shapes are there?");
        count_answer(s->nobj, p->chosen, sizeof p->chosen);
        count_answer(wrong, p->rejected, sizeof p->rejected);
        break;
    }
    case DEMO_Q_POSITION: { /* about the big object; the rejected answer is the opposite side (any other
                               position for the center) */
        static const int opposite[DEMO_NPOS] = {DEMO_RIGHT, DEMO_LEFT, DEMO_BOTTOM, DEMO_TOP, -1};
        o = big;
        int wrong = other(&st, DEMO_NPOS, o->pos);
        if (opposite[o->pos] >= 0) wrong = opposite[o->pos];
        snprintf(p->question, sizeof p->question, "Where is the %s %s?", colour_names[o->colour],
                 shape_names[o->shape]);
        snprintf(p->chosen, sizeof p->chosen, "It is %s.", pos_phrase[o->pos]);
        snprintf(p->rejected, sizeof p->rejected, "It is %s.", pos_phrase[wrong]);
        break;
    }
    case DEMO_Q_EXIST: {
        int present = demo_below(&st, 2);
        int shape = o->shape, colour = o->colour;
        if (!present) { /* an object that is not there: a colour that nothing in the image has */
            int used = 0;
            for (int j = 0; j < s->nobj; j++) used |= 1 << s->obj[j].colour;
            shape = demo_below(&st, DEMO_NSHAPES);
            do colour = demo_below(&st, DEMO_NCOLOURS); while (used >> colour & 1);
        }
        snprintf(p->question, sizeof p->question, "Is there %s %s %s?", article(colour), colour_names[colour],
                 shape_names[shape]);
        /* the answer is the asked colour, then the verdict: "Green present." / "Green absent.", the rejected answer the
         * other verdict. Only the image tells the two apart (with "Yes, there is a red square." / "No, there is no red
         * square." the model told them apart by the words after the verdict: docs/demo.md), and the verdict comes right
         * after the colour word, so the model decides it where the current token is that colour: one attention step
         * from the colour word to the image tokens of that colour. With the verdict alone ("Yes." / "No.", predicted at
         * [/INST], three tokens after the colour) it needs two steps, and learnt them in one make-demo seed of three. */
        snprintf(p->chosen, sizeof p->chosen, "%s %s.", colour_caps[colour], present ? "present" : "absent");
        snprintf(p->rejected, sizeof p->rejected, "%s %s.", colour_caps[colour], present ? "absent" : "present");
        break;
    }
    default: { /* describe: each object by size and colour, no outline (docs/demo.md, "Why a description names no
                  outline"); the rejected answer is one of the demo model's own hallucinations */
        snprintf(p->question, sizeof p->question, "Describe the image.");
        demo_obj fake[DEMO_MAX_OBJ + 1];
        int n = s->nobj;
        memcpy(fake, s->obj, sizeof s->obj[0] * (size_t)n);
        for (int j = 0; j < n; j++) fake[j].shape = -1;
        describe(s, fake, n, p->chosen, sizeof p->chosen);
        int v = demo_below(&st, 6);
        if (v < 2) { /* the big shape's outline named, and wrong */
            fake[0].shape = other(&st, DEMO_NSHAPES, s->obj[0].shape);
        } else if (v < 4) { /* a small object in the big one's colour: one recoloured, or one added */
            if (n >= 2) fake[1 + demo_below(&st, n - 1)].colour = fake[0].colour;
            else fake[n] = fake[0], fake[n].big = 0, n++;
        } else if (v == 4 && n < DEMO_MAX_OBJ) { /* an object of a colour that nothing in the image has */
            int used = 0;
            for (int j = 0; j < n; j++) used |= 1 << fake[j].colour;
            fake[n] = fake[0], fake[n].big = 0;
            do fake[n].colour = demo_below(&st, DEMO_NCOLOURS); while (used >> fake[n].colour & 1);
            n++;
        } else { /* the big one miscoloured */
            fake[0].colour = other(&st, DEMO_NCOLOURS, fake[0].colour);
        }
        describe(s, fake, n, p->rejected, sizeof p->rejected);
        break;
    }
    }
}
