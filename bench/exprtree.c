/* exprtree: a "real program" style single-threaded workload: a tiny computer
 * algebra system.
 *
 *   exprtree THREADS SCALE      (THREADS is ignored: single-threaded)
 *
 * For each of N = 20000 * SCALE random expressions over x, y, z:
 *   build a random tree (numbers, variables with heap-allocated names,
 *   negation, +, -, *, and n-ary sums whose child arrays grow with realloc),
 *   differentiate it symbolically w.r.t. x (copies subtrees), simplify the
 *   derivative and the original (constant folding, x+0, x*1, x*0, --x,
 *   flattening nested sums) into new trees, print the result into a string
 *   that grows with realloc, and free the intermediate trees.  The last 64
 *   simplified expressions stay alive in a ring (mixed lifetimes).
 * Node sizes: 16, 16, 16, 24 and 32 bytes plus 2..10 byte names and child
 * arrays of 2..64 pointers: many short-lived objects of several sizes.
 * Verification: every simplified tree must evaluate to the same value as the
 * unsimplified one at random points (within a rounding bound); the ring's
 * trees are re-evaluated when they are evicted. */
#include "common.h"
#include <math.h>

enum { NUM, VAR, NEG, ADD, SUB, MUL, SUM };

typedef struct node { uint8_t kind; } node;
typedef struct { uint8_t kind; double v; } num_t;                         /* 16 */
typedef struct { uint8_t kind; char *name; } var_t;                       /* 16 */
typedef struct { uint8_t kind; node *a; } un_t;                           /* 16 */
typedef struct { uint8_t kind; node *a, *b; } bin_t;                      /* 24 */
typedef struct { uint8_t kind; uint32_t n, cap; node **k; double c; } sum_t; /* 32 */

static uint64_t nodes_alloc, nodes_free;

static void *nalloc(size_t n)
{
    nodes_alloc++;
    return xmalloc_chk(n);
}

static node *mk_num(double v)
{
    num_t *p = (num_t *)nalloc(sizeof *p);
    p->kind = NUM;
    p->v = v;
    return (node *)p;
}

static const char *const var_names[] = {"x", "y", "z", "x", "alpha_1", "beta_22", "gamma_333"};
static double var_vals[3];

static node *mk_var(const char *name)
{
    var_t *p = (var_t *)nalloc(sizeof *p);
    p->kind = VAR;
    size_t l = strlen(name) + 1;
    p->name = (char *)xmalloc_chk(l);
    memcpy(p->name, name, l);
    return (node *)p;
}

static node *mk_un(int kind, node *a)
{
    un_t *p = (un_t *)nalloc(sizeof *p);
    p->kind = (uint8_t)kind;
    p->a = a;
    return (node *)p;
}

static node *mk_bin(int kind, node *a, node *b)
{
    bin_t *p = (bin_t *)nalloc(sizeof *p);
    p->kind = (uint8_t)kind;
    p->a = a;
    p->b = b;
    return (node *)p;
}

static sum_t *mk_sum(void)
{
    sum_t *p = (sum_t *)nalloc(sizeof *p);
    p->kind = SUM;
    p->n = 0;
    p->cap = 0;
    p->k = NULL;
    p->c = 0.0;
    return p;
}

static void sum_push(sum_t *s, node *x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 2;
        s->k = (node **)xrealloc_chk(s->k, s->cap * sizeof(node *));
    }
    s->k[s->n++] = x;
}

static void del(node *e)
{
    if (!e) return;
    switch (e->kind) {
    case NUM: break;
    case VAR: free(((var_t *)e)->name); break;
    case NEG: del(((un_t *)e)->a); break;
    case ADD: case SUB: case MUL: del(((bin_t *)e)->a); del(((bin_t *)e)->b); break;
    case SUM: {
        sum_t *s = (sum_t *)e;
        for (uint32_t i = 0; i < s->n; i++) del(s->k[i]);
        free(s->k);
        break;
    }
    default: VERIFY_FAIL("exprtree: bad node kind %d at %p (freed or overwritten?)", e->kind, (void *)e);
    }
    nodes_free++;
    free(e);
}

