"""The message templates each app registered, and what kind each is."""

from __future__ import annotations

from collections.abc import Iterable

from server.settings import AppSettings, TemplateSettings
from storage.models import ConsentChannel, TemplateKind


class TemplateRegistry:
    def __init__(self, apps: Iterable[AppSettings]) -> None:
        self._templates = {
            (app.app_id, template.id): template for app in apps for template in app.templates
        }

    def ids(self, app_id: str) -> list[str]:
        return [template_id for (app, template_id) in self._templates if app == app_id]

    def get(self, app_id: str, template_id: str) -> TemplateSettings | None:
        return self._templates.get((app_id, template_id))

    def kind(self, app_id: str, channel: str, template_id: str) -> TemplateKind:
        """Unregistered mini-program templates are ``unknown`` and treated as one-time."""
        if channel != ConsentChannel.MINI_TEMPLATE:
            return TemplateKind.LONG_TERM  # a follow or an opt-in holds until withdrawn
        template = self.get(app_id, template_id)
        return TemplateKind.UNKNOWN if template is None else TemplateKind(template.kind)
