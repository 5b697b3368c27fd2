"""Prompt-injection phrase detection: normalise the text, match phrase families, and tell an
instruction from a mention of one.

Normalisation defeats the cheap disguises before any pattern runs: Unicode NFKC (full-width and
compatibility letters), zero-width and other format or control characters removed, accents
folded, whitespace collapsed, case folded. A second, stricter form also maps look-alike letters
(Cyrillic and Greek), digits inside words ("1gn0re"), letters split by spaces or punctuation
("i g n o r e", "i.g.n.o.r.e"); a phrase found only there is disguised, so never a mention.

A phrase that is quoted, or that the sentence around it explains or asks about ("what does ...
mean", "attackers write ...", "such as ..."), is a mention, not an instruction, unless the text
also tells the model to act on it ("follow it", "do what it says").

Families: instructions to ignore/disregard/forget earlier instructions (English, Spanish,
French, German, Italian, Portuguese, Russian, Chinese, Japanese, Korean), a new identity or
mode ("you are now DAN", "developer mode"), and requests for the system prompt.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import regex

# -- normalisation --------------------------------------------------------------------------

# The stdlib ``re`` where no Unicode property is needed: faster on long texts.
_WHITESPACE_CONTROLS = re.compile(r"[\t\n\r\v\f\x85]")
_INVISIBLE = regex.compile(r"[\p{Cf}\p{Cc}\p{Co}\p{Cs}\p{Cn}]")
_MARKS = regex.compile(r"\p{Mn}")
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_SPACE = re.compile(r"\s+")

# Look-alikes of Latin letters (Cyrillic, Greek), mapped in the strict form only: the folded
# form keeps Russian and Greek text as written for the phrases in those languages.
_CONFUSABLES = str.maketrans(
    "\u0430\u0432\u0435\u043a\u043c\u043d\u043e\u0440\u0441\u0442\u0443\u0445\u0456\u0458\u0455\u0501"
    "\u0261\u03b1\u03b5\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7",
    "abekmhopctyxijsdgaeikvoptux",
)
_LEET = str.maketrans("013457@$", "oieastas")
_MIXED_WORD = regex.compile(r"\b(?=[\w@$]*[a-z])(?=[\w@$]*[0-9@$])[\w@$]+\b")
_NOT_LETTER = regex.compile(r"[^\p{L}\p{N}']+")
_INSIDE_WORD = regex.compile(r"(?<=\p{L})[-.·*_~|/\\](?=\p{L})")
# Runs of at least four single letters ("i g n o r e", once punctuation became spaces).
_SPACED = regex.compile(r"\b(?:\p{L} ){3,}\p{L}\b")


def fold(text: str) -> str:
    """NFKC, invisible characters dropped, accents folded, case folded, whitespace collapsed."""
    if text.isascii():  # nothing to compose or fold: only controls, case and spaces
        return _SPACE.sub(" ", _ASCII_CONTROLS.sub("", text.lower())).strip()
    text = _WHITESPACE_CONTROLS.sub(" ", unicodedata.normalize("NFKC", text))
    text = _INVISIBLE.sub("", text).casefold()
    text = unicodedata.normalize("NFC", _MARKS.sub("", unicodedata.normalize("NFKD", text)))
    return _SPACE.sub(" ", text).strip()


def strict(folded: str) -> str:
    """The folded text with look-alikes and digits in words undone and punctuation removed: what
    a disguised phrase looks like once the disguise is gone (letters spelled out one by one
    are joined by the caller, see ``_SPACED``)."""
    text = folded.translate(_CONFUSABLES)
    text = _MIXED_WORD.sub(lambda m: m.group().translate(_LEET), text)
    text = _INSIDE_WORD.sub("", text)  # "dis-regard", "i.g.n.o.r.e"
    text = _NOT_LETTER.sub(" ", text).replace("'", "")
    return _SPACE.sub(" ", text).strip()


# -- phrase families (written folded: lower case, no accents) -------------------------------

_GAP = r"(?:\W+\w+){0,4}?\W+"  # up to four words between parts of a phrase
_SHORT = r"(?:\W+\w+){0,2}?\W+"
_NOT_NEGATED = r"(?<!\b(?:don't|dont|do not|never|not|didn't|did not|shouldn't|should not) )"
_CJK = "[^.!?\u3002\uff01\uff1f\n]"

_IGNORE_EN = (
    _NOT_NEGATED
    + r"\b(?:ignore|disregard|forget|skip|override|bypass|discard|drop|abandon|neglect|"
    r"stop following|do not follow|don't follow|dont follow|no longer follow|throw out|"
    r"set aside|erase|delete|clear)\b"
    + _GAP
    + r"(?:(?:all|any|every|each|of|the|your|these|those)\W+){0,3}"
    r"(?:previous|prior|above|earlier|preceding|former|foregoing|original|initial|old|"
    r"existing|current|system|developer|given|hidden|your)\b"
    + r"(?:\W+\w+){0,3}?\W+"
    + r"(?:instructions?|directions?|rules?|prompts?|guidelines?|guidance|directives?|"
    r"commands?|orders?|constraints?|guardrails?|polic(?:y|ies)|programming|restrictions?|"
    r"context|messages?|safeguards?|filters?|training)\b"
)
_IGNORE_ALL = (
    _NOT_NEGATED
    + r"\b(?:ignore|disregard|forget)\b\W+(?:all\W+)?(?:of\W+)?(?:everything|anything|all|what)\W+"
    r"(?:\w+\W+){0,3}?(?:above|before|previously|earlier|prior|so far|you (?:were|have been|"
    r"was|got) (?:told|given|instructed))\b"
)
_IGNORE_GIVEN = (
    _NOT_NEGATED + r"\b(?:ignore|disregard|forget|override|bypass)\b\W+(?:all\W+)?(?:of\W+)?"
    r"(?:the|your|any)\W+(?:\w+\W+){0,2}?"
    r"(?:instructions?|rules|guidelines|directives?|prompts?|constraints)\W+(?:that\W+)?"
    r"(?:you (?:were|have been|got|are) (?:given|told)|(?:given|provided) (?:to you|by))"
)
_IGNORE_OTHER = [
    # Spanish
    r"\b(?:ignora\w*|olvida\w*|olvide\w*|descarta\w*|omite|omitan|desobedece\w*|no sigas)\b"
    + _GAP
    + r"(?:instrucciones|indicaciones|reglas|ordenes|directrices|normas)\b"
    + r"(?:\W+\w+){0,2}?\W+(?:anteriores|previas|precedentes|de arriba|iniciales|del sistema)",
    r"\b(?:ignora\w*|olvida\w*)\b\W+todo lo (?:anterior|dicho|de arriba|que te dijeron)",
    # French
    r"\b(?:ignor\w*|oubli\w*|ne tiens pas compte|ne tenez pas compte|fais abstraction|"
    r"faites abstraction)\b"
    + _GAP
    + r"(?:instructions?|consignes?|regles?|directives?|indications?)\b"
    + r"(?:\W+\w+){0,2}?\W*(?:precedentes?|anterieures?|ci-dessus|ci dessus|d'avant|"
    r"du systeme|initiales?)",
    # German (the qualifier comes before the noun)
    r"\b(?:ignorier\w*|vergiss\w*|vergessen sie|missachte\w*|ubergeh\w*)\b(?!\W+nicht\b)"
    + _GAP
    + r"(?:vorherig\w*|vorig\w*|obig\w*|bisherig\w*|fruher\w*|vorangegangen\w*|"
    r"vorstehend\w*|alle\w*|deine\w*|ihre\w*|system\w*)\b"
    + r"(?:\W+\w+){0,2}?\W*(?:anweisung\w*|instruktion\w*|befehl\w*|regeln|vorgaben|"
    r"richtlinien)",
    # Italian
    r"\b(?:ignora\w*|dimentica\w*|trascura\w*|non seguire)\b"
    + _GAP
    + r"(?:istruzioni|regole|indicazioni|direttive)\b"
    + r"(?:\W+\w+){0,2}?\W+(?:precedenti|sopra|iniziali|di sistema|date prima)",
    # Portuguese
    r"\b(?:ignor\w*|esquec\w*|esqueca|desconsider\w*|nao sigas?)\b"
    + _GAP
    + r"(?:instrucoes|regras|orientacoes|diretrizes|ordens)\b"
    + r"(?:\W+\w+){0,2}?\W+(?:anteriores|acima|previas|iniciais|do sistema)",
    # Russian (folded: й -> и)
    r"(?:игнорир\w*|проигнорир\w*|забудь\w*|забудьте|не обращаи\w* внимания на|"
    r"не учитываи\w*)"
    + r"(?:\W+\w+){0,3}?\W+"
    + r"(?:предыдущ\w*|прежн\w*|вышеуказанн\w*|вышеизложенн\w*|все|свои|системн\w*|"
    r"изначальн\w*)" + r"(?:\W+\w+){0,2}?\W+(?:инструкци\w*|указани\w*|правил\w*|команд\w*)",
    # Chinese
    r"(?:忽略|无视|忽视|忘记|忘掉|不要理会|不理会|不要遵守|不再遵守)"
    + _CJK
    + r"{0,10}?(?:之前|以前|先前|上面|以上|前面|上述|所有|全部|系统|原来|原有)"
    + _CJK
    + r"{0,6}?(?:指令|指示|说明|规则|提示|命令|要求|设定)",
    # Japanese
    r"(?:以前|前|上記|これまで|先ほど|すべて|全て|システム|最初)の?"
    + _CJK
    + r"{0,8}?(?:指示|命令|指令|ルール|プロンプト|制約)"
    + _CJK
    + r"{0,8}?(?:無視|忘れ)",
    # Korean
    r"(?:이전|앞의|위의|위|모든|기존|시스템)\s*(?:의\s*)?(?:모든\s*)?"
    r"(?:지시|지침|명령|규칙|프롬프트)\w*\s*(?:을|를|은|는)?\s*(?:모두\s*)?(?:무시|잊어)",
]

_ROLE = (
    r"\b(?:you are now|you're now|youre now|from now on,? you are|from now on,? you will be|"
    r"you will now be|you have been freed|you are no longer)\b"
    r"(?:\W+\w+){0,6}?\W+"
    r"(?:dan|stan|dude|aim|unrestricted|unfiltered|uncensored|jailbroken|jailbreak|evil|"
    r"unbound|unlimited|free from|freed|liberated|no longer bound|no longer an? (?:ai|assistant)|"
    r"bound by|restricted|an? (?:ai|assistant|model|chatbot) (?:without|with no)|"
    r"in \w+ mode|\w+ mode|not an? (?:ai|assistant)|able to do anything)"
)
_ROLE_OTHER = [
    r"\b(?:developer mode|dev mode|god mode|jailbreak mode|dan mode)\b"
    r"(?:\W+\w+){0,3}?\W+(?:enabled|activated|on|engaged)\b",
    r"\b(?:enable|activate|enter|switch to|turn on)\W+(?:\w+\W+){0,2}?"
    r"(?:developer|dev|god|jailbreak|dan|unrestricted|unfiltered) mode\b",
    r"\bdo anything now\b",
    r"\b(?:pretend|act|behave|imagine|roleplay|role-play)\b(?:\W+\w+){0,8}?\W+"
    r"(?:have|has|with|without)\W+(?:no|any)?\W*(?:rules|restrictions|filters|limitations|"
    r"guidelines|content polic(?:y|ies)|safety (?:rules|guidelines|filters)|ethical guidelines)\b",
    r"\b(?:ahora eres|a partir de ahora eres|tu es maintenant|tu es desormais|"
    r"du bist (?:jetzt|nun|ab jetzt)|ora sei|agora voce e|ты теперь)\b"
    r"(?:\W+\w+){0,4}?\W+(?:dan|sin (?:restricciones|filtros|reglas)|"
    r"sans (?:restrictions|filtres|regles)|ohne (?:einschrankungen|filter|regeln)|"
    r"senza (?:restrizioni|filtri|regole)|sem (?:restricoes|filtros|regras)|"
    r"без (?:ограничени\w*|правил|фильтр\w*)|mode|modus|modo|режим\w*)",
    r"(?:你现在是|从现在开始你是|你现在处于)" + _CJK + r"{0,12}?(?:dan|没有|不受|无限制|模式)",
]

_EXTRACT_EN = [
    r"\b(?:reveal|print|show|display|output|repeat|recite|tell|give|share|leak|dump|expose|"
    r"write out|echo|spell out|return|paste|provide|disclose|send|copy)\b"
    + _GAP
    + r"(?:your|the|its|this|that|any)\W+(?:\w+\W+){0,2}?"
    r"(?:system|developer|hidden|secret|confidential|internal|pre-?)\W*"
    r"(?:prompt|instructions?|message|rules|directives?|guidelines|configuration)\b",
    r"\b(?:reveal|print|show|display|output|repeat|recite|tell|give|share|leak|dump|expose|"
    r"disclose)\b"
    + _GAP
    + r"(?:your|the)\W+(?:initial|original|first|very first|starting|opening)\W+"
    r"(?:prompt|instructions|directives)\b",
    r"\bwhat(?:'s| is| are| was| were| did)\b\W+(?:\w+\W+){0,2}?your\W+(?:\w+\W+){0,2}?"
    r"(?:system|developer|initial|hidden|secret|original|pre-?|confidential|internal)"
    r"\W*(?:prompt|instructions?|message|rules|directives?|guidelines)\b",
    r"\b(?:repeat|print|output|show|display|recite|reproduce|copy|return|write)\b\W+"
    r"(?:\w+\W+){0,3}?(?:everything|all|the (?:text|words|content|message)s?|the instructions)"
    r"\W+(?:\w+\W+){0,2}?(?:above|before this|before my message|prior to this|"
    r"you were (?:given|told))\b",
    r"\bwhat (?:were|are) you (?:told|instructed|programmed|configured)\b"
    r"(?:\W+\w+){0,3}?\W+(?:before|initially|at the (?:start|beginning)|to do|not to)\b",
    r"\b(?:what|which) (?:were|are|was|is) (?:your|the) (?:first|initial|original|very first)"
    r" (?:instructions?|message|prompt|rules)\b",
]
_EXTRACT_OTHER = [
    r"\b(?:muestra\w*|revela\w*|dime|imprime|ensename|repite)\b(?:\W+\w+){0,3}?\W+"
    r"(?:tu|tus|el|las)\W+(?:prompt|instrucciones|mensaje)\W+(?:del )?sistema\b",
    r"\b(?:revele\w*|montre\w*|affiche\w*|donne\w*|dis-moi|repete\w*|ecris)\b"
    r"(?:\W+\w+){0,3}?\W+(?:ton|tes|votre|vos|le|les)\W+(?:prompt|instructions?|message)\W+"
    r"(?:du )?systeme\b",
    r"\b(?:zeig\w*|nenn\w*|gib|verrat\w*|wiederhol\w*|ausgeben)\b(?:\W+\w+){0,3}?\W+"
    r"(?:deine\w*|ihre\w*|den|die)\W+(?:system-?prompt\w*|system-?anweisung\w*|"
    r"system-?nachricht\w*)",
    r"(?:покажи|выведи|раскрои|напиши|повтори|скажи)(?:\W+\w+){0,3}?\W+"
    r"(?:свои|твои|ваш|системн\w*)(?:\W+\w+){0,2}?\W*(?:промпт\w*|инструкци\w*|сообщени\w*)",
    r"(?:显示|告诉我|输出|打印|泄露|重复|透露|给我看)"
    + _CJK
    + r"{0,8}?(?:系统提示|系统指令|系统消息|初始指令)",
    r"(?:システムプロンプト|システムの指示|初期の指示)"
    + _CJK
    + r"{0,10}?(?:教えて|表示|見せて|出力|繰り返)",
]

# Letters spelled out one by one ("i g n o r e  p r e v i o u s ...") lose their word breaks;
# these match the joined letters.
_SQUASHED: dict[str, str] = {
    "ignore-instructions": r"(?:ignore|disregard|forget|bypass|override)(?:all|the|any|your|of)*"
    r"(?:previous|prior|above|earlier|preceding|system|initial)(?:instructions?|directions?|"
    r"rules|prompts?|guidelines|directives?|commands)",
    "new-identity": r"(?:youarenow|fromnowonyouare)(?:dan|unrestricted|unfiltered|jailbroken|"
    r"uncensored|evil|in\w{0,12}mode)|developermode(?:enabled|activated|on)|doanythingnow",
    "system-prompt-extraction": r"(?:reveal|print|show|repeat|tellme|output|display|give)"
    r"(?:me)?(?:your|the)(?:system|hidden|secret|initial)(?:prompt|instructions|message)",
}


@dataclass(frozen=True)
class Phrase:
    """One pattern of a family. ``keys``: folded text that every match contains; the pattern
    runs only in windows around them, so a long prompt costs substring searches, not a scan by
    every pattern."""

    family: str
    keys: tuple[str, ...]
    pattern: str


_IGNORE_KEYS_EN = (
    "ignor", "disregard", "forget", "skip", "overrid", "bypass", "discard", "drop", "abandon",
    "neglect", "follow", "throw out", "set aside", "erase", "delete", "clear",
)  # fmt: skip
_SYSTEM_KEYS = (
    "system", "developer", "hidden", "secret", "confidential", "internal", "pre-prompt",
    "preprompt", "pre prompt",
)  # fmt: skip
_F_IGNORE, _F_IDENTITY, _F_EXTRACT = (
    "ignore-instructions",
    "new-identity",
    "system-prompt-extraction",
)

PHRASES: list[Phrase] = [
    Phrase(_F_IGNORE, _IGNORE_KEYS_EN, _IGNORE_EN),
    Phrase(_F_IGNORE, ("ignor", "disregard", "forget"), _IGNORE_ALL),
    Phrase(_F_IGNORE, ("ignor", "disregard", "forget", "overrid", "bypass"), _IGNORE_GIVEN),
    *(
        Phrase(_F_IGNORE, keys, pattern)
        for keys, pattern in zip(
            [
                ("ignor", "olvid", "descart", "omit", "desobedec", "no sigas"),
                ("ignor", "olvid"),
                ("ignor", "oubli", "tiens pas compte", "tenez pas compte", "abstraction"),
                ("ignorier", "vergiss", "vergessen", "missacht", "ubergeh"),
                ("ignor", "dimentic", "trascur", "non seguire"),
                ("ignor", "esquec", "desconsider", "nao sig"),
                ("игнорир", "забуд", "не обращаи", "не учитываи"),
                ("忽略", "无视", "忽视", "忘记", "忘掉", "理会", "遵守"),
                ("無視", "忘れ"),
                ("무시", "잊어"),
            ],
            _IGNORE_OTHER,
            strict=True,
        )
    ),
    Phrase(
        _F_IDENTITY,
        (
            "you are now",
            "you're now",
            "youre now",
            "from now on",
            "you will now be",
            "you have been freed",
            "you are no longer",
        ),
        _ROLE,
    ),
    *(
        Phrase(_F_IDENTITY, keys, pattern)
        for keys, pattern in zip(
            [
                ("mode",),
                ("mode",),
                ("do anything now",),
                ("rules", "restriction", "filter", "limitation", "guideline", "polic"),
                (
                    "ahora eres",
                    "a partir de ahora",
                    "tu es maintenant",
                    "tu es desormais",
                    "du bist",
                    "ora sei",
                    "agora voce",
                    "ты теперь",
                ),
                ("你现在", "从现在开始"),
            ],
            _ROLE_OTHER,
            strict=True,
        )
    ),
    *(
        Phrase(_F_EXTRACT, keys, pattern)
        for keys, pattern in zip(
            [
                _SYSTEM_KEYS,
                ("initial", "original", "first", "starting", "opening"),
                _SYSTEM_KEYS,
                ("above", "before this", "before my message", "prior to this", "you were"),
                ("were you", "are you"),
                ("first", "initial", "original"),
                ("sistema",),
                ("systeme",),
                ("system",),
                ("промпт", "инструкци", "сообщени"),
                ("系统提示", "系统指令", "系统消息", "初始指令"),
                ("システムプロンプト", "システムの指示", "初期の指示"),
            ],
            [*_EXTRACT_EN, *_EXTRACT_OTHER],
            strict=True,
        )
    ),
]
FAMILIES = (_F_IGNORE, _F_IDENTITY, _F_EXTRACT)

# -- mentions --------------------------------------------------------------------------------

_QUOTED = regex.compile(
    r"\"[^\"]{1,600}\"|“[^”]{1,600}”|„[^“”]{1,600}[“”]|«[^»]{1,600}»|\u2039[^\u203a]{1,600}\u203a|"
    r"`[^`]{1,600}`|「[^」]{1,600}」|『[^』]{1,600}』|(?<![\w'])'[^']{1,600}'(?![\w'])|"
    r"\u2018[^\u2019]{1,600}\u2019"
)
_SENTENCE_END = regex.compile(r"(?<!\be\.g|\bi\.e|\betc|\bvs)[.!?\u3002\uff01\uff1f\n]+(?=\s|$)")
_EXPLAINED_BEFORE = regex.compile(
    r"\b(?:what (?:does|do|did|is|are|was|would)|whats|what's|meaning of|define|definition|"
    r"explain\w*|why (?:do|does|did|would|is|are|might|can)|is it (?:true|safe|normal)|"
    r"how (?:do|does|can|could|should|would|to) (?:\w+ ){0,3}?(?:detect|prevent|block|stop|"
    r"defend|protect|handle|filter|mitigate|recogni[sz]e|respond|guard|flag|catch|spot|test)|"
    r"such as|e\.?g\.?|for example|for instance|called|known as|"
    r"(?:the|this|that|a) (?:phrase|sentence|words?|string|text|line|command)|"
    r"phrases?|sentences?|strings?|"
    r"(?:users?|people|someone|somebody|attackers?|they|he|she|it|character|villain|hacker) "
    r"(?:says?|said|saying|types?|typed|typing|writes?|wrote|writing|sends?|sent|tries|tried)|"
    r"(?:messages?|inputs?|prompts?|requests?|attempts?|attacks?|things?|stuff|text) "
    r"(?:like|such as|containing|that (?:say|contain))|attackers?|hackers?|adversar\w+|"
    r"malicious|jailbreak\w*|"
    r"injection\w*|red[- ]team\w*|classif\w*|detect\w*|filter\w*|regex\w*|patterns?|"
    r"blocklist|denylist|dataset|examples? of|mentions?|quotes?|citing|meme|tweet|novel|"
    r"story|character says|article|essay|paper|research|survey|blog)\b"
)
_EXPLAINED_AFTER = regex.compile(
    r"^\W*(?:mean|means|meant|refer|refers|stand for|stands for|work|works|do\b|does\b|"
    r"(?:is|are|was) (?:a|an|the|one|called|known|considered|an example|often|commonly|"
    r"typically|usually|used|still|just)|(?:phrases?|attacks?|prompts?|jailbreaks?|"
    r"injections?|tricks?|techniques?|examples?))\b"
)
_ACT_ON_IT = regex.compile(
    r"\b(?:follow|obey|execute|comply with|carry out|act on|apply|perform|run) "
    r"(?:it|this|that|these|those|them|the (?:following|above|instructions?|text|message|"
    r"command|quote|quoted)|what (?:it|this|that) says)\b|\bdo (?:it|this|that|as (?:it|this|"
    r"that|they) says?|what (?:it|this|that) says)\b|\bnow (?:do|follow|obey) (?:it|this|that)\b|"
    r"\b(?:as|like) instructed\b"
)


@dataclass(frozen=True)
class Finding:
    family: str
    text: str
    mention: bool
    disguised: bool = False


# Around each key: room for the words a phrase puts before its key (and a lookbehind) and
# after it; phrases are shorter than this. A text shorter than both is scanned whole.
_BEFORE, _AFTER = 200, 400
# How far back the sentence holding a phrase is looked for (mention cues).
_SENTENCE_REACH = 400


class InjectionDetector:
    """Finds likely injected instructions in one text: the built-in ``PHRASES`` and extra
    operator patterns (family ``pattern <i>``, matched against the folded text)."""

    def __init__(self, *, builtin: bool = True, extra: Sequence[str] = ()) -> None:
        phrases = list(PHRASES) if builtin else []
        phrases += [Phrase(f"pattern {i}", (), p) for i, p in enumerate(extra)]
        self._phrases = [
            (ph.family, frozenset(fold(k) for k in ph.keys), _compile(ph.pattern)) for ph in phrases
        ]
        # Each key is looked up once per text (str.find); a phrase runs only near its keys.
        self._key_phrases: dict[str, list[int]] = {}
        for i, (_, keys, _) in enumerate(self._phrases):
            for key in keys:
                self._key_phrases.setdefault(key, []).append(i)
        self._keyless = [i for i, (_, keys, _) in enumerate(self._phrases) if not keys]
        self._squashed = (
            [(name, regex.compile(p)) for name, p in _SQUASHED.items()] if builtin else []
        )

    @property
    def enabled(self) -> bool:
        return bool(self._phrases)

    def scan(self, text: str) -> list[Finding]:
        """The phrases found: every family's first instruction, and the mentions before it."""
        folded = fold(text)
        findings = list(self._scan_folded(folded))
        if not _may_be_disguised(folded):
            return findings
        seen = {f.family for f in findings}
        stripped = strict(folded)
        for name, m in self._matches(stripped, seen):
            findings.append(Finding(name, m.group(), mention=False, disguised=True))
            seen.add(name)
        for run in _SPACED.finditer(stripped):
            joined = run.group().replace(" ", "")
            for name, pattern in self._squashed:
                if name not in seen and (hit := pattern.search(joined)) is not None:
                    findings.append(Finding(name, hit.group(), mention=False, disguised=True))
                    seen.add(name)
        return findings

    def attacks(self, text: str) -> list[Finding]:
        """The findings that are instructions (not mentions)."""
        return [f for f in self.scan(text) if not f.mention]

    def _scan_folded(self, folded: str) -> Iterable[Finding]:
        quotes: list[tuple[int, int]] | None = None
        acts = False
        decided: set[str] = set()  # families with an instruction found: no need to look on
        for name, m in self._matches(folded, decided):
            if quotes is None:
                quotes = [q.span() for q in _QUOTED.finditer(folded)]
                acts = _ACT_ON_IT.search(folded) is not None
            own = name == "ignore-instructions"
            mention = not acts and _is_mention(folded, m.start(), m.end(), quotes, own=own)
            if not mention:
                decided.add(name)
            yield Finding(name, m.group(), mention)

    def _matches(self, text: str, skip: set[str]) -> Iterable[tuple[str, regex.Match[str]]]:
        """Matches of every phrase whose family is not in ``skip`` (read as it grows)."""
        spots: dict[int, list[int]] = {i: [] for i in self._keyless}
        for key, phrases in self._key_phrases.items():
            at = text.find(key)
            while at != -1:
                for i in phrases:
                    spots.setdefault(i, []).append(at)
                at = text.find(key, at + 1)
        short = len(text) <= _BEFORE + _AFTER
        for i in sorted(spots):
            name, _, pattern = self._phrases[i]
            whole = short or not spots[i]  # a keyless pattern runs on the whole text
            for a, b in [(0, len(text))] if whole else _windows(spots[i], len(text)):
                for m in pattern.finditer(text, a, b):
                    if name in skip:
                        break
                    yield name, m


