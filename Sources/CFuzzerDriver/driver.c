// The declarations in include/fuzzer_driver.h are all this target provides.
#include "fuzzer_driver.h"
