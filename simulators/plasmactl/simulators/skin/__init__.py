"""Skin thermal models (behind the SkinModel port).

Their linear algebra is on small matrices, one solve at a time: OpenBLAS's worker threads bring nothing
there, and after each call they spin, taking the second core of a two-core host from the session's event
loop (measured: the full-face virtual run 1.3x faster with one thread; on the real clock, spinning threads
beside the controller are scheduling delay in its cooling chain). So BLAS runs on one thread from the moment
a skin model is imported.
"""

import numpy  # noqa: F401 - loaded first: the limit applies to the BLAS libraries loaded when it is set
import scipy.linalg  # noqa: F401
from threadpoolctl import threadpool_limits

threadpool_limits(limits=1, user_api="blas")
