// HIP-CPU builds only: `#include <cub/cub.cuh>` of the kernels resolves here (this folder comes first on
// the include path) and gets the CPU stand-in of the CUB pieces they use. See ../cub_hipcpu.h.
#pragma once
#include "../cub_hipcpu.h"
