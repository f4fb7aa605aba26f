"""The notification gateway (应用网关) Alipay posts to: parse, verify, store, then acknowledge.

``gateway.NotificationGateway`` turns a request body into a stored notification and the reply,
knowing nothing of HTTP; ``routes`` is the aiohttp shell around it; ``handlers`` is the
registry that says what a verified notification implies (``default_handlers``: the
life-account check and follow/unfollow, in ``life_account`` and ``life_account_xml``);
``refusals`` counts and rate-limits what is refused. May import the foundation modules,
``server.runtime``, ``server.ops``, ``server.web``, ``server.consent``, ``storage`` and ``verify``.
"""
