#!/bin/sh
# CUDA compiler launcher for -DDSRT_WERROR=ON builds: runs the compile command it is given and fails
# it when ptxas reports a potential performance loss (C75xx: wgmma serialized for lack of registers,
# setmaxnreg ignored, ...). ptxas prints those as "info" and the build succeeds, but each one has cost
# the decode kernels 10-40% of their speed.
out=$("$@" 2>&1)
rc=$?
[ -n "$out" ] && printf '%s\n' "$out" >&2
if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q "Potential Performance Loss"; then
    echo "error: ptxas reported a potential performance loss (above); DSRT_WERROR builds treat it as an error" >&2
    exit 1
fi
exit "$rc"