def _windows(spots: list[int], size: int) -> list[tuple[int, int]]:
    """Merged [start, end) windows around the key positions ``spots``."""
    merged: list[tuple[int, int]] = []
    for at in sorted(spots):
        a, b = max(0, at - _BEFORE), min(size, at + _AFTER)
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


_DISGUISE_HINTS = [
    re.compile(r"[0-9@$][^\W\d_]"),  # "1gn0re"
    re.compile(r"[^\W\d_][-.\u00b7*_~|/\\][^\W\d_]"),  # "dis-regard", "i.g.n.o.r.e"
    re.compile(r"\b(?:[^\W\d_] ){3}"),  # "i g n o r e"
]


def _may_be_disguised(folded: str) -> bool:
    """Whether the strict form could differ where it matters: look-alike letters, digits in
    words, punctuation inside words or letters spelled out one by one (punctuation between
    words the patterns allow already)."""
    return folded.translate(_CONFUSABLES) != folded or any(
        hint.search(folded) for hint in _DISGUISE_HINTS
    )


def _compile(pattern: str) -> regex.Pattern[str]:
    return regex.compile(fold_pattern(pattern), regex.IGNORECASE)


# The writer's own earlier words ("ignore my previous message", "forget the instructions I
# gave you"): a correction, not an injection.
_OWN = regex.compile(r"\bmy\b|\bour\b")
_OWN_AFTER = regex.compile(
    r"^\W*(?:that |which )?(?:i|we) (?:just )?(?:gave|wrote|sent|said|typed|asked|provided|"
    r"mentioned|posted|shared|pasted)\b"
)


def _is_mention(
    text: str, start: int, end: int, quotes: list[tuple[int, int]], *, own: bool
) -> bool:
    if any(a <= start and end <= b for a, b in quotes):
        return True
    if own and (_OWN.search(text, start, end) or _OWN_AFTER.search(text, end, end + 40)):
        return True
    reach = max(0, start - _SENTENCE_REACH)
    sentence_start = reach
    for m in _SENTENCE_END.finditer(text, reach, start):
        sentence_start = m.end()
    end_match = _SENTENCE_END.search(text, end, end + _SENTENCE_REACH)
    sentence_end = end_match.start() if end_match else min(len(text), end + _SENTENCE_REACH)
    before = text[sentence_start:start]
    after = text[end:sentence_end]
    return bool(_EXPLAINED_BEFORE.search(before) or _EXPLAINED_AFTER.search(after))


def fold_pattern(pattern: str) -> str:
    """A pattern written with accents or capitals matches folded text too (regex syntax is
    ASCII, which folding leaves alone)."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", pattern))
    return unicodedata.normalize("NFC", _MARKS.sub("", decomposed))
