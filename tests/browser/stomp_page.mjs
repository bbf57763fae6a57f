// herald's feed test page (/stomp.html, with the vendored sockjs-client and @stomp/stompjs) in
// headless Chromium, run from tests/it/browser.rs. For each transport the page offers (STOMP
// over SockJS, STOMP over a WebSocket, Server-Sent Events): a reader signs in on the page and
// connects; an author (over the API) writes a post; the page must list it live, with its seq.
// Any page error or console error fails the run.
//
// node stomp_page.mjs <base-url>   (HERALD_CHROMIUM as for feed.mjs)
import { chromium } from 'playwright-core';

const base = process.argv[2];
const WAIT_MS = 60_000;
const PASSWORD = 'correct horse battery';
const problems = [];

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

async function api(method, path, token, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {
      'Content-Type': 'application/json',
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  check(response.ok, `${method} ${path} answers 2xx (${response.status})`);
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

async function user(name) {
  const { user_id: id } = await api('POST', '/user/register', null, {
    first_name: name, second_name: 'Test', birthdate: '1990-01-01', biography: '', city: 'X',
    password: PASSWORD,
  });
  const { token } = await api('POST', '/login', null, { id, password: PASSWORD });
  return { id, token };
}

const browser = await chromium.launch({
  executablePath: process.env.HERALD_CHROMIUM || '/usr/bin/chromium',
  args: process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [],
});
try {
  const author = await user('Author');
  for (const transport of ['sockjs', 'stomp', 'sse']) {
    const reader = await user('Reader');
    await api('PUT', `/friend/set/${author.id}`, reader.token);
    const context = await browser.newContext();
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on('pageerror', (error) => problems.push(`${transport}: page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`${transport}: console: ${message.text()}`);
    });
    await page.goto(`${base}/stomp.html`);
    await page.getByLabel('User id').fill(reader.id);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByLabel('Transport').selectOption(transport);
    await page.getByRole('button', { name: 'Sign in and connect' }).click();
    await page.locator('#status[data-state="online"]').waitFor();
    const text = `live over ${transport}`;
    await api('POST', '/post/create', author.token, { text });
    const item = page.locator('#events li[data-type="post.created"]').first();
    await item.waitFor();
    check((await item.textContent()).includes(text), `the ${transport} page lists the post`);
    check(/^[0-9]+$/.test(await item.getAttribute('data-seq')), 'with its seq');
    console.log(`${transport}: the page listed "${text}"`);
    await context.close();
  }
  check(problems.length === 0, `no page problems: ${problems.join('; ')}`);
} finally {
  await browser.close();
}
