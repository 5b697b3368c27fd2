"""Prompt checks (the seed's sanitizePrompt as a policy): length, control characters and
injection patterns, applied to every text field a request carries."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from core.errors import PayloadTooLargeError, PromptRejectedError
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
        self.patterns = [re.compile(p, re.IGNORECASE) for p in settings.injection_patterns]

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
        if s.injection_policy != "off":
            for i, pattern in enumerate(self.patterns):
                if pattern.search(text):
                    if s.injection_policy == "block":
                        log.warning("prompt rejected: %s matched injection pattern %d", param, i)
                        raise PromptRejectedError(
                            f"{param} matches a blocked prompt pattern", param=param
                        )
                    report.warnings.append(f"{param}: matches injection pattern {i}")
        return text
