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
server.service.on("beforeTokenSigning", (token, request) => {
  const claims = request.body?.claims;
  if (claims) {
    Object.assign(token.payload, JSON.parse(claims));
  }
});
await server.start(0, "127.0.0.1");
console.log(`listening ${server.issuer.url}`);

createInterface({ input: process.stdin }).on("line", async (line) => {
  const [command, newKid, path] = line.trim().split(" ");
  if (command === "add") {
    await addKey(server, newKid, path);
    console.log(`added ${newKid}`);
  }
});
process.stdin.on("end", () => server.stop().then(() => process.exit(0)));
