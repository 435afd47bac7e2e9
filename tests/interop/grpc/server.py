"""A gRPC server written with grpcio (no baton code), baton's upstream in tests/proxy/grpc.rs.

Listens on 127.0.0.1:0 over cleartext HTTP/2, prints `PORT <n>` once it serves, then one
`CALL <method>` line per call it receives (never a header value). It exits when its stdin
closes (the test process went away) or it is killed.

Every method works on raw bytes (no protobuf, no codegen) and answers JSON that says what
the server saw, so the test can check it:
  {"method", "authorization", "metadata": {name: value}, "request": <text>, "index"}
and sets the trailing metadata `x-upstream-trailer: <method>`.

- /baton.test.Echo/Unary         unary -> unary
- /baton.test.Echo/ServerStream  unary -> a stream of N answers (N is the request's text)
- /baton.test.Echo/Bidi          stream -> stream, one answer per request message
- /baton.test.Echo/Slow          unary -> unary, after sleeping the request's text in ms

Exit codes: 3 when grpcio is not installed.
"""

import json
import sys
import time
from concurrent import futures

try:
    import grpc
except ImportError as error:  # the test says how to install it
    print(f"grpcio is not installed: {error}", file=sys.stderr)
    sys.exit(3)

SERVICE = "baton.test.Echo"


def seen(method, context, request, index=0):
    metadata = {}
    for name, value in context.invocation_metadata():
        metadata[name] = value if isinstance(value, str) else value.decode("latin-1")
    answer = {
        "method": method,
        "authorization": metadata.get("authorization"),
        "metadata": metadata,
        "request": request.decode("utf-8", "replace"),
        "index": index,
    }
    return json.dumps(answer).encode()


def log_call(method):
    print(f"CALL {method}", flush=True)


def unary(request, context):
    log_call("Unary")
    context.set_trailing_metadata((("x-upstream-trailer", "Unary"),))
    return seen("Unary", context, request)


def server_stream(request, context):
    log_call("ServerStream")
    context.set_trailing_metadata((("x-upstream-trailer", "ServerStream"),))
    for index in range(int(request.decode())):
        yield seen("ServerStream", context, request, index)


def bidi(requests, context):
    log_call("Bidi")
    context.set_trailing_metadata((("x-upstream-trailer", "Bidi"),))
    for index, request in enumerate(requests):
        yield seen("Bidi", context, request, index)


def slow(request, context):
    log_call("Slow")
    time.sleep(int(request.decode()) / 1000)
    return seen("Slow", context, request)


def main():
    handlers = {
        # No (de)serializers: the messages are the raw bytes.
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    server.stop(grace=0)


if __name__ == "__main__":
    main()
