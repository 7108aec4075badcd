"""The quickstart's own corpus: an online shop's customer service (orders, delivery, refunds,
payments, account), built from templates so that it ships with the code and needs no download.

`demo_utterances()` gives labelled customer messages for 11 intents plus out-of-scope ones
(label `oos`), optionally with the shop's reference reply of each intent; `demo_knowledge_path()` is the shop's policy file (the grounding format of
`distill_worker.teacher.grounding`). Deterministic for a given seed.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

from distill_worker.data.loaders import Utterance

OOS = "oos"

_ITEMS = ["order", "parcel", "package", "dress", "jacket", "headphones", "lamp", "book"]
_TIMES = ["yesterday", "last week", "on Monday", "two weeks ago", "a few days ago"]

# intent -> templates; {item} and {when} are filled from the lists above.
_TEMPLATES: dict[str, list[str]] = {
    "track_order": [
        "where is my {item}",
        "can you track my {item}",
        "I ordered {when} and nothing arrived",
        "what is the status of my {item}",
        "has my {item} shipped yet",
        "I need the tracking number for my {item}",
        "my {item} still says processing",
        "how do I track the {item} I bought {when}",
    ],
    "delivery_time": [
        "how long does delivery take",
        "when will my {item} arrive",
        "how much is shipping for a {item}",
        "do you have express delivery",
        "is shipping free",
        "my {item} is late, it should have come {when}",
        "how many days until the {item} gets here",
        "what are your delivery costs",
    ],
    "change_address": [
        "I need to change my delivery address",
        "I put the wrong address on my {item}",
        "can you send my {item} to a different address",
        "I moved, update the shipping address",
        "can the {item} go to a pickup point instead",
        "wrong street on the {item} I ordered {when}",
    ],
    "cancel_order": [
        "I want to cancel my order",
        "please cancel the {item} I ordered {when}",
        "how do I cancel an order",
        "I ordered the {item} by mistake, cancel it",
        "stop my order please",
        "can I still cancel my {item}",
    ],
    "return_item": [
        "I want to return my {item}",
        "how do I send back the {item}",
        "the {item} arrived damaged",
        "the {item} is the wrong size, can I exchange it",
        "I received a broken {item}",
        "what is your return policy",
        "can I return something I bought {when}",
        "I need a return label for my {item}",
    ],
    "refund_status": [
        "where is my refund",
        "I returned the {item} {when} and got no money back",
        "when will I get my refund",
        "how long do refunds take",
        "my refund for the {item} has not arrived",
        "has my refund been processed",
    ],
    "payment_problem": [
        "my card was declined",
        "payment failed when I ordered the {item}",
        "I was charged twice for my {item}",
        "why was my payment rejected",
        "there is a double charge on my card from {when}",
        "I can't pay for my {item}",
    ],
    "payment_methods": [
        "which payment methods do you accept",
        "can I pay with paypal",
        "do you take american express",
        "can I pay by invoice",
        "is it possible to pay the {item} with a credit card",
        "what ways can I pay",
    ],
    "reset_password": [
        "I forgot my password",
        "how do I reset my password",
        "I can't log in",
        "my account is locked",
        "the password reset link does not work",
        "I can't sign in since {when}",
    ],
    "delete_account": [
        "delete my account",
        "how do I close my account",
        "please remove all my data",
        "I want my personal data erased",
        "cancel my membership and delete my profile",
        "how can I delete my account and data",
    ],
    "talk_to_human": [
        "I want to talk to a human",
        "can I speak to a real person",
        "get me an agent",
        "is there a phone number I can call",
        "connect me with customer service",
        "I need a representative",
    ],
    OOS: [
        "what's the weather like tomorrow",
        "tell me a joke",
        "who won the football game",
        "what is the capital of australia",
        "can you recommend a good movie",
        "how do I bake bread",
        "what time is it in tokyo",
        "translate hello into spanish",
        "play some music",
        "what's 17 times 23",
        "book me a flight to rome",
        "how tall is mount everest",
    ],
}

# intent -> the shop's own answer, written from its policy file (demo_knowledge.md): the demo's
# reference replies. A real company's data brings its agents' replies; without them the student
# learns only from the teacher, which may decline to answer.
_REPLIES: dict[str, str] = {
    "track_order": (
        "Every order gets a tracking link by e-mail as soon as it ships, usually within 1 "
        "business day. You can also see its status under Account > Orders."
    ),
    "delivery_time": (
        "Standard delivery takes 3 to 5 business days and is free on orders over 50 euros "
        "(4.90 euros below that). Express delivery takes 1 to 2 business days for 9.90 euros."
    ),
    "change_address": (
        "You can change the delivery address under Account > Orders until the order ships. "
        "After that, the carrier's tracking page lets you redirect the parcel to a pickup point."
    ),
    "cancel_order": (
        'You can cancel an order under Account > Orders while it shows "Processing", and the '
        "refund reaches your original payment method within 3 business days. Once it has "
        "shipped, you can return it instead."
    ),
    "return_item": (
        "You can return items within 30 days of delivery, unused and in their original "
        "packaging: start the return under Account > Orders > Return, the label is free. "
        "Damaged or wrong items are replaced free of charge."
    ),
    "refund_status": (
        "Refunds are issued within 5 business days after your return arrives at our warehouse, "
        "to your original payment method. Your bank can take another 3 to 5 days to show it."
    ),
    "payment_problem": (
        "A declined card is usually blocked by your bank's security check: please try again or "
        "use another payment method. A double charge is a pending authorisation and disappears "
        "within 7 days."
    ),
    "payment_methods": (
        "We accept Visa, Mastercard, American Express, PayPal, and invoice for customers with "
        "at least one paid order."
    ),
    "reset_password": (
        'Use "Forgot password" on the sign-in page; the reset link is valid for 1 hour. After '
        "5 failed sign-ins the account is locked for 15 minutes."
    ),
    "delete_account": (
        "You can delete your account under Account > Privacy > Delete account. Your personal "
        "data is erased within 30 days, except invoices, which we must keep for 10 years."
    ),
    "talk_to_human": (
        "Our support team answers chats Monday to Friday, 8:00 to 20:00 CET, and by phone at "
        "the number on the contact page. I am handing you over to a colleague."
    ),
    OOS: (
        "I can help with orders, delivery, returns, refunds, payments and your account; for "
        "anything else, please ask a colleague."
    ),
}

# How many of each intent's demo messages carry the reference reply (as if the shop's agents
# had answered a few of them): enough for the decoder to learn it, few enough to keep the
# quickstart under 10 minutes on 2 cores (all 48: 2460 stage-2 steps, 13.8 min in all).
REPLIES_PER_INTENT = 16

_PREFIXES = ["", "hi, ", "hello ", "excuse me, ", "hey, ", "good morning, "]
_SUFFIXES = ["", "?", ".", " please", " thanks", "!"]


def demo_intents() -> list[str]:
    return sorted(_TEMPLATES)


def demo_reply(intent: str) -> str:
    """The shop's reference reply for a demo intent."""
    return _REPLIES[intent]


