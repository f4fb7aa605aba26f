"""The ``/v1`` API: one table of operations (``operations``: route, scope, handler, documented
answers) for the consent ledger (``consents``) and for sending (``messages``), from which
``routes`` adds the routes and ``openapi`` writes the document; ``auth`` checks bearer tokens
and scopes. May import every capability below it; nothing but ``server.wiring`` and
``server.dev`` imports it.
"""
