// State Backed's own JS client (@statebacked/client) exchanging an identity-provider token
// against baton instead of api.statebacked.dev.
//
//   node statebacked_exchange.mjs <apiHost> <orgId> <service>   (the IdP token on stdin)
//
// <apiHost> is baton's base URL (e.g. http://127.0.0.1:8080); the token is read from standard
// input so it never shows in `ps`. Prints one JSON line:
//   {"token", "header", "claims"                 from the client's token provider,
//    "helper_token", "helper_claims"             from the public client.tokens.exchange,
//    "requests": [{method, url, content_type, params}]   what the client sent (the subject
//                                                token replaced by its length)}
// and exits 0; when baton refuses, prints {"error": {name, message, status, code}} and
// exits 1. Exit 2: usage; 3: the npm packages are missing (run scripts/test.sh).
//
// How the client exchanges: constructed with a TokenExchangeTokenConfig
// ({identityProviderToken, tokenProviderService, orgId}), it POSTs to `${apiHost}/tokens`
// (form-encoded: grant_type token-exchange, audience
// https://tokens.statebacked.dev/<orgId>/<service>, requested_token_type access_token,
// subject_token) the first time it needs a token — the constructor starts that eagerly, and
// every API call awaits it through the client's token provider, the method `token()`
// (TypeScript-private, plain JS at run time, memoised until the token's `exp`). Calling
// `token()` is exactly what the client's own API calls do, minus a State Backed API
// endpoint that baton does not have. `tokens.exchange` is the public helper that
// `token()` calls; it is called once more on its own to cover the documented API.

import { createRequire } from 'node:module';

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node statebacked_exchange.mjs <apiHost> <orgId> <service> < idp-token\n`,
  );
  process.exit(2);
}

async function loadClient() {
  try {
    const client = await import('@statebacked/client');
    // The client's default fetch is the undici it depends on; record requests, then hand
    // them to that same undici.
    const { fetch } = createRequire(import.meta.resolve('@statebacked/client'))('undici');
    return { StateBackedClient: client.StateBackedClient, fetch };
  } catch (e) {
    process.stderr.write(
      `cannot load @statebacked/client (${e.message}); run scripts/test.sh, which runs npm ci in tests/interop\n`,
    );
    process.exit(3);
  }
}

function decode(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

function describe(token) {
  const [header, claims] = token.split('.');
  return { header: decode(header), claims: decode(claims) };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8').trim();
}

const [apiHost, orgId, service] = process.argv.slice(2);
if (!apiHost || !orgId || !service) usage('missing arguments');
const idpToken = await readStdin();
if (!idpToken) usage('no IdP token on standard input');

const { StateBackedClient, fetch } = await loadClient();
const requests = [];
const recordingFetch = (url, init = {}) => {
  const headers = Object.fromEntries(
    Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
  );
  const params = Object.fromEntries(new URLSearchParams(String(init.body ?? '')));
  if (params.subject_token) params.subject_token = `<${params.subject_token.length} bytes>`;
  requests.push({
    method: init.method ?? 'GET',
    url: String(url),
    content_type: headers['content-type'] ?? null,
    params,
  });
  return fetch(url, init);
};

const client = new StateBackedClient(
  { identityProviderToken: idpToken, tokenProviderService: service, orgId },
  { apiHost, fetch: recordingFetch },
);

try {
  const token = await client.token();
  const helperToken = await client.tokens.exchange({ orgId, service, token: idpToken });
  const { header, claims } = describe(token);
  process.stdout.write(
    `${JSON.stringify({
      token,
      header,
      claims,
      helper_token: helperToken,
      helper_claims: describe(helperToken).claims,
      requests,
    })}\n`,
  );
} catch (e) {
  process.stdout.write(
    `${JSON.stringify({
      error: { name: e?.name, message: e?.message, status: e?.status, code: e?.code },
      requests,
    })}\n`,
  );
  process.exit(1);
}
