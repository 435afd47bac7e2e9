// The demo's page: each step calls the real demo IdP, baton and the app, and shows what
// came back. No build step and no library: what the browser runs is this file.
'use strict';

const BATON = document.querySelector('meta[name="baton-url"]').content;
const SERVICE = document.querySelector('meta[name="baton-service"]').content;
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

const state = { idpToken: null };

const $ = (id) => document.getElementById(id);

// === JWTs, decoded for display (baton and the app verify them; the page only reads) ===

function base64UrlDecode(text) {
  const base64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
}

function base64UrlEncode(text) {
  const bytes = new TextEncoder().encode(text);
  const binary = Array.from(bytes, (b) => String.fromCharCode(b)).join('');
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function decodeJwt(token) {
  const [header, payload] = token.split('.');
  return { header: JSON.parse(base64UrlDecode(header)), claims: JSON.parse(base64UrlDecode(payload)) };
}

const pretty = (value) => JSON.stringify(value, null, 2);

// === what the page shows ===

function setStatus(step, text, kind) {
  const status = $(`${step}-status`);
  status.textContent = text;
  status.className = `status ${kind || ''}`;
}

function showChecks(list, checks) {
  list.replaceChildren(...checks.map(([passed, text]) => {
    const item = document.createElement('li');
    item.className = passed ? 'pass' : 'fail';
    item.textContent = text;
    return item;
  }));
}

// Runs one step: disables its button while it runs, and shows any failure in its status line.
function step(name, button, run) {
  button.addEventListener('click', async (event) => {
    event.preventDefault();
    button.disabled = true;
    setStatus(name, 'Working…', 'busy');
    try {
      await run();
      setStatus(name, '', '');
    } catch (e) {
      setStatus(name, `Failed: ${e.message}`, 'error');
    } finally {
      button.disabled = false;
    }
  });
}

async function answer(response, what) {
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`${what} answered ${response.status}: ${text}`);
  }
  return text;
}

// === the steps ===

// 1. The IdP (this page's own origin) signs a token for the name typed.
step('sign-in', $('sign-in'), async () => {
  const user = $('user').value.trim() || 'demo-user';
  const response = await fetch(`/token?user=${encodeURIComponent(user)}`);
  const token = (await answer(response, 'the IdP')).trim();
  const { header, claims } = decodeJwt(token);
  state.idpToken = token;
  $('idp-token').textContent = token;
  $('idp-header').textContent = pretty(header);
  $('idp-claims').textContent = pretty(claims);
  $('sign-in-result').hidden = false;
  // A new user: the later steps' results were for the previous one.
  for (const id of ['exchange-result', 'call-result', 'explain-result']) $(id).hidden = true;
  for (const id of ['exchange', 'call', 'explain']) $(id).disabled = false;
});

// 2. RFC 8693 token exchange at baton, cross-origin (a form body: no preflight needed).
step('exchange', $('exchange'), async () => {
  const response = await fetch(`${BATON}/tokens`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: TOKEN_EXCHANGE,
      audience: SERVICE,
      subject_token: state.idpToken,
    }),
  });
  const body = JSON.parse(await answer(response, 'baton'));
  const { header, claims } = decodeJwt(body.access_token);
  const idp = decodeJwt(state.idpToken).claims;
  $('tokens-response').textContent = pretty(body);
  $('baton-claims').textContent = pretty({ header, claims });
  showChecks($('exchange-checks'), [
    [claims.iss === BATON, `Issued by baton (iss ${claims.iss}), not by the IdP (${idp.iss})`],
    [claims.act && claims.act.sub === idp.sub, `For the same user: act.sub is ${claims.act && claims.act.sub}`],
    [header.alg !== decodeJwt(state.idpToken).header.alg, `Signed with baton's own key (${header.alg}, kid ${header.kid})`],
  ]);
  $('exchange-result').hidden = false;
});

// 3. The app through baton's proxy, with the IdP token: the Authorization header makes the
// browser send a preflight first, which baton answers for origins in [proxy] cors_origins.
step('call', $('call'), async () => {
  const response = await fetch(`${BATON}/hello`, {
    headers: { Authorization: `Bearer ${state.idpToken}` },
  });
  const body = JSON.parse(await answer(response, 'the app'));
  const headers = body.received.headers;
  const authorization = headers.authorization || '';
  const leaked = Object.entries(headers).filter(([, value]) => value.includes(state.idpToken));
  const claims = body.baton_token_claims || {};
  const idp = decodeJwt(state.idpToken).claims;
  showChecks($('call-checks'), [
    [authorization.startsWith('Bearer ') && authorization !== `Bearer ${state.idpToken}`,
      'The app received a baton token in Authorization, not the IdP token'],
    [leaked.length === 0,
      leaked.length === 0 ? 'The IdP token is in none of the headers the app received'
        : `The IdP token reached the app in: ${leaked.map(([name]) => name).join(', ')}`],
    [claims.iss === BATON && claims.act && claims.act.sub === idp.sub,
      `The app's token: issued by ${claims.iss}, for ${claims.act && claims.act.sub}`],
  ]);
  $('app-headers').textContent = pretty(headers);
  $('app-claims').textContent = pretty(claims);
  $('call-result').hidden = false;
});

// 4. An altered IdP token (its signature left as it was), explained by baton.
const BREAKAGES = {
  sub: { part: 'claims', change: (jwt) => { jwt.claims.sub = 'user|mallory'; } },
  aud: { part: 'claims', change: (jwt) => { jwt.claims.aud = 'another-app'; } },
  alg: { part: 'header', change: (jwt) => { jwt.header.alg = 'HS256'; } },
};

step('explain', $('explain'), async () => {
  const breakage = BREAKAGES[$('breakage').value];
  const jwt = decodeJwt(state.idpToken);
  breakage.change(jwt);
  const signature = state.idpToken.split('.')[2];
  const broken = [
    base64UrlEncode(JSON.stringify(jwt.header)),
    base64UrlEncode(JSON.stringify(jwt.claims)),
    signature,
  ].join('.');
  const response = await fetch('/explain', { method: 'POST', body: broken });
  const trace = await answer(response, 'explain');
  const verdict = trace.split('\n').find((line) => line.startsWith('result: ')) || '(no verdict)';
  $('verdict').textContent = verdict.replace(/^result: /, '');
  $('verdict').className = `verdict ${verdict.startsWith('result: accepted') ? 'pass' : 'fail'}`;
  $('broken-heading').textContent = `The altered ${breakage.part}`;
  $('broken-part').textContent = pretty(jwt[breakage.part]);
  $('trace').textContent = trace;
  $('explain-result').hidden = false;
});

// Enter in the name field clicks "Sign in" (the form's default button); never navigate.
$('sign-in-form').addEventListener('submit', (event) => event.preventDefault());
$('site-origin').textContent = window.location.origin;
$('baton-origin').textContent = BATON;
