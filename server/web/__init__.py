"""The HTTP edge every listener shares (the primary and the intake workers): errors rendered
once, as the JSON envelope on ``/v1`` and a bare ``fail`` on the notification routes
(``error_middleware``), and strict JSON request bodies (``json_body``). May import the
foundation modules, ``server.runtime`` and ``server.ops``.
"""
