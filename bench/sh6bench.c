/* sh6bench: bursts freed in LIFO/FIFO/random order, see shbench.h */
#define SH8 0
#include "shbench.h"
