/*
 * Compiled CPU kernels of sgan's sparse coders: the LARS-lasso homotopy and batch OMP, one
 * signal at a time over a precomputed Gram matrix, with a Cholesky factor of the active
 * Gram matrix updated one atom at a time (Golub & Van Loan §6.5.4; the scheme of SPAMS'
 * lasso and omp). The same algorithms as the batched torch engine in sparse_coding.py,
 * step for step: same events, same tie-breaks, same pivot test; everything in double.
 *
 * Built when sgan is installed (setup.py: an optional extension without Python's C API, so
 * no Python headers) and loaded by sgan_cli/native.py through ctypes; the caller splits the
 * signals between threads, one call per share. All matrices are dense, row-major, double:
 *   G [K, K] the Gram matrix of the atoms; corr [n, K] = Dᵀy per signal;
 *   codes [n, K] output (written in full).
 * Return values: 0 on success, 1 when a workspace allocation failed.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int64_t i64;

/* workspace of one call: one signal's state at a time */
typedef struct {
    i64 K, cap;
    double *c;      /* [K] correlations Dᵀ(y − aD) */
    double *u;      /* [K] their rate of change per unit step, G w */
    double *rate;   /* [K] rates 1/γ at which inactive atoms reach |c_j| = λ */
    double *w;      /* [cap] equiangular direction on the active set */
    double *a;      /* [cap] active coefficients, in order of entry */
    double *l;      /* [cap] scratch */
    double *L;      /* [cap, cap] lower Cholesky factor of G_AA, row stride cap */
    double *dinv;   /* [cap] 1 / L_ii: multiplications instead of dependent divisions */
    i64 *idx;       /* [cap] active atoms, in order of entry */
    double *active, *dependent, *just_left; /* [K] flags, 0.0 or 1.0 (doubles: the rate loop vectorises) */
} work_t;

static void work_free(work_t *W) {
    free(W->c); free(W->u); free(W->rate); free(W->w); free(W->a); free(W->l); free(W->L); free(W->dinv); free(W->idx);
    free(W->active); free(W->dependent); free(W->just_left);
}

static int work_alloc(work_t *W, i64 K, i64 cap) {
    i64 c1 = cap > 0 ? cap : 1;
    memset(W, 0, sizeof(*W));
    W->K = K; W->cap = cap;
    W->c = malloc(sizeof(double) * K); W->u = malloc(sizeof(double) * K);
    W->rate = malloc(sizeof(double) * K);
    W->w = malloc(sizeof(double) * c1); W->a = malloc(sizeof(double) * c1);
    W->l = malloc(sizeof(double) * c1); W->L = malloc(sizeof(double) * c1 * c1);
    W->dinv = malloc(sizeof(double) * c1);
    W->idx = malloc(sizeof(i64) * c1);
    W->active = malloc(sizeof(double) * K); W->dependent = malloc(sizeof(double) * K);
    W->just_left = malloc(sizeof(double) * K);
    if (!W->c || !W->u || !W->rate || !W->w || !W->a || !W->l || !W->L || !W->dinv || !W->idx || !W->active ||
        !W->dependent || !W->just_left) {
        work_free(W);
        return 1;
    }
    return 0;
}

/* Append atom j as row s of L when its pivot d² = G_jj − ‖L⁻¹G_Aj‖² exceeds tol·G_jj;
 * returns 1 if added, 0 if j lies (numerically) in the span of the s active atoms. */
static int chol_add(const double *G, i64 K, work_t *W, i64 s, i64 j, double tol) {
    const i64 cap = W->cap;
    double *L = W->L, *l = W->l;
    const double gjj = G[j * K + j];
    double d2 = gjj;
    for (i64 i = 0; i < s; i++) {
        const double *Li = L + i * cap;
        double v = G[W->idx[i] * K + j];
        for (i64 k = 0; k < i; k++) v -= Li[k] * l[k];
        v *= W->dinv[i];
        l[i] = v;
        d2 -= v * v;
    }
    if (!(d2 > tol * gjj)) return 0; /* NaN is not a pivot either */
    double *Ls = L + s * cap;
    for (i64 k = 0; k < s; k++) Ls[k] = l[k];
    Ls[s] = sqrt(d2);
    W->dinv[s] = 1.0 / Ls[s];
    return 1;
}

