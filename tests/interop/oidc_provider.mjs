// A real OpenID Provider (panva's `oidc-provider`) for baton's interop tests.
//
//   node oidc_provider.mjs serve <port> <jwks.json>
//       Listens on 127.0.0.1:<port> (0 = any free port) with issuer http://127.0.0.1:<port>,
//       signing with the private keys of <jwks.json> ({"keys": [<private JWK>, ...]}).
//       oidc-provider signs with the first key that fits the algorithm, so a rotated set
//       puts the new key first and keeps the old one (still published at /jwks) after it.
//       Prints one JSON line when listening: {"issuer": ..., "port": ..., "token_endpoint": ...}.
//       Runs until killed.
//
//   node oidc_provider.mjs genkey <kid>
//       Prints a new RS256 private JWK (jose's generateKeyPair + exportJWK) with that kid.
//
// One client, `baton-test` / `baton-test-secret` (client_secret_basic or _post), may use the
// client_credentials grant. With `resource=<absolute URL>` (RFC 8707) the access token is an
// RS256-signed JWT (RFC 9068, `typ: at+jwt`) whose `aud` is that URL; its claims are the
// provider's own: iss, sub (= client id), client_id, aud, jti, iat, exp, scope — plus the
// `roles` and `tenant` claims that `extraTokenClaims` adds, so mappings have something to map.
// Without `resource` the access token is opaque; introspection (`/token/introspection`, client
// authentication required) answers for it, and revocation (`/token/revocation`) revokes it.
//
// Exit codes: 0 (genkey done), 2 usage, 3 a package is missing (run scripts/test.sh).

import { readFileSync } from 'node:fs';

const CLIENT_ID = 'baton-test';
const CLIENT_SECRET = 'baton-test-secret';
const SCOPES = 'api:read api:write';

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node oidc_provider.mjs serve <port> <jwks.json> | genkey <kid>\n`,
  );
  process.exit(2);
}

async function load(name) {
  try {
    return await import(name);
  } catch (e) {
    process.stderr.write(
      `cannot load the npm package ${name} (${e.message}); run scripts/test.sh, which runs npm ci in tests/interop\n`,
    );
    process.exit(3);
  }
}

async function genkey(kid) {
  if (!kid) usage('genkey needs a kid');
  const { generateKeyPair, exportJWK } = await load('jose');
  const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
  const jwk = await exportJWK(privateKey);
  process.stdout.write(`${JSON.stringify({ ...jwk, kid, alg: 'RS256', use: 'sig' })}\n`);
}

async function serve(portArg, jwksPath) {
  const port = Number(portArg);
  if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`bad port ${portArg}`);
  if (!jwksPath) usage('serve needs a JWKS file');
  const jwks = JSON.parse(readFileSync(jwksPath, 'utf8'));
  if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    usage(`${jwksPath} has no keys`);
  }
  const { default: Provider } = await load('oidc-provider');

  // The issuer names the port, so with port 0 the server must listen before the provider
  // exists: bind a plain HTTP server first, then hand requests to the provider's callback.
  const http = await import('node:http');
  let handler = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = http.createServer((req, res) => handler(req, res));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const actualPort = server.address().port;
  const issuer = `http://127.0.0.1:${actualPort}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: SCOPES,
      },
    ],
    jwks,
    scopes: ['openid', ...SCOPES.split(' ')],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // RFC 7662 / RFC 7009 at /token/introspection and /token/revocation (in discovery).
      // An authenticated client may introspect any token; a client revokes its own.
      introspection: {
        enabled: true,
        allowedPolicy: async (_ctx, client) => client.clientAuthMethod !== 'none',
      },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
      },
      resourceIndicators: {
        enabled: true,
        // No resource parameter: no resource server, hence an opaque token. The tests
        // always name one.
        defaultResource: async (_ctx, _client, oneOf) => oneOf,
        getResourceServerInfo: async (_ctx, resourceIndicator) => ({
          scope: SCOPES,
          audience: resourceIndicator,
          accessTokenTTL: 10 * 60,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    // Claims a real IdP adds (Auth0 "actions", Keycloak mappers), for mappings to pick up.
    extraTokenClaims: async () => ({ roles: ['reader', 'writer'], tenant: 'acme' }),
    ttl: {
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 10 * 60,
    },
    cookies: { keys: ['baton-interop-cookie-key'] },
  });
  handler = provider.callback();

  const discovery = `${issuer}/.well-known/openid-configuration`;
  process.stdout.write(
    `${JSON.stringify({
      issuer,
      port: actualPort,
      discovery,
      token_endpoint: `${issuer}/token`,
      introspection_endpoint: `${issuer}/token/introspection`,
      revocation_endpoint: `${issuer}/token/revocation`,
      jwks_uri: `${issuer}/jwks`,
      kids: jwks.keys.map((k) => k.kid),
    })}\n`,
  );

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // The test harness holds our stdin; when it goes away (the test process died), so do we.
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

const [mode, ...args] = process.argv.slice(2);
switch (mode) {
  case 'serve':
    await serve(...args);
    break;
  case 'genkey':
    await genkey(...args);
    break;
  default:
    usage(`unknown mode ${mode ?? '(none)'}`);
}
