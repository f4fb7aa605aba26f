"""Consent-gated sending: ``sender.MessageSender`` checks the ledger, reserves and spends a
one-time credit exactly once through the durable outbox, and makes the platform call through a
send channel; ``outbox_worker`` retries and settles what is left; ``channels`` holds the send
channels (one module each) and their registry; ``messages`` is how a message is shown. May
import everything below it: the foundation modules, ``server.runtime``, ``server.ops``,
``server.web``, ``server.platforms``, ``server.consent``, ``storage`` and ``verify``.
"""