/* x ← L⁻ᵀ x on the leading s × s block; dinv = 1 / diag(L) */
static void chol_backward(const double *L, const double *dinv, i64 cap, i64 s, double *x) {
    for (i64 i = s - 1; i >= 0; i--) {
        double v = x[i];
        for (i64 k = i + 1; k < s; k++) v -= L[k * cap + i] * x[k];
        x[i] = v * dinv[i];
    }
}

/* x ← (L Lᵀ)⁻¹ x on the leading s × s block */
static void chol_solve(const double *L, const double *dinv, i64 cap, i64 s, double *x) {
    for (i64 i = 0; i < s; i++) {
        const double *Li = L + i * cap;
        double v = x[i];
        for (i64 k = 0; k < i; k++) v -= Li[k] * x[k];
        x[i] = v * dinv[i];
    }
    chol_backward(L, dinv, cap, s, x);
}

/* Drop position p of s active atoms: delete row p of L, idx and a, and restore the lower
 * triangle by Givens rotations of column pairs (L Lᵀ is unchanged by them), O(s²). */
static void chol_remove(work_t *W, i64 s, i64 p) {
    const i64 cap = W->cap;
    double *L = W->L;
    for (i64 i = p; i + 1 < s; i++) {
        memcpy(L + i * cap, L + (i + 1) * cap, sizeof(double) * (size_t)(i + 2));
        W->idx[i] = W->idx[i + 1];
        W->a[i] = W->a[i + 1];
    }
    for (i64 i = p; i + 1 < s; i++) { /* zero the entry (i, i+1) */
        const double x = L[i * cap + i], y = L[i * cap + i + 1];
        const double r = hypot(x, y);
        if (r == 0.0) continue;
        const double cs = x / r, sn = y / r;
        for (i64 k = i; k + 1 < s; k++) {
            double *Lk = L + k * cap;
            const double p0 = Lk[i], p1 = Lk[i + 1];
            Lk[i] = cs * p0 + sn * p1;
            Lk[i + 1] = -sn * p0 + cs * p1;
        }
        L[i * cap + i + 1] = 0.0;
    }
    for (i64 i = p; i + 1 < s; i++) W->dinv[i] = 1.0 / L[i * cap + i];
}

/* out ← base + scale·Σ_q w_q G[idx_q, :] over s rows of G [K, K] (base may be out);
 * four rows per pass over out, so that out is loaded and stored once per four rows */
static void add_rows(double *restrict out, const double *base, const double *G, i64 K,
                     const i64 *idx, const double *w, i64 s, double scale) {
    if (base != out) memcpy(out, base, sizeof(double) * (size_t)K);
    i64 q = 0;
    for (; q + 4 <= s; q += 4) {
        const double *restrict g0 = G + idx[q] * K, *restrict g1 = G + idx[q + 1] * K;
        const double *restrict g2 = G + idx[q + 2] * K, *restrict g3 = G + idx[q + 3] * K;
        const double w0 = scale * w[q], w1 = scale * w[q + 1];
        const double w2 = scale * w[q + 2], w3 = scale * w[q + 3];
        for (i64 k = 0; k < K; k++) out[k] += w0 * g0[k] + w1 * g1[k] + w2 * g2[k] + w3 * g3[k];
    }
    for (; q < s; q++) {
        const double *restrict g = G + idx[q] * K;
        const double wq = scale * w[q];
        for (i64 k = 0; k < K; k++) out[k] += wq * g[k];
    }
}

/* c ← corr − Σ_s a_s G[idx_s, :] */
static void exact_corr(const double *G, i64 K, const double *corr, work_t *W, i64 s) {
    add_rows(W->c, corr, G, K, W->idx, W->a, s, -1.0);
}

static inline double sgn(double x) { return (x > 0.0) - (x < 0.0); }

/* One signal's LARS-lasso path from λ = max|corr| down to α (see _lars in lars.py).
 * Writes its code [K]; with rec_lam non-NULL, λ and the active count at the start of each
 * of its first rec_width steps. Returns the number of steps taken; *lam_out, *cnt_out: λ
 * and the active count where it ended. */
