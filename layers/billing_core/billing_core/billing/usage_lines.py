"""Usage on invoices, billed in arrears (docs/architecture.md "Usage on invoices"). Pure: the usage context reads
the totals (billing_core.usage.billing), the billing run passes them here, and the lines go onto the invoice that
opens the next period.

- The period just closed gets, per usage component, an **included** line (min(total, included), free) and,
  when the total passes the included quantity, an **overage** line for the rest, priced by `price`.
- An earlier period a late event may still reach gets an **adjustment** line per meter whose recount differs
  from what the subscription's invoices billed for it: quantity = recount - Σ quantities billed, amount =
  price(recount) - Σ amounts billed (overage is not linear, so a delta is never priced alone). Negative is a
  credit. An issued invoice is never rewritten; by construction closed total + Σ adjustments = the recount.

Pricing by cap policy: `overage` and `hard_stop` bill each unit above the included quantity at the unit price
(a hard stop refuses usage past its cap, so with a cap at or below the included quantity there is no overage by
construction; a cap above it sells the units in between); `soft_cap` only alerts - units above the included
quantity are shown on the overage line at 0."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from billing_core.invoices.model import InvoiceLine, LineKind, UsagePart
from billing_core.pricing.model import CapPolicy, UsageComponent


@dataclass(frozen=True)
class PeriodUsage:
    """One meter's total for one usage period [start, end), with the component in force in that period."""

    component: UsageComponent
    period_start: datetime
    period_end: datetime
    total: int

    @property
    def meter(self) -> str:
        return self.component.metric


@dataclass(frozen=True)
class UsageToBill:
    """What the usage context found for a subscription's next invoice: the period just closed, recounts of the
    earlier periods a late event may still reach (each already invoiced), and every usage line the
    subscription's issued invoices hold for those earlier periods."""

    closed: tuple[PeriodUsage, ...] = ()
    recounts: tuple[PeriodUsage, ...] = ()
    billed: tuple[InvoiceLine, ...] = field(default=())


NOTHING = UsageToBill()


def price(component: UsageComponent, total: int) -> int:
    """What a period's total costs in minor units (integers only)."""
    if component.cap_policy is CapPolicy.SOFT_CAP:
        return 0
    return max(0, total - component.included_quantity) * component.unit_amount_minor


def _span(usage: PeriodUsage) -> str:
    return f"{usage.period_start.date().isoformat()}..{usage.period_end.date().isoformat()}"


def _line(usage: PeriodUsage, part: UsagePart, quantity: int, amount: int, description: str) -> InvoiceLine:
    return InvoiceLine(
        kind=LineKind.USAGE,
        description=description,
        amount_minor=amount,
        quantity=quantity,
        period_start=usage.period_start,
        period_end=usage.period_end,
        meter=usage.meter,
        usage_part=part,
    )


def closing_lines(closed: Iterable[PeriodUsage]) -> tuple[InvoiceLine, ...]:
    lines: list[InvoiceLine] = []
    for usage in sorted(closed, key=lambda each: each.meter):
        if usage.total < 0:
            raise ValueError(f"a usage total is never negative ({usage.meter}: {usage.total})")
        included = min(usage.total, usage.component.included_quantity)
        lines.append(_line(usage, UsagePart.INCLUDED, included, 0, f"{usage.meter}: included ({_span(usage)})"))
        above = usage.total - included
        if above:
            note = " (soft cap: not billed)" if usage.component.cap_policy is CapPolicy.SOFT_CAP else ""
            lines.append(
                _line(
                    usage,
                    UsagePart.OVERAGE,
                    above,
                    price(usage.component, usage.total),
                    f"{usage.meter}: above the included quantity ({_span(usage)}){note}",
                )
            )
    return tuple(lines)


def billed_so_far(lines: Iterable[InvoiceLine]) -> dict[tuple[str, datetime], tuple[int, int]]:
    """(meter, usage period start) -> (Σ quantity, Σ amount) over the usage lines given."""
    sums: dict[tuple[str, datetime], tuple[int, int]] = {}
    for line in lines:
        if line.kind is not LineKind.USAGE or line.meter is None:
            continue
        key = (line.meter, line.period_start)
        quantity, amount = sums.get(key, (0, 0))
        sums[key] = (quantity + line.quantity, amount + line.amount_minor)
    return sums


def adjustment_lines(recounts: Iterable[PeriodUsage], billed: Iterable[InvoiceLine]) -> tuple[InvoiceLine, ...]:
    sums = billed_so_far(billed)
    lines: list[InvoiceLine] = []
    for usage in sorted(recounts, key=lambda each: (each.period_start, each.meter)):
        quantity, amount = sums.get((usage.meter, usage.period_start), (0, 0))
        delta_quantity = usage.total - quantity
        delta_amount = price(usage.component, usage.total) - amount
        if delta_quantity or delta_amount:
            lines.append(
                _line(
                    usage,
                    UsagePart.ADJUSTMENT,
                    delta_quantity,
                    delta_amount,
                    f"{usage.meter}: adjustment for {_span(usage)} ({delta_quantity:+d} after a recount)",
                )
            )
    return tuple(lines)


def usage_lines(usage: UsageToBill) -> tuple[InvoiceLine, ...]:
    """The usage lines of the next invoice: adjustments of earlier periods first, then the period just closed."""
    return adjustment_lines(usage.recounts, usage.billed) + closing_lines(usage.closed)
