/* cache-scratch: passive false sharing, see cache_false_sharing.h */
#define SCRATCH 1
#include "cache_false_sharing.h"
