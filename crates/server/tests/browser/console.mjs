// The web console driven in a real browser (Debian's Chromium through playwright-core),
// as a person would use it: sign in, add a registry credential (after a refused
// password), see it verified, verify and update it, read the audit log, delete it; at
// phone width nothing overflows; a viewer sees no way to add one; forged form posts are
// refused; signing out ends the session. Every page passes an axe accessibility check.
//
// Run by crates/server/tests/it/console.rs, which starts the server and the registry and
// passes everything through the environment:
//   CONSOLE_URL        the server's base URL, e.g. http://127.0.0.1:PORT
//   ADMIN_TOKEN        API token of the site administrator (workspace ~admin)
//   VIEWER_TOKEN       API token of a user with role view in VIEWER_WORKSPACE
//   VIEWER_WORKSPACE   e.g. acme/view
//   REGISTRY           host:port of a registry with htpasswd auth that the server trusts
//   REGISTRY_USER, REGISTRY_PASSWORD         a login it accepts
//   REGISTRY_WRONG_PASSWORD                  one it refuses (optional)
//   SCREENSHOT_DIR     where screenshots and axe results are written
//   CHROMIUM           the browser (default /usr/bin/chromium)
//
// Exits 0 only when every step passed. On failure it prints the step, the page's URL and
// what the page said, and saves failure.png.

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);

// --- configuration ---------------------------------------------------------------

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`console.mjs: environment variable ${name} is required`);
    process.exit(2);
  }
  return value;
}

const CONSOLE_URL = required('CONSOLE_URL').replace(/\/+$/, '');
const ADMIN_TOKEN = required('ADMIN_TOKEN');
const VIEWER_TOKEN = required('VIEWER_TOKEN');
const VIEWER_WORKSPACE = required('VIEWER_WORKSPACE');
const REGISTRY = required('REGISTRY');
const REGISTRY_USER = required('REGISTRY_USER');
const REGISTRY_PASSWORD = required('REGISTRY_PASSWORD');
const REGISTRY_WRONG_PASSWORD =
  process.env.REGISTRY_WRONG_PASSWORD || `${REGISTRY_PASSWORD}-but-wrong`;
const SCREENSHOT_DIR = required('SCREENSHOT_DIR');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const ADMIN_WORKSPACE = '~admin';
const CREDENTIAL = 'e2e-registry';
const ECR_HOST = '123456789012.dkr.ecr.us-east-1.amazonaws.com';
const EVIL_ORIGIN = 'https://evil.example';
// Generous: a loaded 2-core machine, and adding a credential logs in to the registry.
const TIMEOUT_MS = 20_000;
const PHONE = { width: 390, height: 844 };

mkdirSync(SCREENSHOT_DIR, { recursive: true });

// axe-core's source, evaluated in the page through the DevTools protocol. Evaluation
// from there is not subject to the page's Content-Security-Policy (script-src 'self'
// blocks a <script> tag that addScriptTag would add), so the console is checked with the
// very CSP it ships, in the same context as every other step; no bypassCSP anywhere.
const AXE_SOURCE = readFileSync(require.resolve('axe-core'), 'utf8');

// --- steps and failure reporting --------------------------------------------------

let stepNumber = 0;
let currentStep = '(starting)';
let currentPage = null;
const findings = [];

class CheckFailed extends Error {}

function fail(message) {
  throw new CheckFailed(message);
}

function check(condition, message) {
  if (!condition) fail(message);
}

async function step(name, body) {
  stepNumber += 1;
  currentStep = `${String(stepNumber).padStart(2, '0')}. ${name}`;
  console.log(`step ${currentStep}`);
  const started = Date.now();
  await body();
  console.log(`  ok (${Date.now() - started} ms)`);
}

function note(message) {
  console.log(`  - ${message}`);
}

async function shot(page, name) {
  const file = path.join(SCREENSHOT_DIR, name);
  await page.screenshot({ path: file, fullPage: true });
  note(`screenshot ${name}`);
}

