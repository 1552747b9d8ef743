/* Op benchmarks through the HAL: any backend (CUDA, OpenCL, CPU) runs the same cases. */
#ifndef DSRT_BENCH_OPS_H
#define DSRT_BENCH_OPS_H

#include <stdio.h>

#include "dsrt/device.h"

/* Runs every case whose name contains `filter` (NULL or "" for all) on `dev` and prints one line per
 * case to `out`: time per call, achieved GB/s and TFLOP/s, and their fractions of the device's peaks
 * (dsrt_device_caps.peak_mem_gbs, peak_tflops_bf16 / peak_tflops_fp8). Inputs are random (never
 * zeros); when a case's inputs are smaller than 128 MiB, several copies rotate so that timed calls
 * read memory, not cache. Each case: 3 warm-up calls, then 7 timed batches (the batch size chosen so a
 * batch takes about 20 ms), each ended by a stream sync and timed with the host clock; the median
 * batch is reported. Cases the device cannot run are listed with the reason. On a CPU device the
 * sizes are scaled down (and marked). A device that reports no peak bandwidth (OpenCL devices) is
 * measured against `measured_gbs` instead when it is > 0 (the caller's device-copy probe), and the
 * peaks line says so. Returns 0, or 1 after printing an error. */
int dsrt_bench_ops(dsrt_device *dev, const char *filter, double measured_gbs, FILE *out);

#endif
