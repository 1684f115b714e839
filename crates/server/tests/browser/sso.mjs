// "Sign in with SSO" in a real browser (Debian's Chromium through playwright-core): the
// console sends the browser to the identity provider (oauth2-mock-server, whose
// /authorize answers at once with a code), the provider sends it back, and the person
// lands on their workspaces, signed in; signing out ends the session.
//
// Run by crates/server/tests/it/single_sign_on.rs, which starts the provider and the
// server and passes everything through the environment:
//   CONSOLE_URL   the server's base URL, e.g. http://127.0.0.1:PORT
//   USER_NAME     the regkeeper user the provider names
//   CHROMIUM      the browser (default /usr/bin/chromium)
//   SCREENSHOT    where to save the signed-in page (optional)
//
// Exits 0 only when every step passed.

import { chromium } from 'playwright-core';

const CONSOLE_URL = process.env.CONSOLE_URL.replace(/\/+$/, '');
const USER_NAME = process.env.USER_NAME;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT_MS = 20_000;

function check(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
let page;
try {
  // The provider's certificate comes from the tests' own CA, which this browser profile
  // does not hold; what is under test is regkeeper's side of the flow.
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  context.setDefaultTimeout(TIMEOUT_MS);
  page = await context.newPage();
  await page.goto(`${CONSOLE_URL}/`);
  const sso = page.getByRole('link', { name: 'Sign in with SSO' });
  await sso.waitFor({ state: 'visible' });
  console.log('step: the sign-in page offers SSO');

  await sso.click();
  await page.waitForURL(`${CONSOLE_URL}/console/workspaces`);
  await page.getByRole('heading', { name: 'Workspaces', exact: true }).waitFor();
  const account = await page.locator('.account').innerText();
  check(account.includes(USER_NAME), `signed in as someone else: ${account}`);
  check(
    (await page.getByRole('link', { name: `~${USER_NAME}` }).count()) === 1,
    'the personal workspace is not listed',
  );
  const cookies = await context.cookies();
  const session = cookies.find((cookie) => cookie.name === 'regkeeper_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', 'no strict session cookie');
  check(!cookies.some((cookie) => cookie.name === 'regkeeper_sso'), 'the pending sign-in stayed');
  console.log(`step: signed in through the provider as ${USER_NAME}`);
  if (process.env.SCREENSHOT) {
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  }

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('link', { name: 'Sign in with SSO' }).waitFor({ state: 'visible' });
  const replay = await browser.newContext();
  await replay.addCookies([session]);
  const replayPage = await replay.newPage();
  await replayPage.goto(`${CONSOLE_URL}/console/workspaces`);
  await replayPage.getByRole('link', { name: 'Sign in with SSO' }).waitFor({ state: 'visible' });
  console.log('step: signing out ends the session, a copied cookie included');
} catch (error) {
  console.error(`FAILED: ${error.message}`);
  if (page) {
    console.error(`at ${page.url()}:\n${(await page.content()).slice(0, 4000)}`);
  }
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log('all steps passed');
