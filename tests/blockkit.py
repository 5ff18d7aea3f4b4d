"""The part of Slack's Block Kit message schema our messages use, with Slack's documented
limits (header text 150, section text 3000, fields <= 10 of <= 2000, context <= 10 elements,
<= 50 blocks, block_id <= 255). Unknown block types and keys are refused, as Slack does."""

from typing import Any

import jsonschema

_TEXT = {
    "type": "object",
    "required": ["type", "text"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["plain_text", "mrkdwn"]},
        "text": {"type": "string", "minLength": 1, "maxLength": 3000},
        "emoji": {"type": "boolean"},
        "verbatim": {"type": "boolean"},
    },
}
_BLOCK_ID = {"type": "string", "maxLength": 255}
_HEADER = {
    "type": "object",
    "required": ["type", "text"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "header"},
        "block_id": _BLOCK_ID,
        "text": {
            **_TEXT,
            "properties": {
                **_TEXT["properties"],
                "type": {"const": "plain_text"},
                "text": {"type": "string", "minLength": 1, "maxLength": 150},
            },
        },
    },
}
_SECTION = {
    "type": "object",
    "required": ["type"],
    "anyOf": [{"required": ["text"]}, {"required": ["fields"]}],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "section"},
        "block_id": _BLOCK_ID,
        "text": _TEXT,
        "fields": {
            "type": "array",
            "minItems": 1,
            "maxItems": 10,
            "items": {
                **_TEXT,
                "properties": {
                    **_TEXT["properties"],
                    "text": {"type": "string", "minLength": 1, "maxLength": 2000},
                },
            },
        },
    },
}
_CONTEXT = {
    "type": "object",
    "required": ["type", "elements"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "context"},
        "block_id": _BLOCK_ID,
        "elements": {"type": "array", "minItems": 1, "maxItems": 10, "items": _TEXT},
    },
}
_DIVIDER = {
    "type": "object",
    "required": ["type"],
    "additionalProperties": False,
    "properties": {"type": {"const": "divider"}, "block_id": _BLOCK_ID},
}

MESSAGE = {
    "type": "object",
    "required": ["text", "blocks"],
    "properties": {
        "text": {"type": "string", "minLength": 1},
        "channel": {"type": "string", "minLength": 1},
        "thread_ts": {"type": "string"},
        "reply_broadcast": {"type": "boolean"},
        "blocks": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {"oneOf": [_HEADER, _SECTION, _CONTEXT, _DIVIDER]},
        },
    },
    "additionalProperties": False,
}


def errors(message: dict[str, Any]) -> list[str]:
    return [e.message for e in jsonschema.Draft7Validator(MESSAGE).iter_errors(message)]
