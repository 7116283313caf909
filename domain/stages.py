"""The five collection stages, the outcomes a case closes with, and the contact channels."""

from enum import StrEnum


class Stage(StrEnum):
    REMINDER = "reminder"
    CONTACT = "contact"
    FIELD_VISIT = "field_visit"
    LEGAL_LETTER = "legal_letter"
    LITIGATION = "litigation"

    def following(self) -> "Stage | None":
        order = list(Stage)
        index = order.index(self)
        return order[index + 1] if index + 1 < len(order) else None


class Outcome(StrEnum):
    CURED = "cured"
    SETTLED = "settled"
    WRITTEN_OFF = "written_off"
    CLOSED = "closed"


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    CALL = "call"
    VISIT = "visit"
    LETTER = "letter"
    LEGAL_HANDOFF = "legal_handoff"

    @property
    def is_borrower_contact(self) -> bool:
        """Hand-off to the legal partner is not a contact with the borrower."""
        return self is not Channel.LEGAL_HANDOFF
