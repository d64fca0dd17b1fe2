"""lthutils: a study kit for the Lottery Ticket Hypothesis (see README.md).

`from lthutils import expIntegration, evalIntegration` gives the original study's API (legacy.py),
imported only when asked for.
"""


def __getattr__(name: str):
    if name in ("expIntegration", "evalIntegration"):
        from lthutils import legacy

        return getattr(legacy, name)
    raise AttributeError(f"module 'lthutils' has no attribute {name!r}")
