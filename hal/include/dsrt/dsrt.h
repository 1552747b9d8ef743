/* dsrt: the whole public interface of the HAL and the numerics library. */
#ifndef DSRT_DSRT_H
#define DSRT_DSRT_H

#include "dsrt/backend_impl.h"
#include "dsrt/buffer.h"
#include "dsrt/comm.h"
#include "dsrt/device.h"
#include "dsrt/dtype.h"
#include "dsrt/ops.h"
#include "dsrt/registry.h"
#include "dsrt/status.h"
#include "dsrt/stream.h"
#include "dsrt/tensor.h"
#include "dsrt/version.h"

#endif
