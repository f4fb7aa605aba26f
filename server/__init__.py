"""Subgate's service: the packages below, each one capability, imports flowing one way.

From the bottom up (a package imports only from those before it, and from ``storage`` and
``verify``; ``tests/test_architecture.py`` keeps it so):

- ``settings``, ``errors``, ``credentials``, ``appkeys``: the typed settings, the error
  hierarchy with its one HTTP table, the apps' key material, and the keys every part reads.
- ``runtime``: the process itself (event loop, garbage collector, log redaction).
- ``ops``: what an operator watches (metrics, health).
- ``web``: the HTTP edge every listener shares (error rendering, JSON bodies).
- ``platforms``: the clients of Alipay's classic and v3 gateways and of the Taobao platform.
- ``consent``: the consent ledger and what feeds it.
- ``intake``: the notification gateway Alipay posts to.
- ``sending``: consent-gated sending, the outbox and the send channels.
- ``events``: what Subgate hands on: each stored event's payload, the feed's cursors.
- ``delivery``: pushing events to the merchant's destinations, signed, retried, in order.
- ``workers``: intake and call worker processes, their supervision and wire format.
- ``api``: the ``/v1`` operations.
- ``dev``: dev mode and the notification simulator.
- ``wiring``: the one place that builds the parts and connects them into the application.
- ``cli``: the command line (``subgate``, ``python run.py``): runs the service and asks a
  running one over its API.

Nothing is imported here, so that a worker process loads only what it runs.
"""
