/* ctest.h: a minimal unit-test harness for src/core (no dependencies). */
#ifndef PMT_CTEST_H
#define PMT_CTEST_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ctest_failures;
static int ctest_checks;

#define CHECK(cond) do { \
    ctest_checks++; \
    if (!(cond)) { \
        ctest_failures++; \
        fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    } \
} while (0)

#define CHECK_EQ_INT(a, b) do { \
    long long ctest_a = (long long)(a), ctest_b = (long long)(b); \
    ctest_checks++; \
    if (ctest_a != ctest_b) { \
        ctest_failures++; \
        fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", \
                __FILE__, __LINE__, #a, #b, ctest_a, ctest_b); \
    } \
} while (0)

#define CHECK_EQ_STR(a, b) do { \
    const char *ctest_a = (a), *ctest_b = (b); \
    ctest_checks++; \
    if (strcmp(ctest_a, ctest_b) != 0) { \
        ctest_failures++; \
        fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", \
                __FILE__, __LINE__, #a, #b, ctest_a, ctest_b); \
    } \
} while (0)

#define CTEST_MAIN_END() do { \
    printf("%s: %d checks, %d failures\n", __FILE__, ctest_checks, ctest_failures); \
    return ctest_failures ? 1 : 0; \
} while (0)

#endif