static i64 lars_one(const double *G, i64 K, i64 dim, const double *corr, double alpha,
                    i64 max_steps, i64 stop_active, double tol, work_t *W, double *code,
                    double *rec_lam, i64 *rec_cnt, i64 rec_width, double *lam_out,
                    i64 *cnt_out) {
    double *c = W->c, *u = W->u, *w = W->w, *a = W->a;
    i64 *idx = W->idx;
    memcpy(c, corr, sizeof(double) * (size_t)K);
    memset(W->active, 0, sizeof(double) * (size_t)K);
    memset(W->dependent, 0, sizeof(double) * (size_t)K);
    memset(W->just_left, 0, sizeof(double) * (size_t)K);
    memset(code, 0, sizeof(double) * (size_t)K);
    double lam = 0.0;
    i64 first = 0;
    for (i64 k = 0; k < K; k++)
        if (fabs(c[k]) > lam) { lam = fabs(c[k]); first = k; }
    i64 s = 0, steps = 0;
    int done = !(lam > alpha);
    if (!done && W->cap > 0) {
        W->active[first] = 1.0;
        idx[0] = first;
        if (chol_add(G, K, W, 0, first, tol)) { a[0] = 0.0; s = 1; }
    }
    int left_last = 0;
    for (i64 step = 0; step < max_steps && !done; step++) {
        if (rec_lam != NULL && step < rec_width) { rec_lam[step] = lam; rec_cnt[step] = s; }
        steps++;
        for (i64 q = 0; q < s; q++) w[q] = sgn(c[idx[q]]);
        chol_solve(W->L, W->dinv, W->cap, s, w);
        memset(u, 0, sizeof(double) * (size_t)K);
        add_rows(u, u, G, K, idx, w, s, 1.0);
        /* the first atom to reach |c_j| = λ (largest rate 1/γ; γ ≤ 1e-9·λ is rounding);
         * branch-free, so that the divisions and the maximum vectorise, then its first atom */
        const double r_cap = 1e9 / lam;
        double *rate = W->rate;
        const double *act = W->active, *dep = W->dependent, *jl = W->just_left;
        const double ll = left_last ? 1.0 : 0.0;
        double r_in = -INFINITY; /* NaN rates are -inf already: the maximum is well defined */
#pragma omp simd reduction(max : r_in)
        for (i64 k = 0; k < K; k++) {
            double rp = (1.0 - u[k]) / (lam - c[k]);
            double rm = (1.0 + u[k]) / (lam + c[k]);
            const double side = ll * jl[k];
            rp = (rp < r_cap) ? rp : -INFINITY; /* NaN fails < */
            rm = (rm < r_cap) ? rm : -INFINITY;
            rp = (side > 0.0 && c[k] > 0.0) ? -INFINITY : rp;
            rm = (side > 0.0 && c[k] < 0.0) ? -INFINITY : rm;
            const double r = rp > rm ? rp : rm;
            const double rk = (act[k] + dep[k] > 0.0) ? -INFINITY : r;
            rate[k] = rk;
            r_in = rk > r_in ? rk : r_in;
        }
        i64 j_in = 0; /* the first atom at the maximum */
        if (r_in > -INFINITY)
            for (i64 k = 0; k < K; k++)
                if (rate[k] == r_in) { j_in = k; break; }
        const double g_in = (r_in > 0.0 && s < dim) ? 1.0 / r_in : INFINITY;
        /* the first active coefficient to cross zero */
        double g_out = INFINITY;
        i64 p_out = 0;
        for (i64 q = 0; q < s; q++) {
            const double g = -a[q] / w[q];
            if (g > 1e-9 * lam && g < g_out) { g_out = g; p_out = q; }
        }
        const double g_stop = lam - alpha > 0.0 ? lam - alpha : 0.0;
        const double g_event = g_in < g_out ? g_in : g_out;
        const double gamma = g_event < g_stop ? g_event : g_stop;
        for (i64 q = 0; q < s; q++) a[q] += gamma * w[q];
        lam -= gamma;
        if (step % 16 == 15) exact_corr(G, K, corr, W, s); /* against rounding drift */
        else for (i64 k = 0; k < K; k++) c[k] -= gamma * u[k];
        const int stop = g_stop <= g_event;
        const int leave = !stop && g_out < g_in;
        if (!stop && !leave) {
            if (chol_add(G, K, W, s, j_in, tol)) {
                W->active[j_in] = 1.0; idx[s] = j_in; a[s] = 0.0; s++;
            } else {
                W->dependent[j_in] = 1.0; /* the step stays on the path; the event was spurious */
            }
        }
        if (left_last) memset(W->just_left, 0, sizeof(double) * (size_t)K);
        left_last = leave;
        if (leave) {
            const i64 j = idx[p_out];
            W->active[j] = 0.0;
            chol_remove(W, s, p_out);
            s--;
            /* the span shrank: dependent atoms may enter again, but not at once; neither may
             * the atom that left nor its copies, which sit on |c_j| = λ as it does */
            const double *gj = G + j * K;
            const double gjj = gj[j];
            for (i64 k = 0; k < K; k++) {
                const double gkk = G[k * K + k];
                const int copy = (gkk - gj[k] * gj[k] / gjj) <= tol * gkk;
                W->just_left[k] = (W->dependent[k] > 0.0 || copy) ? 1.0 : 0.0;
                W->dependent[k] = 0.0;
            }
            W->just_left[j] = 1.0;
        }
        if (stop || (stop_active >= 0 && s >= stop_active)) done = 1;
    }
    for (i64 q = 0; q < s; q++) code[idx[q]] = a[q];
    *lam_out = lam;
    *cnt_out = s;
    return steps;
}

