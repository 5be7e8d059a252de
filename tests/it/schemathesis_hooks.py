# Schemathesis hooks for tests/it/openapi.rs: request bodies of media types
# it has no serializer for. NDJSON (the import route): a generated value goes
# on the wire as one JSON line per item of a list, or one line; strings and
# bytes as they are.
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    if isinstance(value, str):
        return {"data": value.encode("utf-8", "surrogatepass")}
    items = value if isinstance(value, list) else [value]
    return {"data": "".join(json.dumps(item) + "\n" for item in items).encode()}


# The gateways' binary batch (POST .../doc-updates): bytes as they are;
# anything else generated goes as its JSON text (a malformed batch, 400).
@schemathesis.serializer("application/vnd.strata.yjs-batch")
def yjs_batch(ctx, value):
    if isinstance(value, bytes):
        return {"data": value}
    if isinstance(value, str):
        return {"data": value.encode("utf-8", "surrogatepass")}
    return {"data": json.dumps(value).encode()}
