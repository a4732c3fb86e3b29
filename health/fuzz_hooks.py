"""schemathesis hooks for health/fuzz_api.sh.

`POST /orders` may answer a request its document allows with 422 when the state says no: the
user does not exist (`urn:problem:unknown-user`) or the key was used with another body
(`urn:problem:idempotency-key-reused`). Any other 422 to such a request (`urn:problem:validation`)
means the document allowed something the service rejects, which is what the fuzzer hunts.
"""

import schemathesis

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
