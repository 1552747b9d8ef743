/* The sampling rule of DSRT_OP_SAMPLE (ops.h), shared by host-side generation and the CPU kernel. */
#include "dsrt/sampler.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    float v;
    int32_t id;
} scored;

/* a before b: higher logit, ties to the lower id */
static int before(const scored *a, const scored *b) { return a->v > b->v || (a->v == b->v && a->id < b->id); }

static int by_rank(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    return before(x, y) ? -1 : before(y, x) ? 1 : 0;
}

/* Keeps the k best of c[0..n) in c[0..k) (a min-heap by rank, then sorted). */
static void best_k(scored *c, int64_t n, int64_t k)
{
    for (int64_t i = 0; i < n; i++) {
        scored x = c[i];
        int64_t pos;
        if (i < k) {
            pos = i;
            while (pos > 0 && before(&c[(pos - 1) / 2], &x)) { /* sift up: parent better than x */
                c[pos] = c[(pos - 1) / 2];
                pos = (pos - 1) / 2;
            }
            c[pos] = x;
        } else if (before(&x, &c[0])) {
            pos = 0;
            for (;;) { /* sift down from the root */
                int64_t l = 2 * pos + 1, r = l + 1, w = pos;
                const scored *cw = &x;
                if (l < k && before(cw, &c[l])) {
                    w = l;
                    cw = &c[l];
                }
                if (r < k && before(cw, &c[r])) w = r;
                if (w == pos) break;
                c[pos] = c[w];
                pos = w;
            }
            c[pos] = x;
        }
    }
    qsort(c, (size_t)(n < k ? n : k), sizeof *c, by_rank);
}

dsrt_status dsrt_sampling_check(const dsrt_sampling *p)
{
    if (isnan(p->temperature)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "temperature is NaN");
    if (p->top_k < 0) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "top-k %d must be >= 0", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "top-p %g must be in (0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0 && p->min_p < 1)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "min-p %g must be in [0, 1)", (double)p->min_p);
    return DSRT_OK;
}

size_t dsrt_sample_scratch_bytes(int64_t V) { return (size_t)V * (sizeof(scored) + sizeof(double)); }

int32_t dsrt_sample_row(const float *row, int64_t V, const dsrt_sampling *p, float u, void *scratch)
{
    if (p->temperature <= 0) {
        int64_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (row[i] > row[best] || (isnan(row[best]) && !isnan(row[i]))) best = i;
        return (int32_t)best;
    }
    scored *c = scratch;
    double *pr = (double *)(c + V);
    for (int64_t i = 0; i < V; i++) {
        c[i].v = isnan(row[i]) ? -INFINITY : row[i];
        c[i].id = (int32_t)i;
    }
    int64_t n = (p->top_k > 0 && p->top_k < V) ? p->top_k : V;
    /* softmax over every token; the kept prefix's probabilities are not renormalized between filters */
    float top = -INFINITY;
    for (int64_t i = 0; i < V; i++) top = c[i].v > top ? c[i].v : top;
    if (top == -INFINITY) return 0;
    double total = 0;
    for (int64_t i = 0; i < V; i++) total += exp(((double)c[i].v - top) / p->temperature);
    best_k(c, V, n);
    for (int64_t i = 0; i < n; i++) pr[i] = exp(((double)c[i].v - top) / p->temperature) / total;
    if (p->min_p > 0) {
        int64_t m = 1;
        while (m < n && pr[m] >= p->min_p * pr[0]) m++;
        n = m;
    }
    if (p->top_p < 1) {
        double cum = 0;
        int64_t m = 0;
        while (m < n) {
            cum += pr[m++];
            if (cum >= p->top_p) break;
        }
        n = m;
    }
    double kept = 0;
    for (int64_t i = 0; i < n; i++) kept += pr[i];
    double target = (double)u * kept, cum = 0;
    for (int64_t i = 0; i < n; i++) {
        cum += pr[i];
        if (cum > target) return c[i].id;
    }
    return c[n - 1].id;
}

void dsrt_random_seed(dsrt_random *r, uint64_t seed) { r->state = seed; }

float dsrt_random_uniform(dsrt_random *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) / 16777216.0f;
}
