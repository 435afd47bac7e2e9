// State Backed's own JS client (@statebacked/client) administering baton as it would
// api.statebacked.dev: identity providers, keys and token providers through baton's admin
// API, then an exchange through the new provider.
//
//   BATON_ADMIN_TOKEN=… node statebacked_admin.mjs <adminHost> <apiHost> <orgId> <iss> <jwksUrl>
//   (the IdP token on stdin)
//
// <adminHost> is baton's admin listener, <apiHost> its proxy listener (where /tokens is).
// Prints one JSON line:
//   {"key_id", "key"                     what client.keys.create returned,
//    "idps", "token_providers", "keys"   the client's list calls after the writes,
//    "token", "claims"                   a token of the new provider, from the client's exchange,
//    "delete_key_in_use"                 the error of deleting the provider's key first,
//    "delete_again"                      the error of deleting the key a second time,
//    "wrong_token"                       the error of listing keys with a wrong admin token,
//    "after": {idps, token_providers, keys}   the lists once everything is deleted}
// and exits 0; on an unexpected error prints {"error": {name, message, status, code}} and
// exits 1. Exit 2: usage; 3: the npm packages are missing (run scripts/test.sh).

function usage(message) {
  process.stderr.write(
    `${message}\nusage: BATON_ADMIN_TOKEN=… node statebacked_admin.mjs <adminHost> <apiHost> <orgId> <iss> <jwksUrl> < idp-token\n`,
  );
  process.exit(2);
}

async function loadClient() {
  try {
    return (await import('@statebacked/client')).StateBackedClient;
  } catch (e) {
    process.stderr.write(
      `cannot load @statebacked/client (${e.message}); run scripts/test.sh, which runs npm ci in tests/interop\n`,
    );
    process.exit(3);
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8').trim();
}

function describeError(e) {
  return { name: e?.name, message: e?.message, status: e?.status, code: e?.code };
}

async function failure(promise) {
  try {
    await promise;
    return null;
  } catch (e) {
    return describeError(e);
  }
}

const [adminHost, apiHost, orgId, iss, jwksUrl] = process.argv.slice(2);
if (!adminHost || !apiHost || !orgId || !iss || !jwksUrl) usage('missing arguments');
const adminToken = process.env.BATON_ADMIN_TOKEN;
if (!adminToken) usage('BATON_ADMIN_TOKEN is not set');
const idpToken = await readStdin();
if (!idpToken) usage('no IdP token on standard input');

const StateBackedClient = await loadClient();
const admin = new StateBackedClient({ token: adminToken }, { apiHost: adminHost });
const service = 'admin-app';

const lists = async () => ({
  idps: (await admin.identityProviders.list()).idps,
  token_providers: (await admin.tokenProviders.list()).tokenProviders,
  keys: (await admin.keys.list()).keys,
});

try {
  await admin.identityProviders.upsert({
    iss,
    jwksUrl,
    algs: ['RS256'],
    mapping: { 'sub.$': '$.sub', 'email.$': '$.email', provider: 'admin-interop' },
  });
  const { id, key } = await admin.keys.create({ name: 'interop key', use: 'production' });
  await admin.tokenProviders.upsert({
    keyId: id,
    service,
    mapping: { 'sub.$': '$.sub', 'email.$': '$.email', 'provider.$': '$.provider' },
  });
  const listed = await lists();

  const user = new StateBackedClient(
    { identityProviderToken: idpToken, tokenProviderService: service, orgId },
    { apiHost },
  );
  const token = await user.token();
  const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));

  const deleteKeyInUse = await failure(admin.keys.delete(id));
  await admin.tokenProviders.delete(service);
  await admin.keys.delete(id);
  await admin.identityProviders.delete({ iss });
  const deleteAgain = await failure(admin.keys.delete(id));
  const intruder = new StateBackedClient({ token: 'not-the-admin-token' }, { apiHost: adminHost });
  const wrongToken = await failure(intruder.keys.list());

  process.stdout.write(
    `${JSON.stringify({
      key_id: id,
      key,
      ...listed,
      token,
      claims,
      delete_key_in_use: deleteKeyInUse,
      delete_again: deleteAgain,
      wrong_token: wrongToken,
      after: await lists(),
    })}\n`,
  );
} catch (e) {
  process.stdout.write(`${JSON.stringify({ error: describeError(e) })}\n`);
  process.exit(1);
}
