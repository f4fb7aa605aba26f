"""What an operator watches: ``metrics`` (Prometheus, one registry per application) and
``health`` (``/healthz``, ``/readyz``). Other parts report here (the counters they keep, the
worker pools they start) rather than this package reaching into them, so it may import only the
foundation modules, ``server.runtime`` and ``storage``.
"""
