# Schemathesis hooks for tests/it/openapi.rs: NDJSON request bodies (the
# import route). A generated value goes on the wire as one JSON line per
# item of a list, or one line; strings and bytes as they are.
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