def demo_utterances(
    seed: int = 0, per_intent: int = 48, *, with_replies: bool = False
) -> list[Utterance]:
    """Labelled demo messages: up to `per_intent` distinct variants per intent, shuffled; with
    `with_replies`, the first `REPLIES_PER_INTENT` of each intent carry its reference reply
    (`demo_reply`)."""
    rng = random.Random(seed)
    rows: list[Utterance] = []
    for intent in demo_intents():
        variants: set[str] = set()
        for template in _TEMPLATES[intent]:
            for item, when in itertools.product(_ITEMS, _TIMES):
                variants.add(template.format(item=item, when=when))
        base = sorted(variants)
        rng.shuffle(base)
        chosen: list[str] = []
        for i, text in enumerate(itertools.islice(itertools.cycle(base), per_intent * 3)):
            styled = rng.choice(_PREFIXES) + text + rng.choice(_SUFFIXES)
            if i % 7 == 0:
                styled = styled.capitalize()
            if styled not in chosen:
                chosen.append(styled)
            if len(chosen) == per_intent:
                break
        rows.extend(
            Utterance(
                text=t,
                intent=intent,
                reply=_REPLIES[intent] if with_replies and i < REPLIES_PER_INTENT else None,
            )
            for i, t in enumerate(chosen)
        )
    rng.shuffle(rows)
    return rows


def demo_knowledge_path() -> Path:
    return Path(__file__).with_name("demo_knowledge.md")
