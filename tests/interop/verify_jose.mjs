// Verifies a token baton minted with panva's `jose`, fetching baton's published keys the way a
// resource server would.
//
//   node verify_jose.mjs <jwks_url> <issuer> <audience> [typ]   (the token on stdin)
//       createRemoteJWKSet(<jwks_url>) + jwtVerify(token, keys, {issuer, audience, typ,
//       algorithms: asymmetric only}).
//   node verify_jose.mjs secret-env:<NAME> <issuer> <audience> [typ]
//       An HS256 token (State Backed's keys): the HMAC key is the UTF-8 bytes of the secret
//       in environment variable <NAME> (kept out of `ps`); algorithms: HS256 only.
//
// Prints {"header", "payload"} and exits 0 when the token verifies; prints
// {"error": {code, message}} and exits 1 when it does not.
// Exit 2: usage; 3: the npm packages are missing (run scripts/test.sh).

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node verify_jose.mjs <jwks_url | secret-env:NAME> <issuer> <audience> [typ] < token\n`,
  );
  process.exit(2);
}

const [jwksUrl, issuer, audience, typ] = process.argv.slice(2);
if (!jwksUrl || !issuer || !audience) usage('missing arguments');

let jose;
try {
  jose = await import('jose');
} catch (e) {
  process.stderr.write(
    `cannot load jose (${e.message}); run scripts/test.sh, which runs npm ci in tests/interop\n`,
  );
  process.exit(3);
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const token = Buffer.concat(chunks).toString('utf8').trim();
if (!token) usage('no token on standard input');

let keys;
let algorithms;
if (jwksUrl.startsWith('secret-env:')) {
  const name = jwksUrl.slice('secret-env:'.length);
  const secret = process.env[name];
  if (!secret) usage(`environment variable ${name} is not set`);
  keys = new TextEncoder().encode(secret);
  algorithms = ['HS256'];
} else {
  keys = jose.createRemoteJWKSet(new URL(jwksUrl));
  // baton publishes asymmetric keys only; never let an HMAC alg near a public key.
  algorithms = ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'];
}
try {
  const { payload, protectedHeader } = await jose.jwtVerify(token, keys, {
    issuer,
    audience,
    algorithms,
    ...(typ ? { typ } : {}),
  });
  process.stdout.write(`${JSON.stringify({ header: protectedHeader, payload })}\n`);
} catch (e) {
  process.stdout.write(`${JSON.stringify({ error: { code: e?.code, message: e?.message } })}\n`);
  process.exit(1);
}