static node *copy(const node *e)
{
    switch (e->kind) {
    case NUM: return mk_num(((const num_t *)e)->v);
    case VAR: return mk_var(((const var_t *)e)->name);
    case NEG: return mk_un(NEG, copy(((const un_t *)e)->a));
    case ADD: case SUB: case MUL:
        return mk_bin(e->kind, copy(((const bin_t *)e)->a), copy(((const bin_t *)e)->b));
    case SUM: {
        const sum_t *s = (const sum_t *)e;
        sum_t *t = mk_sum();
        t->c = s->c;
        for (uint32_t i = 0; i < s->n; i++) sum_push(t, copy(s->k[i]));
        return (node *)t;
    }
    }
    VERIFY_FAIL("exprtree: bad node kind %d in copy", e->kind);
}

static int var_index(const char *name)
{
    return name[0] == 'x' ? 0 : name[0] == 'y' ? 1 : name[0] == 'z' ? 2 : name[0] == 'a' ? 1 : 2;
}

/* eval; abs_mode evaluates with absolute values (a bound for rounding error) */
static double eval(const node *e, int abs_mode)
{
    switch (e->kind) {
    case NUM: return abs_mode ? fabs(((const num_t *)e)->v) : ((const num_t *)e)->v;
    case VAR: {
        double v = var_vals[var_index(((const var_t *)e)->name)];
        return abs_mode ? fabs(v) : v;
    }
    case NEG: return abs_mode ? eval(((const un_t *)e)->a, 1) : -eval(((const un_t *)e)->a, 0);
    case ADD: return eval(((const bin_t *)e)->a, abs_mode) + eval(((const bin_t *)e)->b, abs_mode);
    case SUB:
        return abs_mode ? eval(((const bin_t *)e)->a, 1) + eval(((const bin_t *)e)->b, 1)
                        : eval(((const bin_t *)e)->a, 0) - eval(((const bin_t *)e)->b, 0);
    case MUL: return eval(((const bin_t *)e)->a, abs_mode) * eval(((const bin_t *)e)->b, abs_mode);
    case SUM: {
        const sum_t *s = (const sum_t *)e;
        double r = abs_mode ? fabs(s->c) : s->c;
        for (uint32_t i = 0; i < s->n; i++) r += eval(s->k[i], abs_mode);
        return r;
    }
    }
    VERIFY_FAIL("exprtree: bad node kind %d in eval", e->kind);
}

static node *gen(rng_t *r, int depth)
{
    uint64_t x = rng_below(r, 100);
    if (depth <= 0 || x < 12) {
        if (rng_next(r) & 1) return mk_num((double)((int)rng_below(r, 9) - 3) * 0.5);
        return mk_var(var_names[rng_below(r, 7)]);
    }
    if (x < 20) return mk_un(NEG, gen(r, depth - 1));
    if (x < 45) return mk_bin(ADD, gen(r, depth - 1), gen(r, depth - 1));
    if (x < 60) return mk_bin(SUB, gen(r, depth - 1), gen(r, depth - 1));
    if (x < 90) return mk_bin(MUL, gen(r, depth - 1), gen(r, depth - 2));
    sum_t *s = mk_sum();
    int n = 2 + (int)rng_below(r, 6);
    for (int i = 0; i < n; i++) sum_push(s, gen(r, depth - 2));
    return (node *)s;
}

/* d/dx; never consumes its input */
static node *deriv(const node *e)
{
    switch (e->kind) {
    case NUM: return mk_num(0.0);
    case VAR: return mk_num(var_index(((const var_t *)e)->name) == 0 ? 1.0 : 0.0);
    case NEG: return mk_un(NEG, deriv(((const un_t *)e)->a));
    case ADD: case SUB:
        return mk_bin(e->kind, deriv(((const bin_t *)e)->a), deriv(((const bin_t *)e)->b));
    case MUL: {
        const bin_t *b = (const bin_t *)e;
        return mk_bin(ADD, mk_bin(MUL, deriv(b->a), copy(b->b)), mk_bin(MUL, copy(b->a), deriv(b->b)));
    }
    case SUM: {
        const sum_t *s = (const sum_t *)e;
        sum_t *t = mk_sum();
        for (uint32_t i = 0; i < s->n; i++) sum_push(t, deriv(s->k[i]));
        return (node *)t;
    }
    }
    VERIFY_FAIL("exprtree: bad node kind %d in deriv", e->kind);
}

