"""schemathesis hooks for health/fuzz_api.sh.

The business routes document `x-request-deadline-ms`: a request whose budget is below the
service's floor (10 ms) or runs out is answered 504 by design, not by a fault, so
`no_server_error_but_a_short_deadline` replaces schemathesis' `not_a_server_error` (504 with
a budget under a second sent is not a failure; every other 5xx is), and `map_headers` gives
the fuzzer's own well-formed values 30 s so that its cases reach the handlers.

`POST /orders` may answer a request its document allows with 422 when the state says no: the
user does not exist (`urn:problem:unknown-user`) or the key was used with another body
(`urn:problem:idempotency-key-reused`). Any other 422 to such a request (`urn:problem:validation`)
means the document allowed something the service rejects, which is what the fuzzer hunts.
"""

import schemathesis

DEADLINE = "x-request-deadline-ms"

STATE_REJECTIONS = {"urn:problem:unknown-user", "urn:problem:idempotency-key-reused"}


@schemathesis.check
def valid_order_not_refused_as_invalid(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if case.operation.label != "POST /orders" or response.status_code != 422:
        return None
    try:
        kind = response.json().get("type")
    except ValueError:
        kind = None
    if kind not in STATE_REJECTIONS:
        raise AssertionError(
            f"a body the document allows was refused as invalid ({kind}): {response.text[:300]}"
        )
    return None


@schemathesis.hook
def map_headers(ctx, headers):
    """A well-formed `x-request-deadline-ms` becomes 30 s: the fuzzer draws any whole number,
    and below the service's floor (10 ms) or under load a small one is answered 504 by design,
    which `not_a_server_error` would report. Malformed values are left for the service to
    refuse (400), which `negative_data_rejection` checks."""
    if headers and DEADLINE in headers and str(headers[DEADLINE]).strip().isdigit():
        headers[DEADLINE] = "30000"
    return headers


SHORT_DEADLINE_MS = 1000


@schemathesis.check
def no_server_error_but_a_short_deadline(ctx, response, case):
    if response.status_code < 500:
        return None
    sent = str((case.headers or {}).get(DEADLINE, "")).strip()
    if response.status_code == 504 and sent.isdigit() and int(sent) < SHORT_DEADLINE_MS:
        return None
    raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")
