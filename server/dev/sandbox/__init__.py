"""The dev sandbox: a stand-in for the platforms Subgate calls (Alipay's classic gateway, its v3
gateway and the TOP router), served by dev mode on a loopback port of its own so that a send,
a label send and a subscription query complete on one laptop.

``*_protocol`` hold the platforms' answer shapes and request rules, shared with the tests' fake
gateways; ``*_gateway``/``top_router`` check requests with ``verify`` and answer signed with the
stand-in Alipay key; ``record`` is what the sandbox remembers; ``control`` the routes no real
platform has (a user answering a subscribe panel, a user's record); ``service`` serves it all.
Part of ``server.dev``: may import everything but ``server.wiring``.
"""
