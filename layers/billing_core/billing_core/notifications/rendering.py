"""Notice emails from plain template files (`notifications/templates/`), with `string.Template` placeholders.

A file is named after its kind, `<kind>.txt`, or `<kind>.<variant>.txt` where the wording depends on one field
(`trial_will_end` on `has_payment_method`, the final steps on `final_action`: see `_variant`). Its first line is
`Subject: ...`, then one empty line, then the plain-text body.

Placeholders are the notice's own fields (`${invoice_id}`, `${trial_end}`, ...) and `${amount}`, the amount in
its currency's minor-unit exponent (`money.format_amount`: `EUR 49.00`, `JPY 4,900`, `KWD 1.250`). Times are shown
in UTC (`7 December 2026, 14:00 UTC`). A body line that names an optional field the notice does not carry is left
out, so a template writes an optional sentence on a line of its own; a missing value anywhere else is an error in
the template (ConfigurationError), never an empty gap in a customer's email. The fields a producer adds beyond its
kind's model are never rendered."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from importlib import resources

from billing_core.errors import ConfigurationError
from billing_core.money import format_amount
from billing_core.notifications.model import (
    DunningFinalAction,
    DunningFinalWarning,
    FinalAction,
    InvoiceNotice,
    Notice,
    NoticeKind,
    RenderedEmail,
    TrialWillEnd,
)

SUBJECT_PREFIX = "Subject: "
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# Used in no template on purpose: what the variant or ${amount} already says, and what only routes the notice.
_NOT_RENDERED = frozenset(
    {"kind", "notice_id", "has_payment_method", "final_action", "provider", "provider_customer_id"}
)


def format_moment(value: datetime) -> str:
    """`7 December 2026, 14:00 UTC`: the same words in every locale the function may run in."""
    moment = value.astimezone(UTC)
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}, {moment:%H:%M} UTC"


def _variant(notice: Notice) -> str | None:
    if isinstance(notice, TrialWillEnd):
        return "with_payment_method" if notice.has_payment_method else "without_payment_method"
    if isinstance(notice, DunningFinalWarning | DunningFinalAction):
        return notice.final_action.value
    return None


def template_name(notice: Notice) -> str:
    variant = _variant(notice)
    return f"{notice.kind}.{variant}.txt" if variant else f"{notice.kind}.txt"


def values_of(notice: Notice) -> dict[str, str]:
    """The placeholders' values: the notice's model fields that are set, shown for people, and `amount`."""
    values: dict[str, str] = {}
    for name in type(notice).model_fields:
        value = getattr(notice, name)
        if name in _NOT_RENDERED or value is None:
            continue
        if isinstance(value, datetime):
            values[name] = format_moment(value)
        elif isinstance(value, Enum):
            values[name] = str(value.value)
        else:
            values[name] = str(value)
    if isinstance(notice, InvoiceNotice):
        values["amount"] = format_amount(notice.amount_minor, notice.currency)
    return values


def placeholders(text: str) -> set[str]:
    """The names a template text refers to (`$name` and `${name}`)."""
    found = set()
    for match in string.Template.pattern.finditer(text):
        name = match.group("named") or match.group("braced")
        if name:
            found.add(name)
    return found


class NoticeTemplate:
    """One template file: its subject line and body, checked for shape when loaded."""

    def __init__(self, name: str, text: str):
        first, separator, rest = text.partition("\n")
        if not first.startswith(SUBJECT_PREFIX) or not separator or not rest.startswith("\n"):
            raise ConfigurationError(
                f"notice template {name} must start with 'Subject: ...' and an empty line",
                code="notice_template_invalid",
            )
        self.name = name
        self.subject = string.Template(first.removeprefix(SUBJECT_PREFIX).strip())
        self.body_lines = [string.Template(line) for line in rest[1:].rstrip("\n").split("\n")]

    def render(self, values: dict[str, str]) -> RenderedEmail:
        try:
            subject = self.subject.substitute(values)
            lines = [
                line.substitute(values) for line in self.body_lines if placeholders(line.template) <= values.keys()
            ]
        except (KeyError, ValueError) as exc:  # a subject naming an absent field, or a stray "$"
            raise ConfigurationError(
                f"notice template {self.name} cannot be rendered: {exc!r}", code="notice_template_invalid"
            ) from None
        return RenderedEmail(subject=subject, body="\n".join(lines) + "\n")


@cache
def load_template(name: str) -> NoticeTemplate:
    """A template file by name, read once per execution environment."""
    path = resources.files("billing_core.notifications").joinpath("templates", name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"no notice template {name}", code="notice_template_missing") from None
    return NoticeTemplate(name, text)


def render(notice: Notice) -> RenderedEmail:
    """The notice's email. ConfigurationError when its template is missing or broken (a deployment fault)."""
    return load_template(template_name(notice)).render(values_of(notice))


def template_names() -> dict[NoticeKind, list[str]]:
    """Every file each kind may render with (the test that every template renders reads this)."""
    variants: dict[NoticeKind, list[str]] = {kind: [f"{kind.value}.txt"] for kind in NoticeKind}
    variants[NoticeKind.TRIAL_WILL_END] = [
        f"trial_will_end.{name}.txt" for name in ("with_payment_method", "without_payment_method")
    ]
    for kind in (NoticeKind.DUNNING_FINAL_WARNING, NoticeKind.DUNNING_FINAL_ACTION):
        variants[kind] = [f"{kind.value}.{action.value}.txt" for action in FinalAction]
    return variants