/** Retries `probe` until it returns a truthy value or the time is up; then fails. */
async function eventually(description, probe, timeout = TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      fail(`${description} (still not so after ${timeout} ms; last seen: ${String(last)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// Pages load with plain form posts and links; a click that submits waits for the next
// document to have loaded.
async function clickAndLoad(page, locator) {
  const loaded = page.waitForEvent('load', { timeout: TIMEOUT_MS });
  await locator.click();
  await loaded;
}

async function gotoOk(page, url) {
  const response = await page.goto(url);
  check(response, `no response for ${url}`);
  check(response.ok(), `GET ${url} answered ${response.status()}`);
  return response;
}

/** The text of the matching elements that say something (an empty live region does not). */
async function visibleText(locator) {
  const saying = locator.filter({ hasText: /\S/ });
  await saying.first().waitFor({ state: 'visible' });
  return (await saying.allInnerTexts()).join(' | ').replace(/\s+/g, ' ').trim();
}

/** The single message in role=status (a success), which must say `pattern`. */
async function expectStatus(page, pattern) {
  const text = await visibleText(page.getByRole('status'));
  check(pattern.test(text), `the status message says ${JSON.stringify(text)}, expected ${pattern}`);
  note(`status: ${text}`);
  return text;
}

async function expectAlert(page, pattern) {
  const text = await visibleText(page.getByRole('alert'));
  check(pattern.test(text), `the alert says ${JSON.stringify(text)}, expected ${pattern}`);
  note(`alert: ${text}`);
  return text;
}

async function expectHeading(page, name) {
  await page.getByRole('heading', { name, exact: true }).first().waitFor({ state: 'visible' });
}

async function expectNoSecret(page, where) {
  const html = await page.content();
  for (const [label, secret] of [
    ['the registry password', REGISTRY_PASSWORD],
    ['the wrong registry password', REGISTRY_WRONG_PASSWORD],
    ['the admin API token', ADMIN_TOKEN],
    ['the viewer API token', VIEWER_TOKEN],
  ]) {
    check(!html.includes(secret), `${where}: the page's HTML contains ${label}`);
  }
}

/** Headers and body rows of the page's (first) table, as text. */
async function readTable(page) {
  return page.evaluate(() => {
    const table = document.querySelector('table');
    if (!table) return null;
    const text = (cell) => cell.innerText.replace(/\s+/g, ' ').trim();
    const headerRow = table.querySelector('thead tr:last-child') || table.querySelector('tr');
    const headers = [...headerRow.children].map(text);
    const rows = [...table.querySelectorAll('tbody tr')]
      .filter((row) => row !== headerRow)
      .map((row) => [...row.children].map(text));
    return { headers, rows };
  });
}

function tableRow(table, name) {
  const nameColumn = table.headers.indexOf('Name');
  const row = table.rows.find((cells) => cells[nameColumn] === name);
  if (!row) return null;
  return Object.fromEntries(table.headers.map((header, index) => [header, row[index]]));
}

async function credentialsTable(page) {
  const table = await readTable(page);
  if (table === null) return { headers: [], rows: [] };
  return table;
}

// --- accessibility --------------------------------------------------------------

async function axeCheck(page, name) {
  const hasAxe = await page.evaluate(() => typeof window.axe === 'object');
  if (!hasAxe) await page.evaluate(AXE_SOURCE);
  const results = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ['violations'] }),
  );
  writeFileSync(
    path.join(SCREENSHOT_DIR, `axe-${name}.json`),
    JSON.stringify({ url: page.url(), violations: results.violations }, null, 2),
  );
  const blocking = [];
  for (const violation of results.violations) {
    const targets = violation.nodes.map((node) => node.target.join(' ')).join(', ');
    const line = `axe ${violation.impact}: ${violation.id} — ${violation.help} (${targets})`;
    if (violation.impact === 'serious' || violation.impact === 'critical') {
      blocking.push(line);
    } else {
      findings.push(`${name}: ${line}`);
    }
    note(line);
  }
  check(
    blocking.length === 0,
    `accessibility violations on the ${name} page:\n    ${blocking.join('\n    ')}`,
  );
  note(`axe: ${results.violations.length} violation(s), none serious or critical`);
}

