"""The handlers Subgate registers itself: the life-account gateway check and its events.

Every other kind is stored and acknowledged. An extension adds its own with
``HandlerRegistry.register``, exactly as these are added.
"""

from __future__ import annotations

from server.intake.handlers import HandlerRegistry, StoreOnlyHandler
from server.intake.life_account import GatewayCheckHandler, LifeAccountEventHandler


def default_registry() -> HandlerRegistry:
    return HandlerRegistry(
        {
            "alipay.service.check": GatewayCheckHandler(),
            "alipay.mobile.public.message.notify": LifeAccountEventHandler(),
        },
        default=StoreOnlyHandler(),
    )
