// A real OIDC identity provider for the identity federation tests: oauth2-mock-server
// over HTTPS with the tests' certificate, signing with a key the test hands it (so the
// test can also forge what a provider never issues: expired, `none`, HS256, ...).
//
//   node issuer.mjs CERT.pem KEY.pem SIGNING-KEY.pem KID
//
// prints `listening https://127.0.0.1:PORT` once ready. A token request
// (POST /token, grant_type=client_credentials, aud=AUDIENCE) may carry `claims`, a JSON
// object merged into the payload, so tests ask for GitHub- or Kubernetes-shaped tokens.
// A line `add KID PEM-FILE` on stdin publishes another key (a rotation); it answers
// `added KID`.
//
// Single sign-on (authorization code flow at /authorize, which redirects back with a
// code and no login page): the ID token's extra claims come from a `claims` query
// parameter on /authorize (a JSON object, so a test playing the browser picks the
// person and can forge `aud` or `nonce`), else from the last stdin line
// `login CLAIMS-JSON` (answered `login set`), for a real browser. A line
// `client ID SECRET` makes the token endpoint demand that client's secret (HTTP
// Basic), answering `client set`.
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { OAuth2Server } from "oauth2-mock-server";
import { exportJWK, importPKCS8 } from "jose";

const [cert, key, signingKey, kid] = process.argv.slice(2);

async function addKey(server, kid, path) {
  const pem = readFileSync(path, "utf8");
  const jwk = await exportJWK(await importPKCS8(pem, "ES256", { extractable: true }));
  await server.issuer.keys.add({ ...jwk, kid, alg: "ES256", use: "sig" });
}

const server = new OAuth2Server(key, cert);
await addKey(server, kid, signingKey);
const codeClaims = new Map();
let loginClaims = "{}";
let client = null;
server.service.on("beforeAuthorizeRedirect", (redirect, request) => {
  const code = redirect.url.searchParams.get("code");
  if (code) {
    codeClaims.set(code, request.query.claims ?? loginClaims);
  }
});
server.service.on("beforeTokenSigning", (token, request) => {
  const claims =
    request.body?.grant_type === "authorization_code"
      ? codeClaims.get(request.body.code)
      : request.body?.claims;
  if (claims) {
    Object.assign(token.payload, JSON.parse(claims));
  }
});
server.service.on("beforeResponse", (response, request) => {
  if (request.body?.grant_type !== "authorization_code") {
    return;
  }
  codeClaims.delete(request.body.code);
  const basic = (request.headers.authorization ?? "").replace(/^Basic /, "");
  const [id, secret] = Buffer.from(basic, "base64").toString().split(":").map(decodeURIComponent);
  if (client && (id !== client.id || secret !== client.secret)) {
    response.statusCode = 401;
    response.body = { error: "invalid_client", error_description: "wrong client credentials" };
  }
});
await server.start(0, "127.0.0.1");
console.log(`listening ${server.issuer.url}`);

createInterface({ input: process.stdin }).on("line", async (line) => {
  const [command, newKid, path] = line.trim().split(" ");
  if (command === "add") {
    await addKey(server, newKid, path);
    console.log(`added ${newKid}`);
  } else if (command === "login") {
    loginClaims = line.trim().slice("login ".length);
    console.log("login set");
  } else if (command === "client") {
    client = { id: newKid, secret: path };
    console.log("client set");
  }
});
process.stdin.on("end", () => server.stop().then(() => process.exit(0)));
