/* sh8bench: sh6bench plus cross-thread frees, see shbench.h */
#define SH8 1
#include "shbench.h"
