"""Prompt checks (the seed's sanitizePrompt as a policy): length, control characters and
likely prompt injection (core.security.injection), applied to every text field a request
carries."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from core.errors import PayloadTooLargeError, PromptRejectedError
from core.security.injection import InjectionDetector
from core.settings import PromptSettings

log = logging.getLogger("nimbus.security")

# C0 controls except tab, LF and CR; DEL; C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass
class PromptReport:
    """What the checks did to one request; ``warnings`` go back to the caller."""

    warnings: list[str] = field(default_factory=list)


class PromptGuard:
    def __init__(self, settings: PromptSettings, max_chars: int) -> None:
        self.settings = settings
        self.max_chars = max_chars
        self.detector = InjectionDetector(
            builtin=settings.injection_builtin, extra=settings.injection_patterns
        )

    def check(self, text: str, param: str, report: PromptReport) -> str:
        """The text to use for ``param``; raises 413 / 400 as the policy says."""
        s = self.settings
        if s.strip_control_chars:
            text, removed = _CONTROL.subn("", text)
            if removed:
                report.warnings.append(f"{param}: removed {removed} control character(s)")
        if len(text) > self.max_chars:
            if s.on_too_long == "reject":
                raise PayloadTooLargeError(
                    f"{param} is {len(text)} characters; the limit is {self.max_chars}",
                    param=param,
                )
            report.warnings.append(f"{param}: truncated from {len(text)} to {self.max_chars} chars")
            text = text[: self.max_chars]
        if s.injection_policy != "off" and self.detector.enabled:
            families = sorted({f.family for f in self.detector.attacks(text)})
            if families and s.injection_policy == "block":
                log.warning("prompt rejected: %s looks like prompt injection %s", param, families)
                raise PromptRejectedError(
                    f"{param} looks like a prompt injection ({', '.join(families)})", param=param
                )
            if families:
                report.warnings.append(
                    f"{param}: possible prompt injection ({', '.join(families)})"
                )
        return text
