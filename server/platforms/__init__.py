"""The platforms Subgate calls: Alipay's classic gateway (``gateway.do``), Alipay's OpenAPI v3
and the Taobao open platform (TOP), each a client that signs a request, posts it and verifies
and classifies the answer (``calls.CallOutcome``: sent, refused, throttled, unknown, ...).

"Gateway" in this package always means one of those platforms' endpoints, never Subgate's own
notification gateway (``server.intake``). May import the foundation modules, ``server.runtime``
and ``verify``; knows nothing of consent, the outbox or HTTP routes.
"""
