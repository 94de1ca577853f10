// The dashboard in a real browser: Debian's Chromium (never a downloaded
// one) driven by playwright-core, against the producer and consumer that
// scripts/browser-test.sh started on this machine. Checks what issue 12
// asks and saves a screenshot of each screen in $ARTIFACTS.
//
// Environment (set by the script): BASE_URL, API_TOKEN, ADMIN_TOKEN,
// AMQP_URL, DATABASE_URL, TOPOLOGY_PREFIX, CONSUMER_PID, ARTIFACTS.
import { chromium } from 'playwright-core';
import amqp from 'amqplib';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run scripts/browser-test.sh)`);
  return v;
};
const BASE = env('BASE_URL');
const API_TOKEN = env('API_TOKEN');
const ADMIN_TOKEN = env('ADMIN_TOKEN');
const PREFIX = env('TOPOLOGY_PREFIX');
const ARTIFACTS = env('ARTIFACTS');
const DATABASE_URL = env('DATABASE_URL');
mkdirSync(ARTIFACTS, { recursive: true });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log('[browser-test]', ...a);

async function waitFor(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) { last = e; }
    await sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ': ' + last.message : ''}`);
}

async function post(content, key, kind) {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${API_TOKEN}` };
  if (key) headers['idempotency-key'] = key;
  const body = kind ? { content, kind } : { content };
  const res = await fetch(`${BASE}/messages`, { method: 'POST', headers, body: JSON.stringify(body) });
  assert.equal(res.status, 202, `POST /messages answered ${res.status}`);
  return (await res.json()).id;
}

// Scheduled for later: its id.
async function schedule(content, delaySeconds) {
  const res = await fetch(`${BASE}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${API_TOKEN}` },
    body: JSON.stringify({ content, delay_seconds: delaySeconds }),
  });
  assert.equal(res.status, 202, `POST /messages (scheduled) answered ${res.status}`);
  const body = await res.json();
  assert.equal(body.status, 'scheduled');
  return body.id;
}

async function storedStatus(id) {
  const res = await fetch(`${BASE}/messages/${id}`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
  return res.status === 200 ? (await res.json()).status : null;
}

const digits = (text) => Number(String(text).replace(/[^0-9]/g, '') || NaN);

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run'],
});
const amqpConn = await amqp.connect(env('AMQP_URL'));
const failures = [];
const step = async (name, fn) => {
  log('▶', name);
  try {
    await fn();
    log('✔', name);
  } catch (e) {
    log('✘', name, '\n', e.stack || e);
    failures.push(name);
  }
};

try {
  const context = await browser.newContext({ viewport: { width: 1100, height: 820 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push('page error: ' + e.message));
  const requests = [];
  page.on('request', (r) => requests.push(new URL(r.url()).pathname));
  // Full pages, except where a long list would make a tall image.
  const shot = (name, p = page, fullPage = true) => p.screenshot({ path: `${ARTIFACTS}/${name}.png`, fullPage });

  await step('without a token the page shows no data', async () => {
    await page.goto(`${BASE}/dashboard`);
    await page.locator('#token-panel').waitFor({ state: 'visible' });
    for (const id of ['view-overview', 'view-messages', 'view-dead-letters', 'view-message', 'view-batches']) {
      assert.equal(await page.locator('#' + id).isVisible(), false, `#${id} is hidden`);
    }
    await sleep(2500); // a poll interval: nothing may be fetched meanwhile
    const data = requests.filter((p) => !['/dashboard', '/dashboard/app.js', '/dashboard/app.css', '/dashboard/api/access'].includes(p));
    assert.deepEqual(data, [], 'no data requested without the token');
    // And the API itself refuses the data without the token.
    const res = await fetch(`${BASE}/dashboard/api/overview`);
    assert.equal(res.status, 401);
    await shot('token');
  });

  await step('with the tokens, the overview shows a rising stored count', async () => {
    await page.fill('#api-token', API_TOKEN);
    await page.fill('#admin-token', ADMIN_TOKEN);
    await page.press('#admin-token', 'Enter'); // keyboard submits the form
    await page.locator('#view-overview').waitFor({ state: 'visible' });
    await waitFor('the first overview', 10_000, async () => (await page.textContent('#ov-broker')) === 'up');
    assert.equal(await page.textContent('#ov-database'), 'up');
    const seen = [digits(await page.textContent('#ov-total-stored'))];
    let sent = 0;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && new Set(seen).size < 4) {
      await Promise.all(Array.from({ length: 10 }, () => post(`browser test ${sent++}`)));
      await sleep(700);
      const v = digits(await page.textContent('#ov-total-stored'));
      if (v !== seen.at(-1)) seen.push(v);
    }
    log('stored counts seen on the overview:', seen.join(' → '));
    assert.ok(new Set(seen).size >= 4, `the stored count rose at least three times (${seen.join(', ')})`);
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], `rising: ${seen.join(', ')}`);
    assert.ok(digits(await page.textContent('#ov-consumers')) >= 1, 'a consumer is counted');
    if (process.env.SHOWCASE === '1') {
      // For the README's screenshot: a minute of traffic that swells and
      // ebbs, so the chart has something to show.
      const start = Date.now();
      for (let t = 0; t < 60_000; t = Date.now() - start) {
        const n = Math.round(2 + 18 * Math.sin(Math.PI * t / 60_000) ** 2 + 6 * Math.random());
        await Promise.all(Array.from({ length: n }, () => post(`showcase ${sent++}`)));
        await sleep(500);
      }
      await sleep(6000); // the last chart step completes
    }
    await shot('overview');
  });

  await step('each kind has its row, and the message list filters by kind', async () => {
    // The script configures KINDS=default,email.
    const emails = [];
    for (let i = 0; i < 3; i++) emails.push(await post(`email ${i}`, null, 'email'));
    await waitFor('the emails stored', 15_000, async () =>
      (await Promise.all(emails.map(storedStatus))).every((s) => s === 'stored'));
    const row = page.locator('#ov-kinds tr[data-kind="email"]');
    await waitFor('the email row', 10_000, async () => (await row.count()) === 1);
    assert.equal(await page.locator('#ov-kinds tbody tr').count(), 2, 'default and email');
    await waitFor('a consumer on the email queue', 10_000, async () =>
      digits(await row.locator('td.consumers').textContent()) >= 1);
    assert.equal(digits(await row.locator('td.ready').textContent()), 0, 'nothing left waiting');
    await shot('overview-kinds');
    await page.click('nav a[data-view="messages"]');
    await page.locator('#view-messages').waitFor({ state: 'visible' });
    await waitFor('the kind choices', 10_000, async () =>
      (await page.locator('#msg-kind option[value="email"]').count()) === 1);
    await page.selectOption('#msg-kind', 'email');
    const rows = page.locator('#msg-table tbody tr');
    await waitFor('only the emails listed', 10_000, async () => {
      const kinds = await page.locator('#msg-table tbody td.kind').allTextContents();
      return kinds.length === emails.length && kinds.every((k) => k === 'email');
    });
    const listed = await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.id));
    assert.deepEqual([...listed].sort(), [...emails].sort());
    await page.selectOption('#msg-kind', '');
    await waitFor('every kind listed again', 10_000, async () =>
      (await page.locator('#msg-table tbody td.kind', { hasText: 'default' }).count()) > 0);
    await page.click('nav a[data-view="overview"]');
    await page.locator('#view-overview').waitFor({ state: 'visible' });
  });

  let postedId;
  let keyedId;
  let batchId;
  await step('looking up a posted id shows stored', async () => {
    // A batch too, stored now while the consumer runs (the batches step
    // comes after the consumer is stopped).
    const res = await fetch(`${BASE}/messages/batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${API_TOKEN}` },
      body: JSON.stringify([{ content: 'batch 1' }, { content: 'batch 2' }, { content: 'batch 3' }]),
    });
    assert.equal(res.status, 202, `POST /messages/batch answered ${res.status}`);
    batchId = (await res.json()).batch_id;
    postedId = await post('looked up by id in the browser test');
    keyedId = await post('looked up by Idempotency-Key in the browser test', 'browser-test-key-1');
    await waitFor('both stored', 15_000, async () => (await storedStatus(postedId)) === 'stored' && (await storedStatus(keyedId)) === 'stored');
    await page.click('nav a[data-view="messages"]');
    await page.locator(`#msg-table tbody tr[data-id="${keyedId}"]`).waitFor();
    const first = await page.getAttribute('#msg-table tbody tr:first-child', 'data-id');
    assert.equal(first, keyedId, 'newest first');
    await shot('messages', page, false);
    await page.fill('#lookup-id-input', postedId);
    await page.press('#lookup-id-input', 'Enter');
    await waitFor('status stored', 10_000, async () => (await page.textContent('#m-status')) === 'stored');
    assert.equal(await page.textContent('#m-id'), postedId);
    assert.equal(await page.textContent('#m-content'), 'looked up by id in the browser test');
    assert.equal(await page.locator('#m-redrive').isVisible(), false, 'no redrive for a stored message');
    await shot('message');
    await page.click('nav a[data-view="messages"]');
    await page.fill('#lookup-key-input', 'browser-test-key-1');
    await page.click('#lookup-key button');
    await waitFor('the keyed message', 10_000, async () => (await page.textContent('#m-id')) === keyedId && (await page.textContent('#m-status')) === 'stored');
  });

  await step('the overview counts scheduled messages; one is cancelled from its page, one too late', async () => {
    const early = await schedule('scheduled in the browser test', 3600);
    const later = await schedule('scheduled later in the browser test', 7200);
    await page.click('nav a[data-view="overview"]');
    await waitFor('2 scheduled on the overview', 10_000, async () => (await page.textContent('#ov-scheduled')) === '2');
    assert.notEqual(await page.textContent('#ov-next-due'), 'none');
    const rows = page.locator('#sched-table tbody tr');
    assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.id)), [early, later], 'soonest first');
    await shot('overview-scheduled');
    // Its page, from the overview's list.
    await page.click(`#sched-table tbody tr[data-id="${early}"] td.id a`);
    await waitFor('the scheduled message page', 10_000, async () => (await page.textContent('#m-status')) === 'scheduled');
    assert.equal(await page.textContent('#m-sched-kind'), 'default');
    assert.equal(await page.textContent('#m-content'), 'scheduled in the browser test');
    assert.equal(await page.locator('#m-cancel').isVisible(), true, 'cancel offered');
    await shot('message-scheduled');
    await page.click('#m-cancel');
    await page.locator('#confirm').waitFor({ state: 'visible' });
    assert.equal(await page.textContent('#confirm-cancel'), 'Keep it');
    await page.click('#confirm-ok');
    await waitFor('status cancelled', 10_000, async () => (await page.textContent('#m-status')) === 'cancelled');
    assert.match(await page.textContent('#notice'), /^Cancelled/);
    assert.notEqual(await page.textContent('#m-cancelled-at'), '–');
    assert.equal(await page.locator('#m-cancel').isVisible(), false, 'no cancel once cancelled');
    assert.equal(await storedStatus(early), 'cancelled', 'the API says cancelled too');
    await shot('message-cancelled');
    // Too late: the page shows `later` scheduled, then it falls due (moved
    // to now in the database) and is stored before the click.
    await page.goto(`${BASE}/dashboard#/messages/${later}`);
    await waitFor('the later one scheduled', 10_000, async () => (await page.textContent('#m-status')) === 'scheduled');
    execFileSync('psql', ['-q', DATABASE_URL, '-c', `UPDATE scheduled_messages SET deliver_at = now() WHERE id = '${later}'`]);
    await waitFor('the later one stored', 15_000, async () => (await storedStatus(later)) === 'stored');
    await page.click('#m-cancel');
    await page.click('#confirm-ok');
    await waitFor('the page shows it stored', 10_000, async () => (await page.textContent('#m-status')) === 'stored');
    assert.match(await page.textContent('#notice'), /^Not cancelled: .*already stored: too late/);
    // Chromium logs every 4xx answer as a console error: this one was asked for.
    const expected = consoleErrors.findIndex((m) => /status of 409 \(Conflict\)/.test(m));
    assert.notEqual(expected, -1, 'the DELETE was answered 409');
    consoleErrors.splice(expected, 1);
    assert.equal(await page.locator('#m-schedule').isVisible(), false);
    await page.click('nav a[data-view="overview"]');
    await waitFor('none scheduled on the overview', 10_000, async () => (await page.textContent('#ov-scheduled')) === '0');
    assert.equal(await page.textContent('#ov-next-due'), 'none');
    assert.equal(await page.locator('#sched-empty').isVisible(), true);
  });

  const poisonId = randomUUID();
  const deadQueue = `${PREFIX}messages.dead`;
  const storeQueue = `${PREFIX}messages.store`;
  await step('a poison message appears in the dead-letter list with its reason', async () => {
    // Valid JSON with an id but no content: the consumer dead-letters it.
    const ch = await amqpConn.createConfirmChannel();
    ch.publish(`${PREFIX}messages`, '', Buffer.from(JSON.stringify({ id: poisonId, created_at: new Date().toISOString() })),
      { persistent: true, contentType: 'application/json', messageId: poisonId });
    await ch.waitForConfirms();
    await ch.close();
    await page.click('nav a[data-view="dead-letters"]');
    const row = page.locator(`#dl-table tbody tr[data-id="${poisonId}"]`);
    await waitFor('the poison in the list', 20_000, async () => {
      if (await row.count()) return true;
      await page.click('#dl-refresh');
      return false;
    });
    const reason = await row.locator('td.reason').textContent();
    log('dead-letter reason shown:', reason);
    assert.match(reason, /content/i, 'the reason names the problem');
    await shot('dead-letters');
    // Its message page tells the same story.
    await row.locator('td.id a').click();
    await waitFor('the dead-lettered message page', 10_000, async () => (await page.textContent('#m-status')) === 'dead_lettered');
    // Clients see the category; the detail is for the admin listing.
    assert.equal(await page.textContent('#m-reason'), 'invalid_message');
    assert.equal(await page.textContent('#m-attempts'), '1');
    assert.equal(await page.locator('#m-redrive').isVisible(), true, 'redrive offered');
    await shot('message-dead-lettered');
    await page.goBack();
    await row.waitFor();
  });

  await step('redrive (confirmed, by keyboard) removes it from the list and the queue', async () => {
    // Stop the consumer first: otherwise it would take the redriven poison
    // and dead-letter it again at once. Then the message must sit in the
    // store queue, out of the dead-letter queue.
    process.kill(Number(env('CONSUMER_PID')), 'SIGTERM');
    const ch = await amqpConn.createChannel();
    await waitFor('the consumer gone', 20_000, async () => (await ch.checkQueue(storeQueue)).consumerCount === 0);
    assert.equal((await ch.checkQueue(deadQueue)).messageCount, 1);
    const button = page.locator(`#dl-table tbody tr[data-id="${poisonId}"] button.redrive`);
    await button.focus();
    await page.keyboard.press('Enter');
    await page.locator('#confirm').waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => document.activeElement.id), 'confirm-cancel', 'focus starts on Cancel');
    await shot('confirm');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'confirm-ok');
    await page.keyboard.press('Enter');
    await page.locator(`#dl-table tbody tr[data-id="${poisonId}"]`).waitFor({ state: 'detached', timeout: 10_000 });
    await page.locator('#dl-empty').waitFor({ state: 'visible' });
    assert.match(await page.textContent('#notice'), /Redriven/);
    assert.equal((await ch.checkQueue(deadQueue)).messageCount, 0, 'out of the dead-letter queue');
    assert.equal((await ch.checkQueue(storeQueue)).messageCount, 1, 'back in the store queue');
    await ch.close();
    await shot('dead-letters-after-redrive');
  });

  await step('a batch shows its progress; phone width and dark mode render', async () => {
    await page.click('nav a[data-view="batches"]');
    await page.locator('#b-tools').waitFor({ state: 'visible' });
    await page.fill('#b-id', batchId);
    await page.click('#b-lookup button[type="submit"]');
    await page.locator('#b-result').waitFor({ state: 'visible' });
    const counts = await page.textContent('#b-counts');
    assert.match(counts, /^3 stored, 0 dead-lettered, 0 pending of 3$/, `batch progress: ${counts}`);
    assert.equal(await page.textContent('#b-status'), 'completed');
    await shot('batches');
    await page.click('nav a[data-view="overview"]');
    await waitFor('overview with the queued poison', 10_000, async () => (await page.textContent('#ov-ready')) === '1');
    await shot('overview-after-redrive');
    const phone = await context.newPage();
    phone.on('console', (m) => { if (m.type() === 'error') consoleErrors.push('phone: ' + m.text()); });
    phone.on('pageerror', (e) => consoleErrors.push('phone page error: ' + e.message));
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.emulateMedia({ colorScheme: 'dark' });
    await phone.goto(`${BASE}/dashboard#/overview`); // same tab storage? no: a new page asks again
    await phone.locator('#token-panel').waitFor({ state: 'visible' });
    await phone.fill('#api-token', API_TOKEN);
    await phone.fill('#admin-token', ADMIN_TOKEN);
    await phone.click('#token-form button[type="submit"]');
    await waitFor('phone overview', 10_000, async () => (await phone.textContent('#ov-broker')) === 'up');
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 390, `no horizontal scrolling at phone width (${width}px)`);
    await shot('overview-phone-dark', phone);
    await phone.goto(`${BASE}/dashboard#/messages/${postedId}`);
    await waitFor('phone message page', 10_000, async () => (await phone.textContent('#m-status')) === 'stored');
    await shot('message-phone-dark', phone);
    for (const [view, ready] of [['messages', '#msg-table tbody tr'], ['dead-letters', '#dl-empty']]) {
      await phone.click(`nav a[data-view="${view}"]`);
      await phone.locator(ready).first().waitFor();
      const w = await phone.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(w <= 390, `${view}: no horizontal scrolling at phone width (${w}px)`);
      await shot(`${view}-phone-dark`, phone);
    }
    await phone.close();
  });

  await step('a dead letter whose id is not a UUID gets no per-row action', async () => {
    // Anyone who may publish to the dead-letter exchange can plant one;
    // its row's action, `dead-letters/./redrive`, would resolve to the
    // route that redrives every dead letter (issue 16 #4).
    const ch = await amqpConn.createConfirmChannel();
    ch.publish(`${PREFIX}messages.dlx`, '', Buffer.from(JSON.stringify({ id: '.', content: 'planted' })),
      { persistent: true, contentType: 'application/json', messageId: '.' });
    await ch.waitForConfirms();
    await ch.close();
    await page.click('nav a[data-view="dead-letters"]');
    const row = page.locator('#dl-table tbody tr[data-id="."]');
    await waitFor('the planted dead letter in the list', 20_000, async () => {
      if (await row.count()) return true;
      await page.click('#dl-refresh');
      return false;
    });
    assert.equal(await row.locator('button.redrive').count(), 0, 'no redrive button for an id that is not a UUID');
    assert.equal(await row.locator('td.id a').count(), 0, 'no link to a message page either');
    const q = await amqpConn.createChannel();
    assert.equal((await q.checkQueue(deadQueue)).messageCount, 1, 'still in the dead-letter queue');
    await q.close();
  });

  await step('the API docs render under their Content-Security-Policy', async () => {
    const docs = await context.newPage();
    docs.on('console', (m) => { if (m.type() === 'error') consoleErrors.push('docs: ' + m.text()); });
    docs.on('pageerror', (e) => consoleErrors.push('docs page error: ' + e.message));
    // /docs and the /openapi.json it fetches need the API token.
    await docs.setExtraHTTPHeaders({ authorization: `Bearer ${API_TOKEN}` });
    const res = await docs.goto(`${BASE}/docs`);
    assert.match(res.headers()['content-security-policy'] || '', /default-src 'none'/);
    assert.equal(res.headers()['x-content-type-options'], 'nosniff');
    // Its inline script ran (allowed by its hash) and listed the operations.
    await docs.locator('#ops h2').first().waitFor({ timeout: 10_000 });
    await docs.close();
  });

  await step('no console errors', async () => {
    assert.deepEqual(consoleErrors, []);
  });
  await context.close();
} finally {
  await browser.close();
  await amqpConn.close().catch(() => {});
}

if (failures.length) {
  console.error(`[browser-test] FAILED: ${failures.join('; ')}`);
  process.exit(1);
}
log(`all checks passed; screenshots in ${ARTIFACTS}`);
