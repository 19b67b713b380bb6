"""30-plans: experiment plans and helpers for the session.

  RE(synthesis(num=30, delay=2.0))       a hot-injection synthesis followed by WAXS, sized live
  RE(synthesis(10, 5, temperature=120))   ... at another temperature (deg C)
  show_sizes()                            the table of true and predicted sizes of the latest run
  show_sizes(-2, plot="sizes.png")        of an earlier run, with a plot

In the queue server the plans are queue items (allowed by user_group_permissions.yaml), e.g.
  qserver queue add plan '{"name": "insitu_synthesis", "args": ["waxs", "reactor", 30, 2.0]}'
  qserver queue add plan '{"name": "synthesis", "kwargs": {"num": 30, "delay": 2.0}}'
"""
from qdots_bluesky.callbacks.demo import format_table, plot_demo, sizes_with_truth
from qdots_bluesky.plans import insitu_synthesis


def synthesis(num=30, delay=2.0, *, temperature=None, precursor=None, md=None):
    """Inject and record ``num`` WAXS patterns ``delay`` s apart (simulated reactor ``reactor``, detector ``waxs``)."""
    return (yield from insitu_synthesis(waxs, reactor, num, delay, temperature=temperature,  # noqa: F821
                                        precursor=precursor, md=md))


def show_sizes(run=-1, plot=None):
    """Print (and optionally plot) true vs predicted sizes of a stored run (uid, scan id or -1 = latest)."""
    table = sizes_with_truth(tiled_store.run(run))  # noqa: F821 - from 05-tiled
    print(format_table(table))
    if plot:
        print(f"plot saved to {plot_demo(plot, table)}")
    return table


if QUEUE_SERVER:  # noqa: F821 - from 00-base
    print("plans for the queue: insitu_synthesis(detector, reactor, num, delay, ...), synthesis(num, delay, ...)")
else:
    print(__doc__)