static int is_num(const node *e, double v) { return e->kind == NUM && ((const num_t *)e)->v == v; }

/* add simplified term t into sum s (flattening sums, folding constants) */
static void sum_add(sum_t *s, node *t, int negate)
{
    if (t->kind == NUM) {
        s->c += negate ? -((num_t *)t)->v : ((num_t *)t)->v;
        del(t);
    } else if (t->kind == SUM) {
        sum_t *u = (sum_t *)t;
        s->c += negate ? -u->c : u->c;
        for (uint32_t i = 0; i < u->n; i++) sum_push(s, negate ? mk_un(NEG, u->k[i]) : u->k[i]);
        u->n = 0;
        del(t);
    } else if (t->kind == NEG && negate) {
        sum_push(s, ((un_t *)t)->a);
        ((un_t *)t)->a = NULL;
        del(t);
    } else {
        sum_push(s, negate ? mk_un(NEG, t) : t);
    }
}

static node *finish_sum(sum_t *s)
{
    if (s->n == 0) {
        node *r = mk_num(s->c);
        del((node *)s);
        return r;
    }
    if (s->n == 1 && s->c == 0.0) {
        node *r = s->k[0];
        s->n = 0;
        del((node *)s);
        return r;
    }
    return (node *)s;
}

/* returns a new simplified tree; never consumes its input */
static node *simp(const node *e)
{
    switch (e->kind) {
    case NUM: case VAR: return copy(e);
    case NEG: {
        node *a = simp(((const un_t *)e)->a);
        if (a->kind == NUM) { double v = -((num_t *)a)->v; del(a); return mk_num(v); }
        if (a->kind == NEG) { node *r = ((un_t *)a)->a; ((un_t *)a)->a = NULL; del(a); return r; }
        return mk_un(NEG, a);
    }
    case ADD: case SUB: case SUM: {
        sum_t *s = mk_sum();
        if (e->kind == SUM) {
            const sum_t *u = (const sum_t *)e;
            s->c = u->c;
            for (uint32_t i = 0; i < u->n; i++) sum_add(s, simp(u->k[i]), 0);
        } else {
            const bin_t *b = (const bin_t *)e;
            sum_add(s, simp(b->a), 0);
            sum_add(s, simp(b->b), e->kind == SUB);
        }
        return finish_sum(s);
    }
    case MUL: {
        const bin_t *b = (const bin_t *)e;
        node *x = simp(b->a), *y = simp(b->b);
        if (x->kind == NUM && y->kind == NUM) {
            double v = ((num_t *)x)->v * ((num_t *)y)->v;
            del(x); del(y);
            return mk_num(v);
        }
        if (is_num(x, 0.0) || is_num(y, 0.0)) { del(x); del(y); return mk_num(0.0); }
        if (is_num(x, 1.0)) { del(x); return y; }
        if (is_num(y, 1.0)) { del(y); return x; }
        if (is_num(x, -1.0)) { del(x); return mk_un(NEG, y); }
        return mk_bin(MUL, x, y);
    }
    }
    VERIFY_FAIL("exprtree: bad node kind %d in simp", e->kind);
}

typedef struct { char *s; size_t n, cap; } sbuf;

static void sb_put(sbuf *b, const char *s, size_t l)
{
    if (b->n + l + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 16;
        while (nc < b->n + l + 1) nc = nc * 3 / 2 + 8;
        b->s = (char *)xrealloc_chk(b->s, nc);
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, l);
    b->n += l;
    b->s[b->n] = 0;
}