/* Lasso codes of n signals (rows of corr) at α; cap = min(K, dim) active atoms at most.
 * With rec_lam [n, rec_width] non-NULL, also each signal's path record (steps [n], λ and
 * count where it ended); stop_active ≥ 0 ends a path once that many atoms are active
 * (after its first step, as in _lars), −1: no such cap. */
int sgan_lars(i64 n, i64 K, i64 dim, const double *G, const double *corr, double alpha,
              i64 max_steps, i64 stop_active, double tol, double *codes, double *rec_lam,
              i64 *rec_cnt, i64 rec_width, i64 *steps, double *lam_end, i64 *cnt_end) {
    work_t W;
    const i64 cap = K < dim ? K : dim;
    if (work_alloc(&W, K, cap)) return 1;
    for (i64 i = 0; i < n; i++) {
        double lam;
        i64 cnt;
        const i64 t = lars_one(G, K, dim, corr + i * K, alpha, max_steps, stop_active, tol, &W,
                               codes + i * K, rec_lam ? rec_lam + i * rec_width : NULL,
                               rec_cnt ? rec_cnt + i * rec_width : NULL, rec_width, &lam, &cnt);
        if (steps) steps[i] = t;
        if (lam_end) lam_end[i] = lam;
        if (cnt_end) cnt_end[i] = cnt;
    }
    work_free(&W);
    return 0;
}

/* Batch OMP (Rubinstein, Zibulevsky & Elad 2008) with at most k atoms per signal: pick the
 * atom most correlated with the residual, stop early where it lies in the span of the
 * chosen ones, least squares on the chosen atoms (see omp in sparse_coding.py). The
 * residual correlations are updated, not recomputed: with G_II = L Lᵀ, z = L⁻¹ corr_I and
 * the rows b_q of (G_{:,I} L⁻ᵀ)ᵀ, rc = corr − Σ_q z_q b_q, and each chosen atom adds one
 * row b_s = (G_j − Σ_q l_q b_q)/d and one z_s; the rows stay in this thread's cache where
 * rows of a large G would be read from memory again at every step. The codes are L⁻ᵀ z. */
