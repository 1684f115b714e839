"""An OTLP/HTTP trace receiver for the tests: decodes each protobuf export with the
OpenTelemetry project's own message definitions (PyPI `opentelemetry-proto`) and
appends one JSON line per span to OUT, and the raw request bodies to OUT.raw (so a
test can search the bytes as sent). Prints `otlp receiver listening on PORT` once
bound to 127.0.0.1:0. A request that is not protobuf on /v1/traces is answered 400
and recorded as an error line, so a test sees it.

usage: python otlp_receiver.py OUT
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

OUT = sys.argv[1]


def value(any_value):
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(item) for item in any_value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: value(item.value) for item in any_value.kvlist_value.values}
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, kind)


def attributes(pairs):
    return {pair.key: value(pair.value) for pair in pairs}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(OUT + ".raw", "ab") as raw:
            raw.write(body)
        lines = []
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            lines.append({"error": f"unexpected {self.path} {self.headers.get('Content-Type')}"})
            status = 400
        else:
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                resource = attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        lines.append({
                            "name": span.name,
                            "traceId": span.trace_id.hex(),
                            "spanId": span.span_id.hex(),
                            "parentSpanId": span.parent_span_id.hex(),
                            "kind": span.kind,
                            "attributes": attributes(span.attributes),
                            "events": [
                                {"name": event.name, "attributes": attributes(event.attributes)}
                                for event in span.events
                            ],
                            "resource": resource,
                            "authorization": self.headers.get("Authorization"),
                        })
            status = 200
        with open(OUT, "a") as out:
            for line in lines:
                out.write(json.dumps(line) + "\n")
        answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"otlp receiver listening on {server.server_address[1]}", flush=True)
server.serve_forever()
