// Decide one request through `ordinance gateway`, signed with the agent's own key: what an
// agent in TypeScript/JavaScript does (docs/http-api.md, "Signed requests"). Node >= 20,
// no packages.
//
//   node examples/http/decide.mjs http://127.0.0.1:8080 billing-bot.pem request.json
//
// The key is the PKCS#8 PEM `ordinance keys generate --key billing-bot.pem` wrote; its
// public half is the agent's key in the identity registry. Exit 0 on allow, 1 otherwise.
import { createHash, createPrivateKey, createPublicKey, randomUUID, sign } from "node:crypto";
import { readFileSync } from "node:fs";

const [gateway, keyFile, requestFile] = process.argv.slice(2);
const key = createPrivateKey(readFileSync(keyFile));
// The key id: the first 16 hex digits of SHA-256 over the raw 32-byte public key.
const publicRaw = Buffer.from(createPublicKey(key).export({ format: "jwk" }).x, "base64url");
const keyId = createHash("sha256").update(publicRaw).digest("hex").slice(0, 16);

// request_id and event_time are part of what is signed: a signature cannot be replayed
// under another request id, nor long after it was made.
const request = JSON.parse(readFileSync(requestFile, "utf8"));
const body = Buffer.from(
  JSON.stringify({ ...request, request_id: randomUUID(), event_time: new Date().toISOString() }),
);
const signature = sign(null, Buffer.concat([Buffer.from("ordinance-http-intent-v1\0"), body]), key);

const response = await fetch(`${gateway}/v1/decide`, {
  method: "POST",
  body,
  headers: {
    "content-type": "application/json",
    "ordinance-key-id": keyId,
    "ordinance-signature": signature.toString("base64"),
  },
});
const decision = await response.json();
console.log(JSON.stringify(decision, null, 2));
process.exit(response.ok && decision.effect === "allow" ? 0 : 1);
