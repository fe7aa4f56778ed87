/* bw_run_tile timed from C: the simulated array's own rate, with no Python in the loop.
 *
 * benchmarks/hw_bench.py measures the same model through ctypes and hw.sim.TileSim; this
 * is the C ABI as a C caller sees it (issue 9's "cycles per second through the C ABI").
 * It loads the model that hw.build.build_model cached, runs random 16-vector tiles of
 * in-range operands (mantissas and exponents over their whole signed range) and prints
 * the best and median of --rounds rounds.
 *
 *     cc -O2 -o /tmp/hw_c_loop benchmarks/hw_c_loop.c -ldl
 *     /tmp/hw_c_loop "$(.venv/bin/python -c 'from hw.build import build_model; from hw.config import DEFAULT; print(build_model(DEFAULT))')"
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef void (*params_fn)(int32_t*);
typedef void* (*create_fn)(void);
typedef void (*reset_fn)(void*);
typedef int64_t (*load_fn)(void*, const int32_t*, const int32_t*);
typedef int64_t (*run_fn)(void*, const int32_t*, const int32_t*, int32_t, int32_t, int64_t*, uint32_t, uint32_t);

static void* need(void* lib, const char* name) {
  void* f = dlsym(lib, name);
  if (!f) {
    fprintf(stderr, "%s: %s\n", name, dlerror());
    exit(2);
  }
  return f;
}

/* A uniform value in the signed range of a `bits`-bit field. */
static int32_t field(int bits) {
  int32_t span = 1 << bits;
  return (int32_t)(rand() % span) - span / 2;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int by_value(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.so [VECTORS=16] [TILES=2000] [ROUNDS=5]\n", argv[0]);
    return 2;
  }
  int n = argc > 2 ? atoi(argv[2]) : 16, tiles = argc > 3 ? atoi(argv[3]) : 2000;
  int rounds = argc > 4 ? atoi(argv[4]) : 5;
  void* lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) {
    fprintf(stderr, "%s\n", dlerror());
    return 2;
  }
  int32_t p[7];  /* rows, cols, mant, expw, block, psum, acc (harness.cpp, bw_params) */
  ((params_fn)need(lib, "bw_params"))(p);
  int rows = p[0], cols = p[1], mant = p[2], expw = p[3], nblk = p[0] / p[4];
  void* h = ((create_fn)need(lib, "bw_create"))();
  ((reset_fn)need(lib, "bw_reset"))(h);
  run_fn run = (run_fn)need(lib, "bw_run_tile");

  srand(0);
  int32_t* w = malloc(sizeof *w * rows * cols);
  int32_t* we = malloc(sizeof *we * nblk * cols);
  int32_t* x = malloc(sizeof *x * n * rows);
  int32_t* xe = malloc(sizeof *xe * n * nblk);
  int64_t* y = malloc(sizeof *y * n * cols);
  double* rate = malloc(sizeof *rate * rounds);
  for (int i = 0; i < rows * cols; ++i) w[i] = field(mant);
  for (int i = 0; i < nblk * cols; ++i) we[i] = field(expw);
  for (int i = 0; i < n * rows; ++i) x[i] = field(mant);
  for (int i = 0; i < n * nblk; ++i) xe[i] = field(expw);
  if (((load_fn)need(lib, "bw_load_weights"))(h, w, we) < 0) {
    fprintf(stderr, "bw_load_weights failed\n");
    return 1;
  }
  int64_t cycles = run(h, x, xe, n, 0, y, 0, 0);
  if (cycles <= 0) {
    fprintf(stderr, "bw_run_tile failed: %lld\n", (long long)cycles);
    return 1;
  }
  for (int r = 0; r < rounds; ++r) {
    double t0 = now_s();
    for (int i = 0; i < tiles; ++i) run(h, x, xe, n, 0, y, 0, 0);
    rate[r] = (double)cycles * tiles / (now_s() - t0);
  }
  qsort(rate, rounds, sizeof *rate, by_value);
  printf("%dx%d array, %d-vector tiles (%lld cycles): best %.2fM cycles/s (%.2f us per tile), "
         "median %.2fM, CPU time, %d rounds x %d tiles\n",
         rows, cols, n, (long long)cycles, rate[rounds - 1] / 1e6, cycles / rate[rounds - 1] * 1e6,
         rate[rounds / 2] / 1e6, rounds, tiles);
  return 0;
}
