"""Keep credentials out of third-party debug logs.

At DEBUG level botocore logs every request with its headers, and the SigV4 `Authorization`
header names the R2 access key id; a user who turns on debug logging must not find keys in
their log files. A filter on the loggers that print requests and responses masks that header's
credential, URL passwords and the values of the secret environment variables.
"""

from __future__ import annotations

import logging
import os
import re

SECRET_VARS = ("BILANCIO_R2_ACCESS_KEY_ID", "BILANCIO_R2_SECRET_ACCESS_KEY", "BILANCIO_SUPABASE_KEY",
               "BILANCIO_SUPABASE_DB_URL", "BILANCIO_WEBHOOK_URL")  # webhook URLs often embed a token
# The loggers that print request or response headers and bodies.
CHATTY_LOGGERS = ("botocore.endpoint", "botocore.auth", "botocore.parsers", "botocore.hooks",
                  "botocore.httpsession", "botocore.retryhandler", "botocore.credentials", "urllib3.connectionpool",
                  "s3transfer", "httpx", "httpcore")
_CREDENTIAL = re.compile(r"(Credential=)[^/\s,'\"]+")
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    text = _CREDENTIAL.sub(r"\1***", text)
    text = _URL_PASSWORD.sub(r"\1***@", text)
    for name in SECRET_VARS:
        secret = os.environ.get(name)
        if secret and len(secret) >= 6:
            text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()


def install() -> None:
    """Idempotent: add the filter to every chatty logger."""
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