// --- the pages ------------------------------------------------------------------

function workspacePath(workspace) {
  return `/console/workspaces/${encodeURIComponent(workspace)}/credentials`;
}

/** Watches a page for script errors and CSP violations, which fail the run. */
function watch(page, label) {
  const problems = [];
  page.on('pageerror', (error) => problems.push(`${label}: uncaught ${error}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content.Security.Policy/i.test(message.text())) {
      problems.push(`${label}: ${message.text()}`);
    }
  });
  return problems;
}

async function signIn(page, token) {
  await page.getByLabel('API token', { exact: true }).fill(token);
  await clickAndLoad(page, page.getByRole('button', { name: 'Sign in', exact: true }));
}

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const problems = [];
  try {
    const admin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    admin.setDefaultTimeout(TIMEOUT_MS);
    const page = await admin.newPage();
    currentPage = page;
    problems.push(watch(page, 'admin'));

    let credentialsUrl;
    let addUrl;
    let addAction;
    let csrfField;
    const fieldNames = {};
    let credentialUrl;
    // The add form's fields under the names the form itself uses.
    const addFields = (name) => ({
      [fieldNames.Name]: name,
      [fieldNames.Provider]: 'docker',
      [fieldNames['Registry server']]: REGISTRY,
      [fieldNames['User name']]: REGISTRY_USER,
      [fieldNames.Password]: REGISTRY_PASSWORD,
    });

    await step('the root URL leads to the sign-in page', async () => {
      await gotoOk(page, `${CONSOLE_URL}/`);
      await page.getByLabel('API token', { exact: true }).waitFor({ state: 'visible' });
      check(
        (await page.getByLabel('API token', { exact: true }).getAttribute('type')) === 'password',
        'the API token field is not of type password',
      );
      await page.getByRole('button', { name: 'Sign in', exact: true }).waitFor();
      note(`at ${page.url()}`);
      await shot(page, '01-sign-in.png');
      await axeCheck(page, 'sign-in');
    });

    await step('a wrong token is refused with an alert', async () => {
      await signIn(page, 'rk_not_a_valid_token_000000000000');
      await expectAlert(page, /\S/);
      await page.getByLabel('API token', { exact: true }).waitFor({ state: 'visible' });
      check(
        (await page.getByLabel('API token', { exact: true }).inputValue()) === '',
        'the refused token is kept in the form',
      );
      await shot(page, '01-sign-in-refused.png');
      await axeCheck(page, 'sign-in-refused');
    });

    await step('the admin signs in and sees the workspaces', async () => {
      await signIn(page, ADMIN_TOKEN);
      await expectHeading(page, 'Workspaces');
      check(
        new URL(page.url()).pathname === '/console/workspaces',
        `signed in at ${page.url()}, expected /console/workspaces`,
      );
      await page.getByRole('button', { name: 'Sign out', exact: true }).waitFor();
      await page.getByRole('link', { name: 'Workspaces', exact: true }).first().waitFor();
      await expectNoSecret(page, 'workspaces page');
      await shot(page, '02-workspaces.png');
      await axeCheck(page, 'workspaces');
    });

    await step(`open workspace ${ADMIN_WORKSPACE}`, async () => {
      await clickAndLoad(page, page.getByRole('link', { name: ADMIN_WORKSPACE, exact: true }));
      await expectHeading(page, `Credentials in ${ADMIN_WORKSPACE}`);
      credentialsUrl = page.url();
      check(
        new URL(credentialsUrl).pathname === workspacePath(ADMIN_WORKSPACE),
        `credentials page at ${credentialsUrl}, expected ${workspacePath(ADMIN_WORKSPACE)}`,
      );
      await page.getByRole('link', { name: 'Audit log', exact: true }).waitFor();
      await shot(page, '02-credentials-empty.png');
    });

    await step('the add form tells the registry type as you type', async () => {
      await clickAndLoad(page, page.getByRole('link', { name: 'Add credentials', exact: true }));
      await expectHeading(page, 'Add credentials');
      addUrl = page.url();
      const form = page.locator('form').filter({ has: page.getByLabel('Registry server') });
      addAction = new URL((await form.getAttribute('action')) || addUrl, addUrl).href;
      csrfField = await form
        .locator('input[type=hidden]')
        .evaluateAll((inputs) => inputs.map((input) => input.name).find((n) => /csrf/i.test(n)));
      note(`form posts to ${addAction}; CSRF field: ${csrfField}`);
      check(csrfField, 'the add form has no hidden CSRF field');

      for (const label of ['Name', 'Provider', 'Registry server', 'User name', 'Password']) {
        const field = page.getByLabel(label, { exact: true });
        await field.waitFor({ state: 'visible' });
        fieldNames[label] = await field.getAttribute('name');
      }
      note(`field names: ${JSON.stringify(fieldNames)}`);
      await page.getByLabel('Repository path prefix (optional)', { exact: true }).waitFor();
      check(
        (await page.getByLabel('Password', { exact: true }).getAttribute('type')) === 'password',
        'the Password field is not of type password',
      );
      const providers = await page
        .getByLabel('Provider', { exact: true })
        .locator('option')
        .evaluateAll((options) => options.map((option) => option.value));
      note(`providers: ${providers.join(', ')}`);
      for (const provider of ['docker', 'ecr', 'acr', 'gcr']) {
        check(providers.includes(provider), `the Provider list has no ${provider}`);
      }

      const ecrOptions = page.getByRole('group', { name: 'Amazon ECR options' });
      const detected = page.locator('output#detected-type');
      await page.getByLabel('Name', { exact: true }).fill(CREDENTIAL);
      const server = page.getByLabel('Registry server', { exact: true });
      await server.click();
      await server.pressSequentially(ECR_HOST, { delay: 5 });
      await eventually('#detected-type shows Amazon ECR for an ECR host', async () =>
        /Amazon ECR/.test(await detected.innerText()),
      );
      note(`detected: ${(await detected.innerText()).trim()}`);
      await ecrOptions.waitFor({ state: 'visible' });
      for (const label of ['Role ARN', 'External ID', 'AWS region']) {
        await ecrOptions.getByLabel(label, { exact: true }).waitFor({ state: 'visible' });
      }
      await ecrOptions
        .getByRole('checkbox', { name: "Use the server's own AWS identity (ambient)" })
        .waitFor({ state: 'visible' });
      await shot(page, '03-add-form-ecr.png');
      await axeCheck(page, 'add-form-ecr');

      await server.fill(REGISTRY);
      await eventually('#detected-type shows Docker registry for the test registry', async () =>
        /Docker registry/.test(await detected.innerText()),
      );
      note(`detected: ${(await detected.innerText()).trim()}`);
      await ecrOptions.waitFor({ state: 'hidden' });
      note('the Amazon ECR options are hidden again');

      // Choosing the provider by hand overrides what the host looks like.
      const provider = page.getByLabel('Provider', { exact: true });
      await provider.selectOption({ label: 'Amazon ECR' });
      await ecrOptions.waitFor({ state: 'visible' });
      await provider.selectOption({ label: 'Docker registry' });
      await ecrOptions.waitFor({ state: 'hidden' });
      note('choosing Amazon ECR as the provider shows its options, Docker registry hides them');
    });

    await step('a wrong registry password is refused, the form keeps what was typed', async () => {
      await page.getByLabel('User name', { exact: true }).fill(REGISTRY_USER);
      await page.getByLabel('Password', { exact: true }).fill(REGISTRY_WRONG_PASSWORD);
      await clickAndLoad(page, page.getByRole('button', { name: 'Add', exact: true }));
      await expectAlert(page, /user name or password/i);
      const name = await page.getByLabel('Name', { exact: true }).inputValue();
      check(name === CREDENTIAL, `the Name field holds ${JSON.stringify(name)} after the refusal`);
      const server = await page.getByLabel('Registry server', { exact: true }).inputValue();
      check(server === REGISTRY, `the Registry server field holds ${JSON.stringify(server)}`);
      const user = await page.getByLabel('User name', { exact: true }).inputValue();
      check(user === REGISTRY_USER, `the User name field holds ${JSON.stringify(user)}`);
      const password = await page.getByLabel('Password', { exact: true }).inputValue();
      check(password === '', 'the refused password is kept in the form');
      await expectNoSecret(page, 'the refused add form');
      await shot(page, '03-add-rejected.png');
      await axeCheck(page, 'add-form-refused');
    });

    await step('add the credential; it is verified', async () => {
      const provider = await page.getByLabel('Provider', { exact: true }).inputValue();
      check(provider === 'docker', `the Provider chosen before the refusal is now ${provider}`);
      await page.getByLabel('Password', { exact: true }).fill(REGISTRY_PASSWORD);
      await shot(page, '03-add-form.png');
      await axeCheck(page, 'add-form');
      await clickAndLoad(page, page.getByRole('button', { name: 'Add', exact: true }));
      await expectStatus(page, new RegExp(CREDENTIAL));
      await expectHeading(page, CREDENTIAL);
      credentialUrl = page.url();
      note(`credential page: ${credentialUrl}`);
      const body = await page.locator('main').innerText();
      check(
        /Verification\W+ok\b/i.test(body.replace(/\s+/g, ' ')),
        `the credential page does not show verification ok:\n${body}`,
      );
      for (const text of [REGISTRY, REGISTRY_USER]) {
        check(body.includes(text), `the credential page does not show ${text}`);
      }
      await page.getByRole('button', { name: 'Verify', exact: true }).waitFor();
      await page.getByRole('link', { name: 'Update', exact: true }).waitFor();
      await page.getByRole('link', { name: 'Delete', exact: true }).waitFor();
      await expectNoSecret(page, 'credential page');
      await shot(page, '04-added.png');
      await axeCheck(page, 'credential');
    });

    await step('verify it again', async () => {
      await clickAndLoad(page, page.getByRole('button', { name: 'Verify', exact: true }));
      await expectStatus(page, /\S/);
      await expectHeading(page, CREDENTIAL);
      await shot(page, '05-verified.png');
    });

    await step('update it, keeping the stored password', async () => {
      await clickAndLoad(page, page.getByRole('link', { name: 'Update', exact: true }));
      await expectHeading(page, `Update ${CREDENTIAL}`);
      const server = await page.getByLabel('Registry server', { exact: true }).inputValue();
      check(server === REGISTRY, `the update form shows Registry server ${JSON.stringify(server)}`);
      const user = await page.getByLabel('User name', { exact: true }).inputValue();
      check(user === REGISTRY_USER, `the update form shows User name ${JSON.stringify(user)}`);
      const password = await page.getByLabel('Password', { exact: true }).inputValue();
      check(password === '', 'the update form shows the stored password');
      await expectNoSecret(page, 'update form');
      await shot(page, '05-update-form.png');
      await axeCheck(page, 'update-form');
      await clickAndLoad(page, page.getByRole('button', { name: 'Save', exact: true }));
      await expectStatus(page, new RegExp(`^Saved ${CREDENTIAL}\\.`));
      await expectHeading(page, CREDENTIAL);
      const body = (await page.locator('main').innerText()).replace(/\s+/g, ' ');
      check(/Verification\W+ok\b/i.test(body), `not verified after the update:\n${body}`);
    });

    await step('the audit log shows what was done', async () => {
      await clickAndLoad(page, page.getByRole('link', { name: ADMIN_WORKSPACE, exact: true }));
      await clickAndLoad(page, page.getByRole('link', { name: 'Audit log', exact: true }));
      await expectHeading(page, `Audit log of ${ADMIN_WORKSPACE}`);
      const table = await readTable(page);
      check(table, 'the audit page has no table');
      const actions = table.rows.map((cells) => cells[table.headers.indexOf('Action')]);
      note(`actions: ${actions.join(', ')}`);
      for (const action of ['credential.create', 'credential.verify', 'credential.update']) {
        check(actions.includes(action), `the audit log has no ${action}`);
      }
      await expectNoSecret(page, 'audit page');
      await shot(page, '05-audit.png');
      await axeCheck(page, 'audit');
    });

    await step('the credentials table shows it verified', async () => {
      // Back the way a person would: the workspace's link in the breadcrumb or nav.
      const back = page.getByRole('link', { name: ADMIN_WORKSPACE, exact: true });
      if ((await back.count()) > 0) {
        await clickAndLoad(page, back.first());
      } else {
        note(`no link back to ${ADMIN_WORKSPACE} on the credential page; opening it by URL`);
        await gotoOk(page, credentialsUrl);
      }
      await expectHeading(page, `Credentials in ${ADMIN_WORKSPACE}`);
      const table = await credentialsTable(page);
      note(`columns: ${table.headers.join(' | ')}`);
      for (const header of ['Name', 'Type', 'Registry', 'Verification', 'Token', 'Sync targets']) {
        check(table.headers.includes(header), `the table has no column ${header}`);
      }
      const row = tableRow(table, CREDENTIAL);
      check(row, `no row ${CREDENTIAL} in ${JSON.stringify(table.rows)}`);
      note(`row: ${JSON.stringify(row)}`);
      check(/^ok\b/i.test(row.Verification), `Verification is ${JSON.stringify(row.Verification)}`);
      check(row.Registry.includes(REGISTRY), `Registry is ${JSON.stringify(row.Registry)}`);
      check(/docker/i.test(row.Type), `Type is ${JSON.stringify(row.Type)}`);
      await page.getByRole('link', { name: CREDENTIAL, exact: true }).waitFor();
      await shot(page, '06-credentials.png');
      await axeCheck(page, 'credentials');
    });

    await step(`at phone width (${PHONE.width}x${PHONE.height}) nothing overflows`, async () => {
      const phone = await admin.newPage();
      problems.push(watch(phone, 'phone'));
      await phone.setViewportSize(PHONE);
      for (const [url, name] of [
        [credentialsUrl, 'phone.png'],
        [addUrl, 'phone-add.png'],
        [credentialUrl, 'phone-credential.png'],
      ]) {
        await gotoOk(phone, url);
        await phone.locator('h1').first().waitFor();
        const width = await phone.evaluate(() => document.documentElement.scrollWidth);
        await shot(phone, name);
        check(
          width <= PHONE.width + 4,
          `${url} is ${width} px wide at a ${PHONE.width} px viewport (horizontal overflow)`,
        );
        note(`${new URL(url).pathname}: ${width} px wide`);
      }
      await phone.close();
    });

    await step('a viewer sees the credentials but no way to add one', async () => {
      const viewer = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      viewer.setDefaultTimeout(TIMEOUT_MS);
      const viewerPage = await viewer.newPage();
      currentPage = viewerPage;
      problems.push(watch(viewerPage, 'viewer'));
      await gotoOk(viewerPage, `${CONSOLE_URL}/`);
      await signIn(viewerPage, VIEWER_TOKEN);
      await expectHeading(viewerPage, 'Workspaces');
      await clickAndLoad(
        viewerPage,
        viewerPage.getByRole('link', { name: VIEWER_WORKSPACE, exact: true }),
      );
      await expectHeading(viewerPage, `Credentials in ${VIEWER_WORKSPACE}`);
      check(
        new URL(viewerPage.url()).pathname === workspacePath(VIEWER_WORKSPACE),
        `the viewer's credentials page is at ${viewerPage.url()}`,
      );
      const adds = await viewerPage
        .getByRole('link', { name: 'Add credentials' })
        .or(viewerPage.getByRole('button', { name: 'Add credentials' }))
        .count();
      check(adds === 0, `the viewer sees ${adds} "Add credentials" control(s)`);
      await shot(viewerPage, '09-viewer.png');

      // The viewer's own, valid CSRF token does not make an add allowed either.
      const viewerAdd = addAction.replace(
        encodeURIComponent(ADMIN_WORKSPACE),
        encodeURIComponent(VIEWER_WORKSPACE),
      );
      const token = await viewerPage
        .locator(`input[type=hidden][name="${csrfField}"]`)
        .first()
        .inputValue()
        .catch(() => null);
      if (token) {
        const response = await viewer.request.post(viewerAdd, {
          form: { ...addFields('viewer-added'), [csrfField]: token },
          headers: { Origin: CONSOLE_URL },
          maxRedirects: 0,
        });
        note(`viewer's own add post with a valid CSRF token: ${response.status()}`);
        check(response.status() === 403, `a viewer's add was answered ${response.status()}`);
        // Refused for the role, not by the CSRF or origin check.
        check(
          !/Request refused/.test(await response.text()),
          "the viewer's add was refused as a forged form, so the role was never checked",
        );
      } else {
        note('no CSRF token on the viewer page: the post with a valid token is not tried');
      }
      const response = await viewerPage.goto(
        addUrl.replace(encodeURIComponent(ADMIN_WORKSPACE), encodeURIComponent(VIEWER_WORKSPACE)),
      );
      note(`viewer opening the add form directly: ${response.status()}`);
      check(response.status() === 403, `the add form answered a viewer ${response.status()}`);
      await viewer.close();
      currentPage = page;
    });

    await step('forged form posts are refused', async () => {
      const fields = addFields('forged');
      const withoutToken = await admin.request.post(addAction, { form: fields, maxRedirects: 0 });
      note(`without a CSRF token: ${withoutToken.status()}`);
      check(withoutToken.status() === 403, `a post without a CSRF token got ${withoutToken.status()}`);
      const wrongToken = await admin.request.post(addAction, {
        form: { ...fields, [csrfField]: 'forged-token' },
        headers: { Origin: EVIL_ORIGIN },
        maxRedirects: 0,
      });
      note(`with a wrong CSRF token from ${EVIL_ORIGIN}: ${wrongToken.status()}`);
      check(wrongToken.status() === 403, `a post with a wrong CSRF token got ${wrongToken.status()}`);
      // Even the right token does not help a page of another site.
      const token = await page
        .locator(`input[type=hidden][name="${csrfField}"]`)
        .first()
        .inputValue();
      const otherSite = await admin.request.post(addAction, {
        form: { ...fields, [csrfField]: token },
        headers: { Origin: EVIL_ORIGIN, 'Sec-Fetch-Site': 'cross-site' },
        maxRedirects: 0,
      });
      note(`with the right CSRF token from ${EVIL_ORIGIN}: ${otherSite.status()}`);
      check(otherSite.status() === 403, `a cross-site post with the token got ${otherSite.status()}`);
      // What a sandboxed frame on another site sends: an opaque origin.
      const opaque = await admin.request.post(addAction, {
        form: { ...fields, [csrfField]: token },
        headers: { Origin: 'null', 'Sec-Fetch-Site': 'cross-site' },
        maxRedirects: 0,
      });
      note(`with the right CSRF token from an opaque origin: ${opaque.status()}`);
      check(opaque.status() === 403, `a post from an opaque origin got ${opaque.status()}`);
      await gotoOk(page, credentialsUrl);
      const table = await credentialsTable(page);
      check(!tableRow(table, 'forged'), 'the forged credential is listed');
      check(tableRow(table, CREDENTIAL), `${CREDENTIAL} is no longer listed`);
    });

    await step('delete it after a confirmation', async () => {
      await clickAndLoad(page, page.getByRole('link', { name: CREDENTIAL, exact: true }));
      await expectHeading(page, CREDENTIAL);
      await clickAndLoad(page, page.getByRole('link', { name: 'Delete', exact: true }));
      await expectHeading(page, `Delete ${CREDENTIAL}?`);
      await page.getByRole('link', { name: 'Cancel', exact: true }).waitFor();
      await shot(page, '07-delete-confirm.png');
      await axeCheck(page, 'delete-confirm');
      await clickAndLoad(page, page.getByRole('button', { name: `Delete ${CREDENTIAL}`, exact: true }));
      await expectStatus(page, new RegExp(`^Deleted ${CREDENTIAL}\\.`));
      await expectHeading(page, `Credentials in ${ADMIN_WORKSPACE}`);
      const table = await credentialsTable(page);
      check(!tableRow(table, CREDENTIAL), `${CREDENTIAL} is still listed after the delete`);
      await shot(page, '08-deleted.png');
    });

    await step('sign out', async () => {
      const cookies = await admin.cookies();
      await clickAndLoad(page, page.getByRole('button', { name: 'Sign out', exact: true }));
      await page.getByLabel('API token', { exact: true }).waitFor({ state: 'visible' });
      await shot(page, '10-signed-out.png');
      await page.goto(`${CONSOLE_URL}/console/workspaces`);
      await page.getByLabel('API token', { exact: true }).waitFor({ state: 'visible' });
      check(
        (await page.getByRole('heading', { name: 'Workspaces', exact: true }).count()) === 0,
        'the workspaces are shown after signing out',
      );
      // The session is over on the server too, not only forgotten by this browser.
      const replay = await browser.newContext();
      await replay.addCookies(cookies);
      const replayPage = await replay.newPage();
      await replayPage.goto(`${CONSOLE_URL}/console/workspaces`);
      await replayPage.getByLabel('API token', { exact: true }).waitFor({ state: 'visible' });
      check(
        (await replayPage.getByRole('heading', { name: 'Workspaces', exact: true }).count()) === 0,
        'the signed-out session cookie still opens the console',
      );
      await replay.close();
    });

    await step('no script errors or CSP violations on any page', async () => {
      const all = problems.flat();
      check(all.length === 0, all.join('\n    '));
    });
  } catch (error) {
    await reportFailure(error);
    await browser.close().catch(() => {});
    return 1;
  }
  await browser.close();
  if (findings.length > 0) {
    console.log('minor or moderate accessibility findings (not failures):');
    for (const finding of findings) console.log(`  ${finding}`);
  }
  console.log(`all ${stepNumber} steps passed; screenshots in ${SCREENSHOT_DIR}`);
  return 0;
}

async function reportFailure(error) {
  console.log('  FAILED');
  console.log(`\nFAILED at step ${currentStep}`);
  console.log(error instanceof CheckFailed ? error.message : error.stack || String(error));
  if (currentPage && !currentPage.isClosed()) {
    console.log(`page URL: ${currentPage.url()}`);
    try {
      const said = await currentPage
        .locator('[role=alert], [role=status], h1')
        .allInnerTexts();
      if (said.length) console.log(`page says: ${said.join(' | ')}`);
      await currentPage.screenshot({ path: path.join(SCREENSHOT_DIR, 'failure.png'), fullPage: true });
      writeFileSync(path.join(SCREENSHOT_DIR, 'failure.html'), await currentPage.content());
      console.log(`screenshot: ${path.join(SCREENSHOT_DIR, 'failure.png')}`);
    } catch (screenshotError) {
      console.log(`(no screenshot: ${screenshotError.message})`);
    }
  }
}

process.exitCode = await main().catch(async (error) => {
  console.log(`console.mjs crashed: ${error.stack || error}`);
  return 1;
});
