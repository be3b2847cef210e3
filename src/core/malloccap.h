/* malloccap.h: the old name of capture_format.h (the capture format of
 * `pymemtrace malloc`), kept only until src/preload includes
 * capture_format.h itself; new code includes capture_format.h. */
#ifndef PMT_MALLOCCAP_H
#define PMT_MALLOCCAP_H
#include "capture_format.h"
#endif