static void print(sbuf *b, const node *e)
{
    char tmp[32];
    switch (e->kind) {
    case NUM: sb_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%g", ((const num_t *)e)->v)); break;
    case VAR: sb_put(b, ((const var_t *)e)->name, strlen(((const var_t *)e)->name)); break;
    case NEG: sb_put(b, "-(", 2); print(b, ((const un_t *)e)->a); sb_put(b, ")", 1); break;
    case ADD: case SUB: case MUL: {
        const bin_t *x = (const bin_t *)e;
        sb_put(b, "(", 1);
        print(b, x->a);
        sb_put(b, e->kind == ADD ? " + " : e->kind == SUB ? " - " : "*", e->kind == MUL ? 1 : 3);
        print(b, x->b);
        sb_put(b, ")", 1);
        break;
    }
    case SUM: {
        const sum_t *s = (const sum_t *)e;
        sb_put(b, "sum(", 4);
        for (uint32_t i = 0; i < s->n; i++) { print(b, s->k[i]); sb_put(b, ", ", 2); }
        sb_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%g", s->c));
        sb_put(b, ")", 1);
        break;
    }
    }
}

static uint64_t checked, skipped;

/* a and b must be equal as functions (a is the reference) */
static void same_value(const node *a, const node *b, rng_t *r, const char *what)
{
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 3; i++) var_vals[i] = (double)((int64_t)rng_below(r, 2001) - 1000) / 1000.0;
        double bound = eval(a, 1);
        double va = eval(a, 0), vb = eval(b, 0);
        if (!isfinite(bound) || bound > 1e200) { skipped++; continue; }
        if (!(fabs(va - vb) <= 1e-9 * bound + 1e-12))
            VERIFY_FAIL("exprtree: %s changed the value: %.17g vs %.17g (bound %g)", what, va, vb, bound);
        checked++;
    }
}

#define RING 64

int main(int argc, char **argv)
{
    (void)arg_threads(argc, argv, 1);
    double scale = arg_scale(argc, argv, 1.0);
    size_t n = scaled(20000, scale, 50);
    rng_t r;
    rng_seed(&r, 0xe7e7);
    node *ring[RING] = {0}, *ring_ref[RING] = {0};
    uint64_t hash = 1469598103934665603ULL;
    for (size_t it = 0; it < n; it++) {
        node *e = gen(&r, 5 + (int)rng_below(&r, 5));
        node *d = deriv(e);
        node *sd = simp(d);
        same_value(d, sd, &r, "simplify(derivative)");
        node *se = simp(e);
        same_value(e, se, &r, "simplify");
        sbuf b = {0};
        print(&b, sd);
        print(&b, se);
        for (size_t i = 0; i < b.n; i++) hash = (hash ^ (unsigned char)b.s[i]) * 1099511628211ULL;
        free(b.s);
        del(d);
        del(sd);
        /* keep (e, simplified e) alive for a while */
        int slot = (int)(it % RING);
        if (ring[slot]) {
            same_value(ring_ref[slot], ring[slot], &r, "ring entry");
            del(ring[slot]);
            del(ring_ref[slot]);
        }
        ring[slot] = se;
        ring_ref[slot] = e;
    }
    for (int i = 0; i < RING; i++) {
        if (ring[i]) { same_value(ring_ref[i], ring[i], &r, "ring final"); del(ring[i]); del(ring_ref[i]); }
    }
    if (nodes_alloc != nodes_free)
        VERIFY_FAIL("exprtree: %llu nodes allocated, %llu freed", (unsigned long long)nodes_alloc,
                    (unsigned long long)nodes_free);
    if (checked == 0) VERIFY_FAIL("exprtree: no value checks were possible");
    if (bench_verbose())
        fprintf(stderr, "exprtree: %zu expressions, %llu nodes, %llu checks (%llu skipped), hash %016llx\n", n,
                (unsigned long long)nodes_alloc, (unsigned long long)checked, (unsigned long long)skipped,
                (unsigned long long)hash);
    return 0;
}
