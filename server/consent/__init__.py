"""The consent ledger: who agreed to receive which template on which channel, and how we know.

``ledger.ConsentLedger`` is the one door for every change and question (subscribe-result
reports, opt-ins, lookups, history); ``subscribe_results`` turns a ``my.requestSubscribeMessage``
result into events; ``reconcile`` asks Alipay's subscription query; ``templates`` holds the
configured templates; ``views`` are the bodies the ledger answers with. May import the
foundation modules, ``server.platforms`` (for the query), ``storage`` and ``verify``.
"""
