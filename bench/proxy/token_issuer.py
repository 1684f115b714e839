#!/usr/bin/env python3
"""A Docker registry token service (the realm of a `Bearer` challenge) for bench/proxy.sh.

    token_issuer.py --users USERS_JSON --tls-cert PEM --tls-key PEM \
        --signing-key PEM --signing-cert PEM --issuer ISS [--expires-in SECONDS]

Distribution ships no token service, so the benchmark's upstream registry uses this one.
It speaks both forms clients use:

- `GET /token?service=S&scope=repository:NAME:pull[,push]` with optional Basic auth (the
  Docker token protocol): answers {"token", "access_token", "expires_in", "issued_at"};
- `POST /token` with a form, `grant_type=password` (the OAuth2 form): answers
  {"access_token", "expires_in", "issued_at", "scope"}. Other grants get 400.

USERS_JSON maps user names to {"password": ..., "actions": ["pull", "push"]}. A token
grants, for each requested repository scope, the requested actions the user holds, as
Docker token services do (no credentials: an anonymous token granting nothing); a wrong
password gets 401.

Tokens are JWTs signed RS256 (or ES256 for an EC key) with an `x5c` header holding the
signing certificate. Distribution 2.8 accepts them when that certificate is in its
`auth.token.rootcertbundle` and has the digitalSignature key usage.

Serves HTTPS on 127.0.0.1 (port 0 unless --listen says otherwise), one thread per
connection with HTTP/1.1 keep-alive, prints `token issuer listening on https://ADDR` once
listening, and one line per request on standard error.
"""

import argparse
import base64
import datetime
import http.server
import json
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


class Issuer:
    def __init__(self, users: dict, signing_key_pem: bytes, signing_cert_pem: bytes, issuer: str,
                 expires_in: int):
        self.users = users
        self.key = serialization.load_pem_private_key(signing_key_pem, password=None)
        self.algorithm = "ES256" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "RS256"
        cert = x509.load_pem_x509_certificate(signing_cert_pem)
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.issuer = issuer
        self.expires_in = expires_in
        self.lock = threading.Lock()
        self.issued = 0

    def user(self, username: str, password: str):
        entry = self.users.get(username)
        if entry is None or entry.get("password") != password:
            return None
        return username, set(entry.get("actions", []))

    def grant(self, user, scopes: list[str]) -> list[dict]:
        """Per requested `type:name:actions` scope, the requested actions the user holds."""
        granted: dict[tuple[str, str], list[str]] = {}
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if not name:
                continue
            held = user[1] if user else set()
            allowed = [a for a in actions.split(",") if kind == "repository" and ("*" in held or a in held)]
            entry = granted.setdefault((kind, name), [])
            entry.extend(a for a in allowed if a not in entry)
        return [{"type": kind, "name": name, "actions": actions} for (kind, name), actions in granted.items()]

    def issue(self, user, service: str, scopes: list[str]) -> dict:
        now = int(time.time())
        access = self.grant(user, scopes)
        claims = {
            "iss": self.issuer,
            "sub": user[0] if user else "",
            "aud": service,
            "exp": now + self.expires_in,
            # A little back-dated, so that a verifier whose clock reads a second
            # earlier does not find the token "not yet valid".
            "nbf": now - 10,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "access": access,
        }
        token = jwt.encode(claims, self.key, algorithm=self.algorithm, headers={"x5c": [self.x5c]})
        with self.lock:
            self.issued += 1
        issued_at = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        scope = " ".join(f"{a['type']}:{a['name']}:{','.join(a['actions'])}" for a in access if a["actions"])
        return {"token": token, "access_token": token, "expires_in": self.expires_in,
                "issued_at": issued_at, "scope": scope}


def split_scopes(values: list[str]) -> list[str]:
    # Repeated `scope` parameters, each possibly holding several space-separated scopes.
    return [scope for value in values for scope in value.split(" ") if scope]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "bench-token-issuer"
    issuer: Issuer  # set on the class by main()

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refuse(self, status: int, code: str, message: str) -> None:
        self.reply(status, {"errors": [{"code": code, "message": message}],
                            "error": code.lower(), "error_description": message})

    def basic_user(self):
        """(user or None, refused): no header is anonymous, a wrong one is refused."""
        header = self.headers.get("Authorization")
        if not header:
            return None, False
        if not header.startswith("Basic "):
            return None, True
        try:
            username, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, True
        user = self.issuer.user(username, password)
        return user, user is None

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/token":
            return self.refuse(404, "NOT_FOUND", "no such path")
        query = urllib.parse.parse_qs(url.query)
        user, refused = self.basic_user()
        if refused:
            return self.refuse(401, "UNAUTHORIZED", "invalid username or password")
        service = query.get("service", [""])[0]
        issued = self.issuer.issue(user, service, split_scopes(query.get("scope", [])))
        del issued["scope"]
        self.reply(200, issued)

    def do_POST(self) -> None:  # noqa: N802
        if urllib.parse.urlsplit(self.path).path != "/token":
            return self.refuse(404, "NOT_FOUND", "no such path")
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        field = lambda name: form.get(name, [""])[0]  # noqa: E731
        if field("grant_type") != "password":
            return self.refuse(400, "UNSUPPORTED_GRANT_TYPE", "only grant_type=password is supported")
        user = self.issuer.user(field("username"), field("password"))
        if user is None:
            return self.refuse(401, "UNAUTHORIZED", "invalid username or password")
        issued = self.issuer.issue(user, field("service"), split_scopes(form.get("scope", [])))
        del issued["token"]
        self.reply(200, issued)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        # One line per request on standard error: the request line (no secret is in it) and
        # the status. bench/proxy.sh counts them.
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), format % args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--users", required=True, help="JSON file: {user: {password, actions}}")
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--signing-key", required=True)
    parser.add_argument("--signing-cert", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--expires-in", type=int, default=3600)
    args = parser.parse_args()

    with open(args.users) as f:
        users = json.load(f)
    with open(args.signing_key, "rb") as f:
        key_pem = f.read()
    with open(args.signing_cert, "rb") as f:
        cert_pem = f.read()
    Handler.issuer = Issuer(users, key_pem, cert_pem, args.issuer, args.expires_in)

    host, _, port = args.listen.rpartition(":")
    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.tls_cert, args.tls_key)
    # The handshake happens in the connection's own thread (on its first read), so a
    # client that never finishes one holds up no other.
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    address = "%s:%d" % server.socket.getsockname()[:2]
    print(f"token issuer listening on https://{address}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
