"""The send channels Subgate offers: one line each.

Adding a channel is one module (its request body, its ``SendChannel`` and its ``SPEC``) and one
line here; the sender, ``POST /v1/apps/{app_id}/messages`` and its OpenAPI schema all read this
table. A channel names the consent channel its sends are gated on (``PreparedSend``); a new kind
of consent is a new ``storage.models.ConsentChannel``.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from server.sending.channels import jym_push, life_label, mini_template, workcore_batch
from server.sending.channels.base import ChannelPlatforms, ChannelSpec, SendChannel

SEND_CHANNELS: tuple[ChannelSpec, ...] = (
    mini_template.SPEC,
    life_label.SPEC,
    jym_push.SPEC,
    workcore_batch.SPEC,
)


def send_body(specs: tuple[ChannelSpec, ...]) -> Any:
    """The body of a send: one of the channels' request bodies, told apart by ``channel``.
    (Built from the table at run time, so the type checker sees it as ``Any``.)"""
    members = tuple(spec.request for spec in specs)
    return Annotated[Union[members], Field(discriminator="channel")]  # noqa: UP007


SendBody: Any = send_body(SEND_CHANNELS)


def build_send_channels(
    platforms: ChannelPlatforms, specs: tuple[ChannelSpec, ...] = SEND_CHANNELS
) -> dict[str, SendChannel]:
    """Every send channel, by name, built once per service."""
    return {spec.name: spec.build(platforms) for spec in specs}
