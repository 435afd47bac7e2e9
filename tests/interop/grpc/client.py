"""A gRPC client written with grpcio (no baton code), for tests/proxy/grpc.rs.

Reads a job from stdin (so no token is ever on a command line):
  {"target": "127.0.0.1:PORT", "calls": [
     {"kind": "unary" | "server_stream" | "bidi", "method": "/pkg.Svc/M",
      "messages": ["text", ...], "metadata": [[name, value], ...], "timeout": seconds}]}
and prints one JSON line: a list, per call, of
  {"code": "OK" | "UNAUTHENTICATED" | ..., "details", "responses": [text, ...],
   "initial_metadata": [[n, v]], "trailing_metadata": [[n, v]]}
Calls run in order on one channel. Exit 0 when every call finished (whatever its status),
3 when grpcio is not installed.
"""

import json
import sys

try:
    import grpc
except ImportError as error:
    print(f"grpcio is not installed: {error}", file=sys.stderr)
    sys.exit(3)


def pairs(metadata):
    if metadata is None:
        return []
    return [
        [name, value if isinstance(value, str) else value.decode("latin-1")]
        for name, value in metadata
    ]


def run(channel, call):
    kind = call["kind"]
    messages = [m.encode() for m in call.get("messages", [""])]
    metadata = [tuple(pair) for pair in call.get("metadata", [])]
    timeout = call.get("timeout", 10)
    result = {"responses": []}
    try:
        if kind == "unary":
            stub = channel.unary_unary(call["method"])
            response, rpc = stub.with_call(messages[0], metadata=metadata, timeout=timeout)
            result["responses"].append(response.decode())
        elif kind == "server_stream":
            stub = channel.unary_stream(call["method"])
            rpc = stub(messages[0], metadata=metadata, timeout=timeout)
            for response in rpc:
                result["responses"].append(response.decode())
        elif kind == "bidi":
            stub = channel.stream_stream(call["method"])
            rpc = stub(iter(messages), metadata=metadata, timeout=timeout)
            for response in rpc:
                result["responses"].append(response.decode())
        else:
            raise ValueError(f"unknown call kind {kind!r}")
    except grpc.RpcError as error:
        rpc = error
    result["code"] = rpc.code().name
    result["details"] = rpc.details()
    result["initial_metadata"] = pairs(rpc.initial_metadata())
    result["trailing_metadata"] = pairs(rpc.trailing_metadata())
    return result


def main():
    job = json.load(sys.stdin)
    with grpc.insecure_channel(job["target"]) as channel:
        results = [run(channel, call) for call in job["calls"]]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
