/* agg_threads.c: threads that do nothing but malloc and free (2M pairs each),
 * for bench_malloc_aggregate.py: what one lock over the aggregated table
 * costs when threads really allocate at once.  Prints its wall time. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static void *work(void *arg) {
    (void)arg;
    void *keep[64] = {0};
    for (long i = 0; i < 2000000; i++) {
        int k = (int)(i & 63);
        free(keep[k]);
        keep[k] = malloc(16 + (size_t)(i % 200));
    }
    for (int k = 0; k < 64; k++) free(keep[k]);
    return NULL;
}
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2;
    pthread_t t[8];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, work, NULL);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
