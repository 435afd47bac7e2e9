// The demo's page in headless Chromium: clicks through every step and checks what each shows.
// Run by tests/demo_browser.rs: `node demo_browser.mjs PAGE_URL SCREENSHOT_DIR`.
// Prints one line per screenshot (`screenshot PATH`); exits 1 with a message on the first
// check that fails (a screenshot of the page as it was is saved as `failure.png`).
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { chromium } from 'playwright-core';

const [pageUrl, screenshotDir] = process.argv.slice(2);
if (!pageUrl || !screenshotDir) {
  console.error('usage: node demo_browser.mjs PAGE_URL SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(screenshotDir, { recursive: true });

const USER = 'carol';
// Each breakage the page offers, and the stage baton's explain must refuse it at.
const BREAKAGES = [
  ['sub', 'signature'],
  ['aud', 'select IdP'],
  ['alg', 'algorithm'],
];

class CheckFailed extends Error {}
function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

function decodeJwt(token) {
  const [header, claims] = token.split('.').slice(0, 2)
    .map((part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8')));
  return { header, claims };
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
const consoleErrors = [];
page.on('console', (message) => {
  if (message.type() === 'error') consoleErrors.push(message.text());
});
page.on('pageerror', (error) => consoleErrors.push(String(error)));

async function screenshot(name) {
  const file = path.join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`screenshot ${file}`);
}

const text = (selector) => page.locator(selector).innerText();
const json = async (selector) => JSON.parse(await page.locator(selector).textContent());

// Clicks `button`, waits until `result` shows and the step's status says nothing is running,
// and fails with the step's status line when it reports an error.
async function runStep(step, button, result) {
  await page.click(button);
  await page.waitForFunction(
    ([status, result]) => {
      const s = document.getElementById(status);
      return s.classList.contains('error')
        || (!s.classList.contains('busy') && !document.getElementById(result).hidden);
    },
    [`${step}-status`, result],
    { timeout: 15_000 },
  );
  const status = await page.locator(`#${step}-status`).textContent();
  check(!status, `step ${step}: the page says ${JSON.stringify(status)}`);
}

let failed = false;
try {
  await page.goto(pageUrl);
  const batonUrl = await page.locator('meta[name="baton-url"]').getAttribute('content');
  const idpOrigin = new URL(pageUrl).origin;
  check(batonUrl && batonUrl !== idpOrigin, `baton's URL on the page: ${batonUrl}`);
  await screenshot('0-page');

  // 1. Sign in as USER: the IdP token's sub is the name typed.
  await page.fill('#user', USER);
  await runStep('sign-in', '#sign-in', 'sign-in-result');
  const idpToken = (await page.locator('#idp-token').textContent()).trim();
  const idp = decodeJwt(idpToken);
  const shownClaims = await json('#idp-claims');
  check(idp.claims.sub === `user|${USER}`, `the IdP token's sub: ${idp.claims.sub}`);
  check(shownClaims.sub === `user|${USER}`, `the claims shown: ${JSON.stringify(shownClaims)}`);
  check(idp.claims.iss === idpOrigin, `the IdP token's iss: ${idp.claims.iss}`);
  check((await json('#idp-header')).alg === 'RS256', 'the header shown is not RS256');
  await screenshot('1-sign-in');

  // 2. Exchange at baton's POST /tokens, cross-origin: a baton token for the same user.
  await runStep('exchange', '#exchange', 'exchange-result');
  const answer = await json('#tokens-response');
  check(answer.token_type === 'Bearer', `POST /tokens answered ${JSON.stringify(answer)}`);
  check(answer.issued_token_type === 'urn:ietf:params:oauth:token-type:access_token',
    `issued_token_type: ${answer.issued_token_type}`);
  const minted = decodeJwt(answer.access_token);
  check(minted.claims.iss === batonUrl, `the baton token's iss: ${minted.claims.iss} (baton is ${batonUrl})`);
  check(minted.claims.act?.sub === `user|${USER}`, `the baton token's act: ${JSON.stringify(minted.claims.act)}`);
  check(minted.header.alg === 'ES256', `the baton token's alg: ${minted.header.alg}`);
  const shownBaton = await json('#baton-claims');
  check(shownBaton.claims.act?.sub === `user|${USER}`, 'the page shows other baton claims than it received');
  check(await page.locator('#exchange-checks li.fail').count() === 0,
    `the page's exchange checks: ${await text('#exchange-checks')}`);
  await screenshot('2-exchange');

  // 3. The app through baton's proxy with the IdP token: it got a baton token, never the IdP's.
  await runStep('call', '#call', 'call-result');
  const headers = await json('#app-headers');
  const appClaims = await json('#app-claims');
  const authorization = headers.authorization ?? '';
  check(authorization.startsWith('Bearer '), `the app's authorization: ${JSON.stringify(authorization)}`);
  check(authorization !== `Bearer ${idpToken}`, 'the app received the IdP token in authorization');
  for (const [name, value] of Object.entries(headers)) {
    check(!value.includes(idpToken), `the IdP token reached the app in its ${name} header`);
  }
  const forwarded = decodeJwt(authorization.slice('Bearer '.length));
  check(forwarded.claims.iss === batonUrl, `the app's token iss: ${forwarded.claims.iss}`);
  check(appClaims.act?.sub === `user|${USER}`, `the app's token claims: ${JSON.stringify(appClaims)}`);
  check(isDeepStrictEqual(appClaims, forwarded.claims),
    'the claims shown are not those of the token the app received');
  check(headers.origin === idpOrigin, `the app saw origin ${headers.origin}`);
  const callChecks = await text('#call-checks');
  check(await page.locator('#call-checks li.fail').count() === 0
    && callChecks.includes('not the IdP token'), `the page's call checks: ${callChecks}`);
  await screenshot('3-call');

  // 4. Each breakage: baton's explain refuses it at the stage that catches it.
  for (const [breakage, stage] of BREAKAGES) {
    await page.selectOption('#breakage', breakage);
    await runStep('explain', '#explain', 'explain-result');
    const verdict = await text('#verdict');
    check(verdict.startsWith(`refused at stage \`${stage}\``),
      `breaking ${breakage}: the verdict is ${JSON.stringify(verdict)}, not refused at \`${stage}\``);
    const trace = await text('#trace');
    check(trace.includes(`result: refused at stage \`${stage}\``), `breaking ${breakage}: the trace:\n${trace}`);
    check(trace.includes('[FAIL]'), `breaking ${breakage}: no failing step in the trace:\n${trace}`);
    check(!trace.includes(idpToken.split('.')[2]), `breaking ${breakage}: the trace shows the token`);
    await screenshot(`4-explain-${breakage}`);
  }

  check(consoleErrors.length === 0, `the page logged errors: ${consoleErrors.join('; ')}`);
  console.log('ok');
} catch (e) {
  failed = true;
  console.error(e instanceof CheckFailed ? `check failed: ${e.message}` : e);
  if (consoleErrors.length) console.error(`the page's console errors: ${consoleErrors.join('; ')}`);
  try { await screenshot('failure'); } catch { /* the page may be gone */ }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
