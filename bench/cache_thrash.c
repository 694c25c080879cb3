/* cache-thrash: active false sharing, see cache_false_sharing.h */
#define SCRATCH 0
#include "cache_false_sharing.h"
