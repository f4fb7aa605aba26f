"""Dev mode and the simulator: ``mode`` makes the settings and keys of a service that runs with
no config file, ``simulator`` signs notifications as Alipay does so that they can be posted to
it. May import everything but ``server.wiring``.
"""
