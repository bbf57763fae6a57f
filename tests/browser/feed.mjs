// herald's browser client in real headless Chromium: two people, each in a browser context of
// their own, against the herald at <base-url> (tests/it/browser.rs starts one and runs this).
//
//  1. Ada registers through the page; Bob (registered over the API) signs in through the page.
//     Both pages show the connection as live.
//  2. Bob finds Ada through the page and follows her.
//  3. Ada writes a post full of markup through the page: it appears in Bob's feed, as text, with
//     no reload. Her edit and her delete appear there too. Two more posts follow.
//  4. Bob's browser goes offline (the page drops its socket) while Ada writes a post; when it is
//     back online, the page reconnects with ?since=<last seq it had> and the post is replayed.
//     A screenshot of Bob's page is taken here.
//  5. Offline again while Ada writes more posts than herald replays (the test server keeps 3):
//     the page gets feed.reset, reloads its feed and shows them all, then goes on live.
//  6. Bob unfollows Ada through the page (her posts leave his feed); a reload keeps him signed
//     in (the token is in sessionStorage). Bob's page never navigated until then, and neither
//     page logged an error, hit its Content-Security-Policy or opened a dialog.
//
// Usage: node feed.mjs <base-url>
// Environment: HERALD_CHROMIUM (default /usr/bin/chromium), HERALD_SCREENSHOT (where to save
// the screenshot of step 4; none if unset).
import { chromium } from 'playwright-core';

const base = process.argv[2];
if (!base) {
  console.error('usage: node feed.mjs <base-url>');
  process.exit(2);
}

/** How long any one awaited condition may take: generous, the machine may be busy. */
const WAIT_MS = 60_000;
const PASSWORD = 'correct horse battery';
const started = Date.now();