int sgan_omp(i64 n, i64 K, const double *G, const double *corr, i64 k, double tol,
             double *codes) {
    work_t W;
    if (work_alloc(&W, K, k)) return 1;
    const i64 k1 = k > 0 ? k : 1;
    double *B = malloc(sizeof(double) * (size_t)k1 * (size_t)K); /* [k, K] rows b_q */
    i64 *rows = malloc(sizeof(i64) * (size_t)k1);                 /* 0, 1, …: B's rows */
    if (!B || !rows) { free(B); free(rows); work_free(&W); return 1; }
    for (i64 q = 0; q < k; q++) rows[q] = q;
    double *rc = W.c, *z = W.w;
    double *chosen = W.active;
    for (i64 i = 0; i < n; i++) {
        const double *c0 = corr + i * K;
        double *code = codes + i * K;
        memcpy(rc, c0, sizeof(double) * (size_t)K);
        memset(chosen, 0, sizeof(double) * (size_t)K);
        memset(code, 0, sizeof(double) * (size_t)K);
        i64 s = 0;
        for (i64 step = 0; step < k; step++) {
            /* the first largest |rc| among atoms not chosen: a vectorised maximum
             * (-fopenmp-simd: no OpenMP runtime), then its first position */
            double best = -1.0;
#pragma omp simd reduction(max : best)
            for (i64 q = 0; q < K; q++) {
                const double v = chosen[q] > 0.0 ? -1.0 : fabs(rc[q]);
                best = v > best ? v : best;
            }
            i64 j = 0;
            for (i64 q = 0; q < K; q++)
                if ((chosen[q] > 0.0 ? -1.0 : fabs(rc[q])) == best) { j = q; break; }
            if (!chol_add(G, K, &W, s, j, tol)) break;
            chosen[j] = 1.0;
            W.idx[s] = j;
            const double *l = W.L + s * W.cap; /* the new row of L: l, then d */
            double zs = c0[j];
            for (i64 q = 0; q < s; q++) zs -= l[q] * z[q];
            zs *= W.dinv[s];
            z[s] = zs;
            if (step + 1 < k) {
                double *bs = B + s * K;
                add_rows(bs, G + j * K, B, K, rows, l, s, -1.0);
                const double dv = W.dinv[s];
                for (i64 t = 0; t < K; t++) {
                    bs[t] *= dv;
                    rc[t] -= zs * bs[t];
                }
            }
            s++;
        }
        chol_backward(W.L, W.dinv, W.cap, s, z);
        for (i64 q = 0; q < s; q++) code[W.idx[q]] = z[q];
    }
    free(B);
    free(rows);
    work_free(&W);
    return 0;
}

/* Block-coordinate descent on the dictionary surrogate (Mairal 2009, Alg. 2), in place on
 * the atoms D [K, dim]: atom k (where use[k]) moves to d_k + (AY_k − Σ_j AA_kj d_j)/AA_kk
 * and back onto the unit sphere, one atom after the other, ``sweeps`` times (see
 * update_atoms in dictionary.py). AA [K, K], AY [K, dim]. */
int sgan_update_atoms(i64 K, i64 dim, double *D, const double *AA, const double *AY,
                      const unsigned char *use, i64 sweeps) {
    double *r = malloc(sizeof(double) * (size_t)(dim > 0 ? dim : 1));
    if (!r) return 1;
    for (i64 sweep = 0; sweep < sweeps; sweep++) {
        for (i64 k = 0; k < K; k++) {
            if (!use[k]) continue;
            const double *aa = AA + k * K;
            memcpy(r, AY + k * dim, sizeof(double) * (size_t)dim);
            for (i64 j = 0; j < K; j++) {
                const double a = aa[j];
                if (a == 0.0) continue;
                const double *dj = D + j * dim;
                for (i64 t = 0; t < dim; t++) r[t] -= a * dj[t];
            }
            double *dk = D + k * dim;
            const double inv = 1.0 / (aa[k] > 1e-30 ? aa[k] : 1e-30);
            double norm = 0.0;
            for (i64 t = 0; t < dim; t++) {
                r[t] = dk[t] + r[t] * inv;
                norm += r[t] * r[t];
            }
            norm = sqrt(norm);
            if (norm < 1e-12) norm = 1e-12;
            for (i64 t = 0; t < dim; t++) dk[t] = r[t] / norm;
        }
    }
    free(r);
    return 0;
}

#ifndef SGAN_SOURCE_SHA256
#define SGAN_SOURCE_SHA256 ""
#endif
/* The SHA-256 of this file as it was built (setup.py defines it), which native.py compares
 * with the file installed beside the library: a library built from another version of the
 * file (an editable install edited since) has other functions and is not loaded. */
const char *sgan_source_sha256(void) { return SGAN_SOURCE_SHA256; }
