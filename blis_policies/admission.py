"""Admission policies: who gets into the cluster."""

from __future__ import annotations


class AlwaysAdmit:
    """Admit every request (upstream's default)."""

    name = "always-admit"

    def admit(self, request, state) -> tuple[bool, str]:
        return True, ""