function step(what) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)} s] ${what}`);
}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

const browser = await chromium.launch({
  executablePath: process.env.HERALD_CHROMIUM || '/usr/bin/chromium',
  // Chromium refuses to start its sandbox as root (as CI runs).
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});

/** Problems either page reported: page errors, console errors, dialogs. */
const problems = [];

/** A person: a browser context of their own with the client open in it. */
async function person(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (error) => problems.push(`${name}: page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`${name}: console error: ${message.text()}`);
  });
  page.on('dialog', (dialog) => {
    problems.push(`${name}: unexpected dialog: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  // Every feed socket the page opens, with the frames it received.
  const sockets = [];
  page.on('websocket', (socket) => {
    const seen = { url: new URL(socket.url()), frames: [] };
    socket.on('framereceived', (frame) => {
      if (typeof frame.payload === 'string') seen.frames.push(JSON.parse(frame.payload));
    });
    sockets.push(seen);
  });
  await page.goto(`${base}/`);
  return { name, context, page, sockets };
}

async function waitForConnection(who, state) {
  await who.page.locator(`#connection[data-state="${state}"]`).waitFor();
}

/** The feed's list item that holds `text`. */
function feedItem(who, text) {
  return who.page.locator('#feed > li').filter({ hasText: text });
}

/** Ada writes a post through the page; returns its id once her page lists it. */
async function write(who, text) {
  const form = who.page.getByRole('form', { name: 'Write a post' });
  await form.getByLabel('What is new?').fill(text);
  await form.getByRole('button', { name: 'Post' }).click();
  const mine = who.page.locator('#my-posts > li').filter({ hasText: text });
  await mine.waitFor();
  return mine.getAttribute('data-post-id');
}

/** The highest seq among the frames `who`'s page has received so far. */
function lastSeq(who) {
  return Math.max(0, ...who.sockets.flatMap((s) => s.frames.map((f) => f.seq)));
}

let ada;
let bob;
try {
  // 1. Ada registers through the page, Bob signs in through it.
  ada = await person('Ada');
  bob = await person('Bob');
  const register = ada.page.getByRole('form', { name: 'Create an account' });
  await register.getByLabel('First name').fill('Ada');
  await register.getByLabel('Last name').fill('Lovelace');
  await register.getByLabel('Birth date').fill('1990-12-10');
  await register.getByLabel('City').fill('London');
  await register.getByLabel('About you').fill('Writes notes on engines.');
  await register.getByLabel('Password').fill(PASSWORD);
  await register.getByRole('button', { name: 'Register and sign in' }).click();
  await ada.page.locator('#whoami').waitFor();
  const adaId = (await ada.page.locator('#me-id').textContent()).trim();
  check(/^[0-9a-f-]{36}$/.test(adaId), `Ada's page shows her id (${adaId})`);
  check((await ada.page.locator('#me-name').textContent()) === 'Ada Lovelace', 'her name');
  step(`Ada registered through the page (${adaId})`);

  const registered = await fetch(`${base}/user/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      first_name: 'Bob',
      second_name: 'Babbage',
      birthdate: '1991-12-26',
      biography: '',
      city: 'London',
      password: PASSWORD,
    }),
  });
  check(registered.ok, `Bob registers over the API (${registered.status})`);
  const bobId = (await registered.json()).user_id;
  const login = bob.page.getByRole('form', { name: 'Sign in' });
  await login.getByLabel('User id').fill(bobId);
  await login.getByLabel('Password').fill(PASSWORD);
  await login.getByRole('button', { name: 'Sign in' }).click();
  await bob.page.locator('#whoami').waitFor();
  const stored = await bob.page.evaluate(() => ({
    session: JSON.parse(sessionStorage.getItem('herald.session')),
    local: localStorage.length,
  }));
  check(stored.session && stored.session.userId === bobId, 'the session is in sessionStorage');
  check(/^[0-9a-f]{64}$/.test(stored.session.token), 'with the token');
  check(stored.local === 0, 'and nothing in localStorage');
  await waitForConnection(ada, 'live');
  await waitForConnection(bob, 'live');
  check(bob.sockets.length >= 1, 'Bob opened the feed socket');
  check(bob.sockets[0].url.searchParams.get('token') === stored.session.token, 'token as ?token=');
  check(bob.sockets[0].url.searchParams.get('since') !== null, 'subscribed from the page read');
  step('Bob signed in through the page; both feeds are live');

  // 2. Bob finds Ada and follows her.
  await bob.page.evaluate(() => {
    window.sameDocument = true;
  });
  const search = bob.page.getByRole('form', { name: 'Find people' });
  await search.getByLabel('First name starts with').fill('ad');
  await search.getByLabel('Last name starts with').fill('LOVE');
  await search.getByRole('button', { name: 'Search' }).click();
  await bob.page.getByRole('button', { name: 'Follow Ada Lovelace', exact: true }).click();
  await bob.page.getByRole('button', { name: 'Unfollow Ada Lovelace', exact: true }).waitFor();
  step('Bob follows Ada through the page');

  // 3. A post full of markup, its edit and its delete, live in Bob's feed.
  const marked = 'Hello <b>Bob</b> & <img src=x onerror="alert(1)"> — engines at noon';
  const markedId = await write(ada, marked);
  await feedItem(bob, 'engines at noon').waitFor();
  const item = bob.page.locator(`#feed > li[data-post-id="${markedId}"]`);
  check((await item.locator('.text').textContent()) === marked, 'the post is shown as text');
  check((await bob.page.locator('#feed b, #feed img').count()) === 0, 'no markup was rendered');
  // The page shows '…' until its GET /user/get for the author answers: wait for that first.
  const author = item.locator('.author');
  await bob.page.waitForFunction((element) => element.textContent !== '…', await author.elementHandle());
  check((await author.textContent()) === 'Ada Lovelace', 'with its author');
  step('Ada posted; the post appeared in Bob\'s feed live, escaped');

  const edited = 'Engines at one, not noon.';
  const mine = ada.page.locator(`#my-posts > li[data-post-id="${markedId}"]`);
  await mine.getByRole('button', { name: 'Edit' }).click();
  await ada.page.getByLabel('Edit your post').fill(edited);
  await ada.page.getByRole('button', { name: 'Save' }).click();
  await ada.page.locator('#my-posts > li').filter({ hasText: edited }).waitFor();
  await item.filter({ hasText: edited }).waitFor();
  check((await item.locator('.badge').textContent()) === 'edited', 'marked as edited');
  step('Ada edited it; the edit appeared in Bob\'s feed live');

  await ada.page
    .locator(`#my-posts > li[data-post-id="${markedId}"]`)
    .getByRole('button', { name: 'Delete' })
    .click();
  await ada.page.locator(`#my-posts > li[data-post-id="${markedId}"]`).waitFor({ state: 'detached' });
  await bob.page.locator(`#feed > li.deleted[data-post-id="${markedId}"]`).waitFor();
  step('Ada deleted it; Bob\'s feed shows it deleted');

  const engine = 'The Analytical Engine weaves algebraic patterns just as the Jacquard loom weaves flowers and leaves.';
  const tea = 'Tea at four? Bring the punched cards.';
  await write(ada, engine);
  await write(ada, tea);
  await feedItem(bob, tea).waitFor();
  await feedItem(bob, 'Jacquard loom').waitFor();

  // 4. Offline while Ada posts; back online, the page resumes from its last seq.
  const before = lastSeq(bob);
  check(before > 0, 'frames carry seq');
  const socketsBefore = bob.sockets.length;
  await bob.context.setOffline(true);
  await waitForConnection(bob, 'reconnecting');
  const missed = 'Written while Bob was offline: the notes are done.';
  await write(ada, missed);
  check((await feedItem(bob, missed).count()) === 0, 'Bob is offline: not shown yet');
  await bob.context.setOffline(false);
  await feedItem(bob, missed).waitFor();
  await waitForConnection(bob, 'live');
  // (A busy machine may need more than one attempt; every one resumes from the same place.)
  const resumed = bob.sockets.slice(socketsBefore);
  check(resumed.length >= 1, 'the page opened a new socket');
  for (const socket of resumed) {
    check(socket.url.searchParams.get('since') === String(before), `resumed with since=${before}`);
  }
  check(
    resumed.some((s) => s.frames.some((f) => f.type === 'post.created' && f.postText === missed)),
    'the missed post was replayed on the new socket',
  );
  step(`Bob went offline and back; the page resumed with since=${before} and got the post`);
  if (process.env.HERALD_SCREENSHOT) {
    await bob.page.screenshot({ path: process.env.HERALD_SCREENSHOT, fullPage: true });
    step(`screenshot saved: ${process.env.HERALD_SCREENSHOT}`);
  }

  // 5. A gap longer than herald replays: feed.reset, and the page reloads its feed.
  const socketsBeforeReset = bob.sockets.length;
  await bob.context.setOffline(true);
  await waitForConnection(bob, 'reconnecting');
  const many = ['One.', 'Two.', 'Three.', 'Four.'].map((n) => `Catching up, part ${n}`);
  for (const text of many) await write(ada, text);
  await bob.context.setOffline(false);
  await waitForConnection(bob, 'live');
  for (const text of many) await feedItem(bob, text).waitFor();
  const afterReset = bob.sockets.slice(socketsBeforeReset).find((s) => s.frames.length > 0);
  check(afterReset && afterReset.frames[0].type === 'feed.reset', 'the gap was a feed.reset');
  await feedItem(bob, tea).waitFor();
  const live = 'And live again after the reset.';
  await write(ada, live);
  await feedItem(bob, live).waitFor();
  step('a gap beyond the history bound: feed.reset, the page reloaded its feed and went on live');

  // 6. Unfollow; the page was never reloaded until now; a reload keeps the session.
  await bob.page.getByRole('button', { name: 'Unfollow Ada Lovelace', exact: true }).click();
  await bob.page.getByRole('button', { name: 'Follow Ada Lovelace', exact: true }).waitFor();
  await bob.page.locator('#feed > li').first().waitFor({ state: 'detached' });
  check(await bob.page.evaluate(() => window.sameDocument === true), 'Bob\'s page never reloaded');
  step('Bob unfollowed Ada; her posts left his feed');

  await bob.page.reload();
  await bob.page.locator('#whoami').waitFor();
  await waitForConnection(bob, 'live');
  step('after a reload Bob is still signed in, and live');

  check(problems.length === 0, `no page errors:\n${problems.join('\n')}`);
  step('passed');
} catch (error) {
  console.error(`FAILED: ${error.stack || error}`);
  for (const who of [ada, bob]) {
    if (!who) continue;
    const state = await who.page
      .evaluate(() => ({
        connection: document.getElementById('connection').textContent,
        feed: document.getElementById('feed').innerText,
        errors: [...document.querySelectorAll('.error')].map((e) => e.textContent).filter(Boolean),
      }))
      .catch((e) => `(page unreadable: ${e.message})`);
    console.error(`${who.name}'s page:`, JSON.stringify(state, null, 2));
    console.error(`${who.name}'s sockets:`, JSON.stringify(who.sockets, null, 2));
  }
  if (problems.length) console.error(`problems:\n${problems.join('\n')}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
